package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v4"

	"github.com/stickyroute/stickyroute/internal/clock"
	"github.com/stickyroute/stickyroute/lb"
	"github.com/stickyroute/stickyroute/store"
)

// Client answers "which pod serves this user?" for the processes that route
// to a stateful service (the old API's client driver). Answers come from a
// local link cache when they can: a hit takes no lock, allocates nothing and
// makes no Redis call. The cache is coherent across processes when the store
// tracks keys: a link changed anywhere evicts the entry here. New users are
// placed on the accepting pods by the configured strategy. Safe for
// concurrent use; Close stops its goroutines.
type Client struct {
	cfg     ClientConfig
	store   *store.Redis
	clk     *clock.Coarse
	cache   *linkCache
	states  *States
	tempTTL int // seconds
	// flight holds the cache misses in progress, one per key, so that
	// concurrent callers for one user make one Redis round trip.
	flight  flights
	untrack func()
	closed  atomic.Bool
	// last is the service of the latest cache miss: most processes route one
	// or a few services, and a hit on it skips hashing the two names.
	last atomic.Pointer[service]

	obs      observer
	hits     bool   // observe cache hits too
	strategy string // the strategy's name, for observers
	// writes holds, while an observer is set and the store tracks keys, the
	// time this client sent its latest write of a link key (by key hash), so
	// that the invalidation the write causes reports the tracking lag.
	writes *xsync.Map[uint64, int64]
	// deg is the client's degraded mode (degraded.go, reconcile.go).
	deg *degraded
	// tracking is the last read of the tracking tables, trackingDue when
	// the worker reads them next, in Unix ns (tracking.go).
	tracking    atomic.Pointer[trackingRead]
	trackingDue atomic.Int64
}

// call is one cache miss in progress, which other callers for the same key
// wait for.
type call struct {
	h            uint64
	ns, svc, uid string
	next         *call // in the flight's list, guarded by its shard's mutex
	// mu guards the fields below. wake is made by the first waiter only:
	// most misses have none, and a channel is the largest part of a call.
	mu   sync.Mutex
	done bool
	wake chan struct{}
	pod  int
	err  error
}

// errLeaderPanicked is what the callers waiting for a call get when that
// call panicked (in an Observer, say): the panic is the leader's own.
var errLeaderPanicked = errors.New("engine: the call this one waited for panicked")

// wait returns the call's answer once it is done, or ctx's error first.
func (cl *call) wait(ctx context.Context) (int, error) {
	cl.mu.Lock()
	if cl.done {
		defer cl.mu.Unlock()
		return cl.pod, cl.err
	}
	if cl.wake == nil {
		cl.wake = make(chan struct{})
	}
	wake := cl.wake
	cl.mu.Unlock()
	select {
	case <-wake:
		cl.mu.Lock()
		defer cl.mu.Unlock()
		return cl.pod, cl.err
	case <-ctx.Done():
		return NoPod, ctx.Err()
	}
}

// finish sets the call's answer and wakes its waiters.
func (cl *call) finish(pod int, err error) {
	cl.mu.Lock()
	cl.pod, cl.err, cl.done = pod, err, true
	wake := cl.wake
	cl.mu.Unlock()
	if wake != nil {
		close(wake)
	}
}

