package engine

import (
	"context"
	"errors"
	"time"

	"github.com/puzpuzpuz/xsync/v4"

	"github.com/stickyroute/stickyroute/store"
)

// pendingLink is a HashPlacement placement whose link is not written yet.
type pendingLink struct {
	sv  *service
	uid string
	pod int
	at  int64 // local ms of the placement
}

// revalidateBatch is how many cached links one revalidation round trip reads.
const revalidateBatch = 256

func (c *Client) startDegraded() {
	c.deg.wg.Go(c.degradedWorker)
}

func (c *Client) stopDegraded() {
	close(c.deg.stop)
	c.deg.wg.Wait()
}

// DegradedStats returns the client's degraded-mode counters.
func (c *Client) DegradedStats() DegradedStats {
	d := c.deg
	return DegradedStats{
		Outages: d.outages.Load(), Recoveries: d.recoveries.Load(),
		FailedFast: d.failedFast.Load(), Placed: d.placed.Load(), Pending: int(d.npending.Load()),
		Reconciled: d.reconciled.Load(), Conflicts: d.conflicts.Load(), Abandoned: d.abandoned.Load(),
		TrackingLost: d.trackingLost.Load(), Revalidated: d.confirmed.Load(), Dropped: d.dropped.Load(),
	}
}

// trackingLost handles Redis's nil invalidation: a tracking connection
// closed, or Redis flushed its data. Either way any cached link may have
// changed unseen. The entries stay (the cache falls back to its TTL, which
// keeps cached users served while Redis is down); links being read now are
// not cached (their token goes stale); and the worker re-reads every entry
// cached before now, with tracking, as soon as the store answers.
func (c *Client) trackingLost() {
	c.cache.global.Add(1)
	c.deg.lost.Store(c.clk.Millis())
	c.deg.trackingLost.Add(1)
	c.deg.wake()
}

// degradedAnswer answers a cache miss of ComputeLinkedPod while the
// service's store is unreachable, without calling Redis. ok is false when
// the store is reachable.
func (c *Client) degradedAnswer(h uint64, sv *service, uid string) (pod int, err error, ok bool) {
	if !c.deg.down(sv) {
		return NoPod, nil, false
	}
	if pod, ok := c.pendingPod(h, sv, uid); ok {
		return pod, nil, true
	}
	if c.deg.cfg.Placement != HashPlacement {
		c.deg.failedFast.Add(1)
		return NoPod, errStoreDown, true
	}
	pod, err = c.placeByHash(h, sv, uid, NoPod)
	return pod, err, true
}

// storeFailed is what ComputeLinkedPod returns when a store call failed
// with err. With HashPlacement and an unreachable store (not the caller's
// deadline), the user is placed by hash (or on tried, the pod a write whose
// outcome is unknown tried to link) and the link written later.
func (c *Client) storeFailed(ctx context.Context, err error, h uint64, sv *service, uid string, tried int) (int, error) {
	if !errors.Is(err, store.ErrUnavailable) || ctx.Err() != nil {
		return NoPod, err
	}
	// Let the refresher check the store now rather than at its next tick.
	select {
	case c.states.kick <- struct{}{}:
	default:
	}
	if c.deg.cfg.Placement != HashPlacement {
		return NoPod, err
	}
	if pod, ok := c.pendingPod(h, sv, uid); ok {
		return pod, nil
	}
	pod, perr := c.placeByHash(h, sv, uid, tried)
	if perr != nil {
		return NoPod, err
	}
	return pod, nil
}

// pendingPod returns the pod of a pending placement of the user.
func (c *Client) pendingPod(h uint64, sv *service, uid string) (int, bool) {
	if c.deg.npending.Load() == 0 {
		return NoPod, false
	}
	if p, ok := c.deg.pending.Load(h); ok && p.sv == sv && p.uid == uid {
		return p.pod, true
	}
	return NoPod, false
}

// placeByHash places a user while the store is unreachable: on pod when it
// is not NoPod, else by rendezvous hashing. The placement is cached (so the
// user keeps its pod on this client) and kept pending until its link is written.
func (c *Client) placeByHash(h uint64, sv *service, uid string, pod int) (int, error) {
	now := c.clk.Millis()
	if pod == NoPod {
		pod = hashPod(sv.view.snap.Load(), h, now)
	}
	if pod == NoPod {
		return NoPod, ErrNoAvailablePod
	}
	if int(c.deg.npending.Load()) >= c.deg.cfg.MaxPending {
		c.deg.failedFast.Add(1)
		return NoPod, errStoreDown
	}
	// Counted before it is stored: pendingPod skips the map while the
	// count is 0.
	c.deg.npending.Add(1)
	if _, loaded := c.deg.pending.LoadOrStore(h, pendingLink{sv: sv, uid: uid, pod: pod, at: now}); loaded {
		// A hash collision with another pending user: no room to remember
		// this one, so no answer to give.
		c.deg.npending.Add(-1)
		c.deg.failedFast.Add(1)
		return NoPod, errStoreDown
	}
	c.deg.placed.Add(1)
	c.cache.set(h, sv, uid, pod)
	return pod, nil
}

// linked tells the pending placement of the user, if any, that the user's
// link points at actual now (written by the caller, or found).
func (c *Client) linked(h uint64, sv *service, uid string, actual int) {
	if c.deg.npending.Load() == 0 {
		return
	}
	if p, ok := c.deg.pending.Load(h); ok && p.sv == sv && p.uid == uid {
		c.settle(h, p, actual)
	}
}

