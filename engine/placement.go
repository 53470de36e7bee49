package engine

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/stickyroute/stickyroute/lb"
)

// Placement of new users (SPEC §5.3).
//
// Every decision uses corrected loads: a pod's published load plus the users
// this client placed there since that load was published. The placements
// are picks the view's balancer keeps in flight, and the balancer compares
// load + weight × in-flight picks at every pick (the band included, see
// lb.Config.Band). A placement stops counting when a refresh reads a state
// the pod published after it.
//
// Correcting for its own placements alone is not enough when several
// clients place at once with the same view. In a storm, the pods publish
// their loads one after the other: a pod that has published shows every
// client's users, the others only this client's own, and every client turns
// to the pods that have not published yet. TestPlacementModel (a discrete
// model of the fleet in placement_model_test.go: 4 clients placing 5,000
// users on 4 pods at 10,000 a second, pods publishing every 500 ms, clients
// refreshing every 250 ms, 20 runs) measured users per pod ending at
// max/mean 1.27 (median) with the own-only correction, 1.37 with early
// refreshes, and 1.32 spreading placements in proportion to each pod's
// deficit instead of P2C: they fill the same deficits, only more slowly.
// What closes it, and what the engine does:
//
//   - The weight. A client estimates its share of the fleet's placements
//     from what the pods publish: between two states of a pod, the load
//     grew by the fleet's net placements there, of which its own are the
//     placements the new state ended. Its own placements then count
//     fleet/own times (lb.Balancer.SetPickWeight), so that the pods that
//     have not published yet look as loaded as they are: 1.019 in the
//     model (1.021 with 8 clients, 1.020 with one, 1.020 at 50,000 a
//     second).
//   - Early refreshes. A client that has placed earlyAfter users since its
//     last refresh refreshes at once (at most every Refresh/10), so the
//     estimate and the published loads are never a full period old in a
//     storm.
//   - Prompt publishes. Server.SetLoadState publishes a changed load at once
//     (coalescing calls closer than ServerConfig.LoadInterval), so the pods
//     report the users they received within tens of milliseconds, not at
//     the next heartbeat: with pods publishing every 50 ms the model ends at
//     1.003 (1.020 even without the weight).

const (
	// earlyAfter is how many placements since the last refresh of a
	// service make the client refresh it early.
	earlyAfter = 16
	// maxPickWeight bounds the weight of a placement: the estimate of how
	// many clients place at once.
	maxPickWeight = 64
	// minOwnForWeight is how many recent placements (decayed) the estimate
	// needs before it changes the weight.
	minOwnForWeight = 8
)

// placement is one user this client placed, counted in its pod's corrected
// load until the pod publishes a state after at.
type placement struct {
	r  lb.PickResult
	at int64 // local coarse ms of the placement
}

// ledger is a view's placements that still count, and its estimate of the
// fleet's share.
type ledger struct {
	// mu guards list and since. It is taken once per placement (after a
	// Redis round trip, never on a cache hit) and once per refresh.
	mu   sync.Mutex
	list []placement
	// since counts the placements since the last refresh.
	since int

	// The fleet estimate, guarded by view.loadMu: the pods' published load
	// growth and this client's placements it included, both decayed with
	// time constant weightDecay, as of decayedAt (local ms).
	fleet, own float64
	decayedAt  int64
	// weight is the balancer's pick weight, kept for GetPodLoadScore.
	weight atomic.Int64

	// early is set while an early refresh of the view is queued.
	early atomic.Bool
}

// pick picks an accepting pod for a new user. The pick counts in the pod's
// corrected load until commit keeps it or Done releases it.
func (v *view) pick(now int64) (lb.PickResult, error) {
	for {
		r, err := v.bal.Pick()
		if err != nil {
			return r, ErrNoAvailablePod
		}
		if v.snap.Load() == nil || v.accepting(r.Pod, now) {
			return r, nil
		}
		// The pod stopped heartbeating since the last refresh: take it out of
		// the balancer until a refresh sees it alive again.
		r.Done(lb.DoneInfo{})
		v.bal.Remove(r.Pod)
	}
}