// NewClient returns a client over cfg.Store, or an error naming a bad setting.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Store == nil {
		return nil, configErr("ClientConfig.Store", "is required")
	}
	t, err := cfg.Timing.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg.Timing = t
	if cfg.TempLinkTTL < 0 || cfg.TempLinkTTL%time.Second != 0 {
		return nil, configErr("ClientConfig.TempLinkTTL", fmt.Sprintf("%v is not a whole number of seconds ≥ 0", cfg.TempLinkTTL))
	}
	if cfg.TempLinkTTL == 0 {
		cfg.TempLinkTTL = 60 * time.Second
	}
	if cfg.TempLinkTTL/time.Second > store.MaxTTL {
		return nil, configErr("ClientConfig.TempLinkTTL", fmt.Sprintf("%v is too long", cfg.TempLinkTTL))
	}
	c := &cfg.Cache
	if c.MaxEntries < 0 || c.TTL < 0 {
		return nil, configErr("ClientConfig.Cache", "MaxEntries and TTL must not be negative")
	}
	if c.MaxEntries == 0 {
		c.MaxEntries = 1 << 20
	}
	if c.TTL == 0 {
		c.TTL = cfg.TempLinkTTL / 2
	}
	if c.TrackingCheck == 0 {
		c.TrackingCheck = 30 * time.Second
	}
	if c.TTL >= cfg.TempLinkTTL {
		return nil, configErr("ClientConfig.Cache.TTL", fmt.Sprintf("%v must be shorter than TempLinkTTL %v", c.TTL, cfg.TempLinkTTL))
	}
	if c.Eviction > EvictTTL {
		return nil, configErr("ClientConfig.Cache.Eviction", fmt.Sprintf("%d is unknown", c.Eviction))
	}
	if cfg.Strategy == nil {
		cfg.Strategy = lb.P2C{}
	}
	if cfg.LoadBandMin == 0 {
		cfg.LoadBandMin = 10
	}
	if cfg.LoadBandRatio == 0 {
		cfg.LoadBandRatio = 0.25
	}
	if cfg.LoadBandRatio < 0 || math.IsNaN(cfg.LoadBandRatio) {
		return nil, configErr("ClientConfig.LoadBandRatio", fmt.Sprintf("%v is negative", cfg.LoadBandRatio))
	}
	if _, err := lb.New(lb.Config{Strategy: cfg.Strategy}); err != nil {
		return nil, configErr("ClientConfig.Strategy", err.Error())
	}
	if cfg.Degraded, err = cfg.Degraded.withDefaults(cfg.Refresh); err != nil {
		return nil, err
	}

	cl := &Client{
		cfg:      cfg,
		store:    cfg.Store,
		clk:      clock.New(0),
		tempTTL:  int(cfg.TempLinkTTL / time.Second),
		obs:      observer{cfg.Observer},
		hits:     cfg.Observer != nil && cfg.ObserveHits,
		strategy: cfg.Strategy.String(),
	}
	cl.cache = newLinkCache(cfg.Cache, cl.clk)
	bal := lb.Config{Strategy: cfg.Strategy,
		// Passive ejection is the business of request routing, not of
		// placement: placements report no outcome.
		Ejection: lb.Ejection{Failures: -1},
		// Placements are long-lived: counted per pod over every processor,
		// so that the processors do not each fill the least loaded pod.
		Shared: true,
	}
	if cfg.LoadBandMin >= 0 {
		bal.Band = lb.Band{Min: cfg.LoadBandMin, Ratio: cfg.LoadBandRatio}
	}
	newBal := func() (*lb.Balancer, error) { return lb.New(bal) }
	cl.deg = newDegraded(cfg.Degraded, cfg.Staleness)
	cl.cache.deg = cl.deg
	cl.states = newStates(cfg.Store, cfg.Timing, cfg.Degraded.DetectAfter, cl.clk, newBal, cl.obs, cl.deg)
	if tr := cfg.Store.Tracker(); tr != nil {
		if cl.obs.o != nil {
			cl.writes = xsync.NewMap[uint64, int64]()
		}
		cl.untrack = tr.Subscribe(cl.invalidated)
	}
	cl.trackingDue.Store(time.Now().Add(cfg.Cache.TrackingCheck).UnixNano())
	cl.obs.note(context.Background(), Note{Kind: NoteClientOpened})
	cl.startDegraded()
	return cl, nil
}