// settle removes a pending placement whose link now points at actual.
func (c *Client) settle(h uint64, p pendingLink, actual int) {
	removed := false
	c.deg.pending.Compute(h, func(cur pendingLink, loaded bool) (pendingLink, xsync.ComputeOp) {
		if loaded && cur == p {
			removed = true
			return cur, xsync.DeleteOp
		}
		return cur, xsync.CancelOp
	})
	if !removed {
		return
	}
	c.deg.npending.Add(-1)
	if actual == p.pod {
		c.deg.reconciled.Add(1)
	} else {
		c.deg.conflicts.Add(1)
	}
	// The entry cached during the outage is not tracked: drop it, so the
	// next call reads the link with tracking (and learns of a conflict).
	c.cache.dropIf(h, p.sv, p.uid, p.pod)
}

// degradedWorker writes pending placements and revalidates the cache after
// a tracking loss, whenever woken and every refresh period while work is
// left, and reads the tracking tables every Cache.TrackingCheck.
func (c *Client) degradedWorker() {
	t := time.NewTicker(c.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-c.deg.stop:
			return
		case <-c.deg.kick:
		case <-t.C:
		}
		c.reconcile()
		c.revalidate()
		c.checkTrackingDue()
	}
}

// reconcile writes the links of pending placements whose store is reachable.
func (c *Client) reconcile() {
	if c.deg.npending.Load() == 0 {
		return
	}
	now := c.clk.Millis()
	ttl := c.cfg.TempLinkTTL.Milliseconds()
	for h, p := range c.deg.pending.All() {
		select {
		case <-c.deg.stop:
			return
		default:
		}
		if now-p.at >= ttl {
			// Its temporary link would have expired by now anyway.
			c.drop(h, p)
			continue
		}
		if c.deg.down(p.sv) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Refresh)
		actual, err := c.store.SetLinkedPodIfAbsent(ctx, p.sv.ns, p.uid, p.sv.name, p.pod, c.tempTTL)
		cancel()
		switch {
		case err == nil:
			c.settle(h, p, actual)
		case errors.Is(err, store.ErrUnavailable):
			// Retried next round.
		default:
			c.drop(h, p)
		}
	}
}

// drop abandons a pending placement.
func (c *Client) drop(h uint64, p pendingLink) {
	c.deg.pending.Compute(h, func(cur pendingLink, loaded bool) (pendingLink, xsync.ComputeOp) {
		if loaded && cur == p {
			c.deg.npending.Add(-1)
			c.deg.abandoned.Add(1)
			c.cache.dropIf(h, p.sv, p.uid, p.pod)
			return cur, xsync.DeleteOp
		}
		return cur, xsync.CancelOp
	})
}

// revalidate re-reads, with tracking, every link cached before the latest
// tracking loss, keeping those that did not change and dropping the others.
// When a read fails it stops, to try again next round.
func (c *Client) revalidate() {
	lost := c.deg.lost.Load()
	if lost == 0 || lost == c.deg.revalidated.Load() {
		return
	}
	type item struct {
		h   uint64
		uid string
		pod int
		tok uint64
	}
	// Entries stored at or before the loss, per service. The cache's
	// stored time is its expiry less the TTL.
	todo := map[*service][]item{}
	for h, e := range c.cache.all() {
		if e.expiry()-c.cache.ttl > lost {
			continue
		}
		uid := e.key()
		if _, ok := c.pendingPod(h, e.svc, uid); ok {
			continue // its link is written by reconcile
		}
		todo[e.svc] = append(todo[e.svc], item{h: h, uid: uid, pod: int(e.pod)})
	}
	for sv, items := range todo {
		if c.deg.down(sv) {
			return
		}
		for len(items) > 0 {
			select {
			case <-c.deg.stop:
				return
			default:
			}
			n := min(len(items), revalidateBatch)
			batch := items[:n]
			items = items[n:]
			uids := make([]string, n)
			for i := range batch {
				uids[i] = batch[i].uid
				batch[i].tok = c.cache.token(batch[i].h)
			}
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Refresh)
			pods, _ := c.store.LinkedPodsTracked(ctx, sv.ns, uids, sv.name, c.cfg.Cache.TTL)
			cancel()
			if pods == nil {
				return // unreachable again: next round
			}
			for i, it := range batch {
				if pods[i] == it.pod {
					// Unchanged, and tracked again from now on.
					c.cache.put(it.h, sv, it.uid, it.pod, it.tok)
					c.deg.confirmed.Add(1)
				} else if c.cache.dropIf(it.h, sv, it.uid, it.pod) {
					c.deg.dropped.Add(1)
				}
			}
		}
	}
	// A loss during the pass left lost newer than this: the next round
	// covers it.
	c.deg.revalidated.Store(lost)
}

// key returns the entry's uid.
func (e *cacheEntry) key() string {
	if e.long == nil {
		return string(e.uid[:uint8(e.expLen)])
	}
	return e.long.uid // the entry's private, immutable copy
}

// dropIf deletes the entry of (sv, uid) if it still holds pod, and reports
// whether it did. It does not affect tokens.
func (c *linkCache) dropIf(h uint64, sv *service, uid string, pod int) bool {
	ok := c.deleteIf(h, func(e cacheEntry) bool {
		return e.svc == sv && e.is(sv.ns, sv.name, uid) && int(e.pod) == pod
	})
	if ok {
		c.invalidations.Add(1)
	}
	return ok
}