// commit records that the user of pick r was placed on r.Pod at now, and
// asks for an early refresh after earlyAfter placements.
func (s *States) commit(v *view, r lb.PickResult, now int64) {
	l := &v.placed
	l.mu.Lock()
	l.list = append(l.list, placement{r: r, at: now})
	l.since++
	due := l.since >= earlyAfter
	l.mu.Unlock()
	if due && now-v.loadedAt.Load() >= s.earlyEvery && l.early.CompareAndSwap(false, true) {
		select {
		case s.early <- v:
		default:
			l.early.Store(false)
		}
	}
}

// place picks an accepting pod for a new user and commits it.
func (s *States) place(v *view, now int64) (int, error) {
	r, err := v.pick(now)
	if err != nil {
		return NoPod, err
	}
	s.commit(v, r, now)
	return r.Pod, nil
}

// settle runs inside a load of v (v.loadMu held) before snap is published:
// it ends the placements the new states include, and updates the estimate
// of this client's share of the fleet's placements from them. local is the
// local time of the read; old the previous snapshot (nil on the first load).
func (s *States) settle(v *view, old, snap *podSnapshot, local int64) {
	type seen struct{ updated, load int64 }
	prev := make(map[int]seen, len(snap.Pods))
	if old != nil {
		for _, p := range old.Pods {
			prev[p.Pod] = seen{p.Updated, p.Load}
		}
	}
	// updatedAt[pod] is when the pod published the state just read, on the
	// local clock; advanced[pod] is its load growth since the previous one.
	offset := snap.ServerTime - local
	updatedAt := make(map[int]int64, len(snap.Pods))
	var fleet float64
	advanced := make(map[int]bool, len(snap.Pods))
	for _, p := range snap.Pods {
		updatedAt[p.Pod] = p.Updated - offset
		if o, ok := prev[p.Pod]; ok && p.Updated > o.updated {
			advanced[p.Pod] = true
			fleet += float64(p.Load - o.load)
		}
	}
	forget := local - 2*s.timing.Staleness.Milliseconds()
	var done []lb.PickResult
	var own float64
	l := &v.placed
	l.mu.Lock()
	keep := l.list[:0]
	for _, p := range l.list {
		at, known := updatedAt[p.r.Pod]
		switch {
		case known && p.at < at:
			done = append(done, p.r)
			if advanced[p.r.Pod] {
				own++
			}
		case p.at < forget:
			// The pod has not published for two staleness windows: gone.
			done = append(done, p.r)
		default:
			keep = append(keep, p)
		}
	}
	clear(l.list[len(keep):])
	l.list, l.since = keep, 0
	l.mu.Unlock()
	l.early.Store(false)
	for _, r := range done {
		r.Done(lb.DoneInfo{})
	}

	decay := 1.0
	if l.decayedAt != 0 {
		decay = math.Exp(-float64(local-l.decayedAt) / float64(s.weightDecay))
	}
	l.fleet = l.fleet*decay + fleet
	l.own = l.own*decay + own
	l.decayedAt = local
	if l.own >= minOwnForWeight {
		w := min(max(int64(math.Round(l.fleet/l.own)), 1), maxPickWeight)
		l.weight.Store(w)
		v.bal.SetPickWeight(w)
	}
}

// correctedLoad returns pod's published load in snap plus the placements of
// this client that still count there, weighed as the balancer weighs them.
func (v *view) correctedLoad(snap *podSnapshot, pod int) (int64, bool) {
	for _, p := range snap.Pods {
		if p.Pod != pod {
			continue
		}
		var n int64
		v.placed.mu.Lock()
		for _, q := range v.placed.list {
			if q.r.Pod == pod {
				n++
			}
		}
		v.placed.mu.Unlock()
		return p.Load + max(v.placed.weight.Load(), 1)*n, true
	}
	return 0, false
}