// invalidated is the tracker's callback: Redis reports link keys changed by
// any process (nil: tracking lost, see trackingLost). It runs on the Redis
// client's reading goroutine, so it only drops cache entries.
func (c *Client) invalidated(links []store.Link) {
	if links == nil {
		c.trackingLost()
		c.obs.note(context.Background(), Note{Kind: NoteInvalidated, Count: -1})
		return
	}
	n, lag := 0, int64(0)
	for _, l := range links {
		h := keyHash(serviceHash(l.Namespace, l.Service), l.UID)
		c.cache.invalidate(h)
		n++
		if c.writes != nil {
			if sent, ok := c.writes.LoadAndDelete(h); ok {
				lag = max(lag, time.Now().UnixNano()-sent)
			}
		}
	}
	if n > 0 {
		c.obs.note(context.Background(), Note{Kind: NoteInvalidated, Count: n, Delay: time.Duration(lag)})
	}
}

// maxWrites bounds Client.writes: entries whose invalidation never came (a
// key this client did not track) are dropped all at once past it.
const maxWrites = 4096

// wrote records that a write of the link key with hash h is being sent, for
// the tracking lag of NoteInvalidated.
func (c *Client) wrote(h uint64) {
	if c.writes == nil {
		return
	}
	if c.writes.Size() >= maxWrites {
		c.writes.Clear()
	}
	c.writes.Store(h, time.Now().UnixNano())
}

// States returns the client's view of the pod states.
func (c *Client) States() *States { return c.states }

// usable is the check every method with a context makes first.
func (c *Client) usable(ctx context.Context) error { return usable(ctx, &c.closed) }

// usable is the check every method of a Client or States with a context
// makes first: a nil context is an invalid argument, and once closed is set
// the methods read and write nothing.
func usable(ctx context.Context, closed *atomic.Bool) error {
	if ctx == nil {
		return errNilContext
	}
	if closed.Load() {
		return ErrClosed
	}
	return nil
}

// CacheStats returns the link cache's statistics.
func (c *Client) CacheStats() CacheStats { return c.cache.stats() }

// ComputeLinkedPod returns the pod that serves uid for svc (SPEC §5.1): the
// cached pod when it is routable (no Redis call); else the linked pod when it
// is routable; else, for a new user, an accepting pod chosen by the strategy
// and linked with a temporary link (another client may win the race, and
// then its pod is returned). A temporary link to a pod that is no longer
// routable is moved by compare-and-set; a persistent one is an
// *PodNotRoutableError unless RelinkPersistent is set. With no accepting pod
// it returns ErrNoAvailablePod. Concurrent calls for one user make at most one
// Redis round trip.
func (c *Client) ComputeLinkedPod(ctx context.Context, ns, uid, svc string) (int, error) {
	if err := c.usable(ctx); err != nil {
		return NoPod, err
	}
	h := keyHash(c.serviceHash(ns, svc), uid)
	pod, sv, ok := c.cache.get(h, ns, svc, uid)
	if ok && sv.view.routable(pod, c.clk.Millis()) {
		if c.hits {
			c.observeHit(ctx, ns, svc, pod)
		}
		return pod, nil
	}
	res := CacheMiss
	if ok {
		res = CacheStale
	}
	if c.obs.o == nil {
		var op Op
		return c.computeSlow(ctx, h, ns, uid, svc, &op)
	}
	ctx, op := c.obs.call(ctx, "ComputeLinkedPod", ns, svc, c.strategy)
	op.Cache = res
	pod, err := c.computeSlow(ctx, h, ns, uid, svc, op)
	op.Pod = pod
	c.obs.end(ctx, op, err) // op goes back to its pool
	return pod, err
}

// observeHit reports a cache hit of ComputeLinkedPod as an operation.
func (c *Client) observeHit(ctx context.Context, ns, svc string, pod int) {
	ctx, op := c.obs.call(ctx, "ComputeLinkedPod", ns, svc, c.strategy)
	op.Cache, op.Pod = CacheHit, pod
	c.obs.end(ctx, op, nil)
}

// serviceHash is serviceHash(ns, svc), remembered for the latest service.
func (c *Client) serviceHash(ns, svc string) uint64 {
	if s := c.last.Load(); s != nil && s.ns == ns && s.name == svc {
		return s.hash
	}
	return serviceHash(ns, svc)
}

// computeSlow is ComputeLinkedPod after a cache miss, with single flight.
// op receives what the observers are told (a caller that waited for another
// one's round trip learns only the pod).
func (c *Client) computeSlow(ctx context.Context, h uint64, ns, uid, svc string, op *Op) (int, error) {
	mine := &call{h: h, ns: ns, svc: svc, uid: uid}
	if other := c.flight.join(mine); other != nil {
		return other.wait(ctx)
	}
	// Deferred, so that a panic below (an Observer's, a nil context's)
	// leaves no entry behind for later callers to wait on forever.
	pod, err := NoPod, errLeaderPanicked
	defer func() {
		mine.finish(pod, err)
		c.flight.leave(mine)
	}()
	if p, sv, ok := c.cache.peek(h, ns, svc, uid); ok && sv.view.routable(p, c.clk.Millis()) {
		// The call that just left the flight cached the answer: a caller
		// that missed the cache before it was filled finds it now.
		pod, err = p, nil
	} else {
		pod, err = c.compute(ctx, h, ns, uid, svc, op)
	}
	return pod, err
}

// compute does the Redis part of ComputeLinkedPod, and fills op's Link and
// Placed.
//
// One round trip both reads an existing user's link and places a new user:
// the pod a new user would get is picked first, and the store links it only
// if no link exists (SetLinkedPodIfAbsentTracked), answering the link
// afterwards either way, with Redis tracking it for this client. So a placed
// user is cached at once, coherently, and a storm of new users costs one
// round trip each.
func (c *Client) compute(ctx context.Context, h uint64, ns, uid, svc string, op *Op) (int, error) {
	var err error
	sv := c.last.Load()
	if sv == nil || sv.ns != ns || sv.name != svc {
		if sv, err = c.states.service(ctx, ns, svc); err != nil {
			return NoPod, err
		}
	}
	if err := store.ValidateUID("uid", uid); err != nil {
		return NoPod, err
	}
	c.last.Store(sv)
	v := sv.view
	if pod, err, ok := c.degradedAnswer(h, sv, uid); ok {
		return pod, err
	}
	// Untracked reads are trusted up to the cache TTL only where nothing is
	// tracked (the embedded Redis).
	trusted := c.store.Tracker() == nil
	// A few rounds at most: each one answers, or finds the pod it placed
	// the user on gone meanwhile and moves the user in the next.
	for range 3 {
		tok := c.cache.token(h)
		t, terr := c.tentative(h, sv, uid)
		var p store.Placement
		if terr == nil {
			rctx, rt := c.obs.rt(ctx, rtPlace, ns, svc, 1)
			p, err = c.store.SetLinkedPodIfAbsentTracked(rctx, ns, uid, svc, t.pod, c.tempTTL)
			c.obs.end(rctx, rt, err)
		} else {
			// No accepting pod: an existing user may still be served.
			rctx, rt := c.obs.rt(ctx, rtGetTracked, ns, svc, 1)
			p.Link, err = c.store.GetLinkedPodTracked(rctx, ns, uid, svc, c.cfg.Cache.TTL)
			c.obs.end(rctx, rt, err)
			p.Tracked = !trusted
		}
		if err != nil {
			tried := NoPod
			if terr == nil {
				t.release()
				tried = t.pod // a write whose outcome is unknown tried it
			}
			return c.storeFailed(ctx, err, h, sv, uid, tried)
		}
		now := c.clk.Millis()
		cacheable := p.Tracked || trusted
		link := p.Link
		newcomer := p.Placed
		if p.Placed && v.accepting(t.pod, now) {
			c.commit(ctx, v, t, now)
			c.placed(ctx, v, t.pod, t.pod, NoPod, true)
			op.Link, op.Placed = LinkTemporary, true
			c.linked(h, sv, uid, t.pod)
			if cacheable {
				c.cache.put(h, sv, uid, t.pod, tok)
			}
			return t.pod, nil
		}
		if terr == nil {
			// An existing user: nothing placed. Or a new one placed on a
			// pod that stopped taking new users (or went away) during the
			// round trip: the client knows it now, so it moves the user
			// below rather than answer that pod.
			t.release()
		}
		op.Link = linkKind(link.Pod, link.Persistent)
		switch {
		case newcomer:
		case link.Pod == NoPod:
			return NoPod, ErrNoAvailablePod
		case v.routable(link.Pod, now):
			// Existing users stay, even on a DenyNewCall pod.
			c.linked(h, sv, uid, link.Pod)
			if cacheable {
				c.cache.put(h, sv, uid, link.Pod, tok)
			}
			return link.Pod, nil
		case link.Persistent && !c.cfg.RelinkPersistent:
			return NoPod, &PodNotRoutableError{Pod: link.Pod}
		}
		// Linked to a pod that is gone: move the link, unless another client
		// moved it first.
		t, err = c.tentative(h, sv, uid)
		if err != nil {
			return NoPod, err
		}
		rctx, rt := c.obs.rt(ctx, rtReplace, ns, svc, 1)
		c.wrote(h)
		replaced, actual, err := c.store.ReplaceLinkedPod(rctx, ns, uid, svc, link.Pod, t.pod, c.tempTTL)
		c.obs.end(rctx, rt, err)
		if err != nil {
			t.release()
			return NoPod, err
		}
		if replaced {
			// Not cached: this write ended the tracking of the key, and the
			// next call reads it again with tracking.
			c.commit(ctx, v, t, c.clk.Millis())
			c.placed(ctx, v, t.pod, actual, link.Pod, true)
			op.Link, op.Placed = LinkTemporary, true
			return actual, nil
		}
		t.release()
		c.placed(ctx, v, t.pod, actual, NoPod, false)
		if v.routable(actual, c.clk.Millis()) {
			return actual, nil
		}
	}
	return NoPod, ErrNoAvailablePod
}

// linkKind is the kind of a link read from Redis.
func linkKind(pod int, persistent bool) LinkKind {
	switch {
	case pod == NoPod:
		return LinkNone
	case persistent:
		return LinkPersistent
	}
	return LinkTemporary
}

// tentative is the pod a new user would get, held until the store says
// whether the user was new: the pod of a pending placement of the degraded
// mode, or a pick of the strategy, counted in the pod's corrected load until
// commit keeps it or release gives it back.
type tentative struct {
	pod int
	r   lb.PickResult // Done is nil for a pending placement
	// took is how long the pick took, reported with NotePicked (only
	// measured with an observer).
	took time.Duration
}

// release gives back a pick that placed nobody.
func (t *tentative) release() {
	if t.r.Done != nil {
		t.r.Done(lb.DoneInfo{})
		t.r.Done = nil
	}
}

// tentative returns the pod a new user of sv would get now.
func (c *Client) tentative(h uint64, sv *service, uid string) (tentative, error) {
	if pod, ok := c.pendingPod(h, sv, uid); ok {
		// The user keeps the pod it was given during the outage.
		return tentative{pod: pod}, nil
	}
	var start time.Time
	if c.obs.o != nil {
		start = time.Now()
	}
	r, err := sv.view.pick(c.clk.Millis())
	if err != nil {
		return tentative{pod: NoPod}, err
	}
	t := tentative{pod: r.Pod, r: r}
	if c.obs.o != nil {
		t.took = time.Since(start)
	}
	return t, nil
}

// commit keeps the pick of t: the user was placed (or moved) there at now.
// A new user's placement is reported (NotePicked, NotePlaced); a move is
// reported by the caller.
func (c *Client) commit(ctx context.Context, v *view, t tentative, now int64) {
	if t.r.Done == nil {
		return // a pending placement, counted when it was made
	}
	c.states.commit(v, t.r, now)
	if c.obs.o != nil {
		c.obs.note(ctx, Note{Kind: NotePicked, Namespace: v.svc.ns, Service: v.svc.name,
			Pod: t.pod, Strategy: c.strategy, Duration: t.took})
	}
}

// placed reports a write that tried to link a user to want: won says it
// took, actual is the pod linked afterwards, from the unroutable pod the user
// was moved off (NoPod for a new user).
func (c *Client) placed(ctx context.Context, v *view, want, actual, from int, won bool) {
	if c.obs.o == nil {
		return
	}
	n := Note{Namespace: v.svc.ns, Service: v.svc.name, Pod: want, From: from, Strategy: c.strategy}
	switch {
	case !won:
		n.Kind, n.From = NoteClaimConflict, actual
	case from != NoPod:
		n.Kind = NoteRelinked
	default:
		n.Kind = NotePlaced
	}
	c.obs.note(ctx, n)
}

// GetLinkedPod returns the pod uid is linked to for svc: the cached one, else
// the one in Redis, else NoPod. It does not fill the cache and does not check
// that the pod is routable.
func (c *Client) GetLinkedPod(ctx context.Context, ns, uid, svc string) (int, error) {
	if err := c.usable(ctx); err != nil {
		return NoPod, err
	}
	if pod, _, ok := c.cache.get(keyHash(serviceHash(ns, svc), uid), ns, svc, uid); ok {
		return pod, nil
	}
	return c.readLink(ctx, "GetLinkedPod", ns, uid, svc)
}

// readLink reads uid's link from Redis as the operation name, untracked.
func (c *Client) readLink(ctx context.Context, name, ns, uid, svc string) (int, error) {
	ctx, op := c.obs.call(ctx, name, ns, svc, "")
	rctx, rt := c.obs.rt(ctx, rtGet, ns, svc, 1)
	pod, err := c.store.GetLinkedPod(rctx, ns, uid, svc)
	c.obs.end(rctx, rt, err)
	if op != nil {
		op.Pod, op.Cache = pod, CacheMiss
		if name == "GetLinkedPodNotCache" {
			op.Cache = CacheNone
		}
		c.obs.end(ctx, op, err)
	}
	return pod, err
}

// GetLinkedPodInCacheOrIfPersist returns the cached pod, else the pod of a
// persistent link (caching it), else NoPod.
func (c *Client) GetLinkedPodInCacheOrIfPersist(ctx context.Context, ns, uid, svc string) (int, error) {
	if err := c.usable(ctx); err != nil {
		return NoPod, err
	}
	h := keyHash(serviceHash(ns, svc), uid)
	if pod, _, ok := c.cache.get(h, ns, svc, uid); ok {
		return pod, nil
	}
	ctx, op := c.obs.call(ctx, "GetLinkedPodInCacheOrIfPersist", ns, svc, "")
	pod, err := c.readPersistent(ctx, h, ns, uid, svc, op)
	c.obs.end(ctx, op, err)
	return pod, err
}

// readPersistent is GetLinkedPodInCacheOrIfPersist after a cache miss.
func (c *Client) readPersistent(ctx context.Context, h uint64, ns, uid, svc string, op *Op) (int, error) {
	sv, err := c.states.service(ctx, ns, svc)
	if err != nil {
		return NoPod, err
	}
	tok := c.cache.token(h)
	rctx, rt := c.obs.rt(ctx, rtGetTracked, ns, svc, 1)
	link, err := c.store.GetLinkedPodTracked(rctx, ns, uid, svc, c.cfg.Cache.TTL)
	c.obs.end(rctx, rt, err)
	if err != nil || !link.Persistent {
		return NoPod, err
	}
	c.cache.put(h, sv, uid, link.Pod, tok)
	if op != nil {
		op.Pod, op.Cache, op.Link = link.Pod, CacheMiss, LinkPersistent
	}
	return link.Pod, nil
}

// GetLinkedPodNotCache reads uid's link from Redis, bypassing the cache.
func (c *Client) GetLinkedPodNotCache(ctx context.Context, ns, uid, svc string) (int, error) {
	if err := c.usable(ctx); err != nil {
		return NoPod, err
	}
	return c.readLink(ctx, "GetLinkedPodNotCache", ns, uid, svc)
}

// GetLinkedInCache returns the cached pod of uid, or NoPod; it never calls
// Redis. After Close it returns NoPod.
func (c *Client) GetLinkedInCache(ns, uid, svc string) int {
	if c.closed.Load() {
		return NoPod
	}
	if pod, _, ok := c.cache.get(keyHash(serviceHash(ns, svc), uid), ns, svc, uid); ok {
		return pod
	}
	return NoPod
}

// CacheExpired drops uid's cache entry and returns the pod it held, or NoPod
// (always NoPod after Close).
func (c *Client) CacheExpired(ns, uid, svc string) int {
	if c.closed.Load() {
		return NoPod
	}
	if pod, ok := c.cache.remove(keyHash(serviceHash(ns, svc), uid), ns, svc, uid); ok {
		return pod
	}
	return NoPod
}

// SetCache caches pod for uid until the cache TTL, a Redis invalidation or
// eviction, whichever comes first. It writes nothing to Redis.
func (c *Client) SetCache(ctx context.Context, ns, uid, svc string, pod int) error {
	if err := c.usable(ctx); err != nil {
		return err
	}
	if pod < 0 || pod > store.MaxPod {
		return &store.InvalidArgumentError{Arg: "pod", Reason: "outside 0.." + fmt.Sprint(store.MaxPod)}
	}
	if err := store.ValidateUID("uid", uid); err != nil {
		return err
	}
	sv, err := c.states.service(ctx, ns, svc)
	if err != nil {
		return err
	}
	c.last.Store(sv)
	c.cache.set(keyHash(sv.hash, uid), sv, uid, pod)
	return nil
}

// GetLinkService returns uid's persistent links, service → pod.
func (c *Client) GetLinkService(ctx context.Context, ns, uid string) (map[string]int, error) {
	if err := c.usable(ctx); err != nil {
		return nil, err
	}
	ctx, op := c.obs.call(ctx, "GetLinkService", ns, "", "")
	rctx, rt := c.obs.rt(ctx, rtLinkService, ns, "", 1)
	links, err := c.store.GetLinkService(rctx, ns, uid)
	c.obs.end(rctx, rt, err)
	if op != nil {
		op.Keys = len(links)
		c.obs.end(ctx, op, err)
	}
	return links, err
}

// BatchGetLinkedPod returns the links of uids to svc grouped by pod, input
// order kept inside each group: the cached ones from the cache, the others
// from Redis in one round trip (and cached). Uids without a link are left out.
func (c *Client) BatchGetLinkedPod(ctx context.Context, ns string, uids []string, svc string) (map[int][]string, error) {
	if err := c.usable(ctx); err != nil {
		return nil, err
	}
	ctx, op := c.obs.call(ctx, "BatchGetLinkedPod", ns, svc, "")
	groups, err := c.batch(ctx, ns, uids, svc, op)
	c.obs.end(ctx, op, err)
	return groups, err
}

// SetLinkedPodIfAbsent links uid to pod with a temporary link unless a link
// exists, and returns the pod linked afterwards.
func (c *Client) SetLinkedPodIfAbsent(ctx context.Context, ns, uid, svc string, pod int) (int, error) {
	if err := c.usable(ctx); err != nil {
		return NoPod, err
	}
	ctx, op := c.obs.call(ctx, "SetLinkedPodIfAbsent", ns, svc, "")
	rctx, rt := c.obs.rt(ctx, rtIfAbsentTemp, ns, svc, 1)
	actual, err := c.store.SetLinkedPodIfAbsent(rctx, ns, uid, svc, pod, c.tempTTL)
	c.obs.end(rctx, rt, err)
	if op != nil {
		op.Pod, op.Link = actual, LinkTemporary
		c.obs.end(ctx, op, err)
	}
	return actual, err
}

// Close stops the client's goroutines. Every method called afterwards returns
// ErrClosed (or NoPod, false, nothing) without reading or writing Redis or
// the cache; the store is not closed. Close is idempotent.
func (c *Client) Close() {
	if c.closed.Swap(true) {
		return
	}
	if c.untrack != nil {
		c.untrack()
	}
	c.states.close()
	c.stopDegraded()
	c.clk.Stop()
	c.obs.note(context.Background(), Note{Kind: NoteClientClosed})
}
