package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// Tracker hands out the invalidations Redis pushes for keys a client read
// with tracking (RESP3 client-side caching): when any process changes or
// removes such a key, Redis tells every connection that read it, and the
// Tracker tells its subscribers. It is installed on a rueidis client as the
// ClientOption.OnInvalidations hook (Dial does this). Safe for concurrent use.
type Tracker struct {
	// subs is replaced whole on Subscribe and cancel: the hook runs on the
	// client's reading goroutine and must not wait for a lock.
	subs atomic.Pointer[[]*subscription]
	mu   sync.Mutex // serializes changes to subs
}

type subscription struct{ fn func(links []Link) }

// Link names a link by its parts: the K1 key of (Namespace, UID, Service).
// Trackers deliver invalidated links in this form, parsed once for every
// subscriber, so no subscriber handles Redis keys.
type Link struct {
	Namespace, UID, Service string
}

// NewTracker returns a Tracker with no subscribers.
func NewTracker() *Tracker { return &Tracker{} }

// OnInvalidations is the rueidis hook; set ClientOption.OnInvalidations to it.
// A nil batch (the connection was lost, or Redis flushed its data) reaches
// subscribers as a nil list: forget everything read before. Invalidated keys
// that are not link keys (K1) are not passed on, and a batch holding none is
// not delivered.
func (t *Tracker) OnInvalidations(msgs []rueidis.RedisMessage) {
	subs := t.subs.Load()
	if subs == nil || len(*subs) == 0 {
		return
	}
	var links []Link
	if msgs != nil {
		links = make([]Link, 0, len(msgs))
		for i := range msgs {
			k, err := msgs[i].ToString()
			if err != nil {
				continue
			}
			if ns, uid, svc, ok := ParseLinkKey(k); ok {
				links = append(links, Link{Namespace: ns, UID: uid, Service: svc})
			}
		}
		if len(links) == 0 {
			return
		}
	}
	for _, s := range *subs {
		s.fn(links)
	}
}

// Subscribe calls fn with every batch of invalidated links (nil: tracking
// was lost, forget everything read before) until cancel is called. fn runs
// on the Redis client's reading goroutine: it must be quick and must not
// call Redis, and the slice is shared with the other subscribers: read it,
// do not keep or change it.
func (t *Tracker) Subscribe(fn func(links []Link)) (cancel func()) {
	s := &subscription{fn: fn}
	t.mu.Lock()
	defer t.mu.Unlock()
	var next []*subscription
	if cur := t.subs.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, s)
	t.subs.Store(&next)
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		cur := *t.subs.Load()
		next := make([]*subscription, 0, len(cur))
		for _, o := range cur {
			if o != s {
				next = append(next, o)
			}
		}
		t.subs.Store(&next)
	}
}

// Configure sets what a rueidis client needs to report invalidations to t:
// the OnInvalidations hook (chained after any hook already set), and a value
// cache that keeps nothing. Reads made with tracking then always reach Redis,
// so a read right after a write never returns a value the client library kept
// from before the write; the values are cached above the store instead.
// Build the client with these options and pass WithTracker(t) to New.
func (t *Tracker) Configure(opt *rueidis.ClientOption) {
	ours, theirs := t.OnInvalidations, opt.OnInvalidations
	opt.OnInvalidations = ours
	if theirs != nil {
		opt.OnInvalidations = func(m []rueidis.RedisMessage) {
			ours(m)
			theirs(m)
		}
	}
	opt.NewCacheStoreFn = func(rueidis.CacheStoreOption) rueidis.CacheStore { return keepNothing{} }
}

// keepNothing is a rueidis client-side cache store that stores no value: every
// read made for caching goes to Redis (and is tracked there).
type keepNothing struct{}

// Flight always misses, so the read is sent to Redis.
func (keepNothing) Flight(string, string, time.Duration, time.Time) (rueidis.RedisMessage, rueidis.CacheEntry) {
	return rueidis.RedisMessage{}, nil
}

// Update keeps nothing, and hands back the key's server-side expiry (rueidis
// reads PTTL with every tracked read): 0 for a key without one, so that the
// reply's CachePTTL is -1 exactly when the key does not expire.
func (keepNothing) Update(_, _ string, val rueidis.RedisMessage) int64 {
	if px := val.CachePXAT(); px > 0 {
		return px
	}
	return 0
}

// Cancel has nothing to cancel.
func (keepNothing) Cancel(string, string, error) {}

// Delete has nothing to delete.
func (keepNothing) Delete([]rueidis.RedisMessage) {}

// Close has nothing to flush.
func (keepNothing) Close(error) {}

// WithTracker tells New that client reports invalidations to t (it was built
// with options set by t.Configure), so reads made for caching are tracked and
// their invalidations reach t's subscribers.
func WithTracker(t *Tracker) Option {
	return func(r *Redis) { r.tracker = t }
}

// Option configures New.
type Option func(*Redis)

// Tracker returns the store's tracker, or nil when reads are not tracked
// (the embedded Redis, or a client built without one): then cached values
// can only be trusted up to their TTL.
func (r *Redis) Tracker() *Tracker { return r.tracker }

// TrackedLink is a link read with tracking.
type TrackedLink struct {
	// Pod is the linked pod, or NoPod.
	Pod int
	// Persistent is true when the link has no expiry.
	Persistent bool
}

// The tracked reads pin their commands (Pin: never returned to rueidis's
// pool). rueidis v1.0.79 recycles a cacheable command answered with
// ErrDoCacheAborted while the writer goroutine of the connection that just
// broke may still be reading it, which the race detector reports and which
// could hand a half-read buffer to the next command built; a pinned command
// is left to the garbage collector instead.

// GetLinkedPodTracked reads uid's link to svc like GetLinkedPod, and asks
// Redis to report any later change of the key to the Tracker. ttl is the
// client-side TTL rueidis asks for; pass the duration you will trust the
// answer. Without a tracker it is a plain read.
func (r *Redis) GetLinkedPodTracked(ctx context.Context, ns, uid, svc string, ttl time.Duration) (TrackedLink, error) {
	const op = "GetLinkedPodTracked"
	if err := r.checkLink(ctx, ns, uid, svc); err != nil {
		return TrackedLink{Pod: NoPod}, err
	}
	if err := r.tracks(ns); err != nil {
		return TrackedLink{Pod: NoPod}, err
	}
	key := LinkKey(ns, uid, svc)
	if r.tracker != nil {
		// One tracked GET: rueidis reads the key's PTTL in the same MULTI,
		// and keepNothing.Update passes it on as the reply's CachePTTL.
		msg, err := r.client.DoCache(ctx, r.client.B().Get().Key(key).Cache().Pin(), ttl).ToMessage()
		if err != nil && !rueidis.IsRedisNil(err) {
			return TrackedLink{Pod: NoPod}, classify(op, key, err)
		}
		pod, err := podValue(key, &msg)
		if err != nil {
			return TrackedLink{Pod: NoPod}, err
		}
		return TrackedLink{Pod: pod, Persistent: pod != NoPod && msg.CachePTTL() == -1}, nil
	}
	res := r.client.DoMulti(ctx, r.client.B().Get().Key(key).Build(), r.client.B().Pttl().Key(key).Build())
	msg, err := res[0].ToMessage()
	if err != nil && !rueidis.IsRedisNil(err) {
		return TrackedLink{Pod: NoPod}, classify(op, key, err)
	}
	pod, err := podValue(key, &msg)
	if err != nil {
		return TrackedLink{Pod: NoPod}, err
	}
	ms, err := res[1].AsInt64()
	if err != nil {
		return TrackedLink{Pod: NoPod}, classify(op, key, err)
	}
	return TrackedLink{Pod: pod, Persistent: pod != NoPod && ms == -1}, nil
}

// Placement is the answer of SetLinkedPodIfAbsentTracked.
type Placement struct {
	// Link is the link afterwards: the caller's pod when Placed, else the
	// link that was there.
	Link TrackedLink
	// Placed is true when no link existed and the caller's pod was written.
	Placed bool
	// Tracked is true when Redis tracks the link for this client from now on,
	// so that its next change by any process reaches the Tracker. Always
	// false on a store without a tracker.
	Tracked bool
}

// SetLinkedPodIfAbsentTracked is SetLinkedPodIfAbsent for a temporary link
// (ttl > 0 seconds) that also answers like GetLinkedPodTracked, in one round
// trip: it links uid to pod unless a link exists, and returns the link
// afterwards, with whether it is persistent. The link is read after the
// write, with tracking: a client that caches the answer hears of the next
// change of the link made by anyone, and not of its own write. It is how a
// client places a new user and reads an existing one at once.
//
// On Redis Cluster, a call redirected by MOVED or ASK (while a slot
// migrates) reaches the new node without its CLIENT CACHING YES; the answer
// is right, but Tracked may be true without Redis tracking the link, which
// then lives by the caller's cache TTL.
func (r *Redis) SetLinkedPodIfAbsentTracked(ctx context.Context, ns, uid, svc string, pod, ttl int) (Placement, error) {
	if err := r.usable(ctx); err != nil {
		return Placement{Link: TrackedLink{Pod: NoPod}}, err
	}
	const op = "SetLinkedPodIfAbsentTracked"
	if ttl == Persistent {
		return Placement{Link: TrackedLink{Pod: NoPod}}, invalid("ttl", "-1: a tracked placement is temporary")
	}
	keys, err := linkCall(ns, uid, svc, pod, ttl)
	if err != nil {
		return Placement{Link: TrackedLink{Pod: NoPod}}, err
	}
	if err := r.tracks(ns); err != nil {
		return Placement{Link: TrackedLink{Pod: NoPod}}, err
	}
	return r.place(ctx, op, keys, svc, pod, ttl, true)
}

// LinkedPodsTracked reads the links of uids to svc in one pipelined round,
// with tracking, and returns their pods in input order (NoPod when missing or
// corrupt). Corrupt values are *CorruptError values joined in err beside the
// result; a failure of the round returns nil and the error.
//
// It reads like BatchGetLinkedPod, in MGETs, wherever Redis can track all
// the keys of an MGET: in broadcast mode (every key under the prefixes is
// tracked), on Dial's placement connections (they track every read), and
// on a standalone server by CLIENT CACHING YES before each MGET, on its
// connection in the same round trip (it applies to the next command, all of
// its keys). Only a cluster store without placement connections reads key
// by key, a tracked GET each (CLIENT CACHING YES and the GET cannot be kept
// together on a redirection).
func (r *Redis) LinkedPodsTracked(ctx context.Context, ns string, uids []string, svc string, ttl time.Duration) ([]int, error) {
	if err := r.usable(ctx); err != nil {
		return nil, err
	}
	const op = "LinkedPodsTracked"
	if err := batchArgs(ns, uids, svc); err != nil {
		return nil, err
	}
	if err := r.tracks(ns); err != nil {
		return nil, err
	}
	if len(uids) == 0 {
		return []int{}, nil
	}
	if r.cluster && r.tracker != nil && !r.broadcast && r.placer == nil {
		return r.linkedPodsPerKey(ctx, op, ns, uids, svc, ttl)
	}
	client, caching := r.client, r.tracker != nil && !r.broadcast
	if r.placer != nil && !r.broadcast {
		client, caching = r.placer, false
	}
	p32 := make([]int32, len(uids))
	var bad []error
	var err error
	if r.cluster {
		bad, err = r.batchCluster(ctx, client, op, ns, uids, svc, p32)
	} else {
		bad, err = r.batchStandalone(ctx, client, caching, op, ns, uids, svc, p32)
	}
	if err != nil {
		return nil, err
	}
	pods := make([]int, len(uids))
	for i, p := range p32 {
		pods[i] = int(p)
	}
	return pods, errors.Join(bad...)
}

// linkedPodsPerKey is LinkedPodsTracked key by key: a tracked GET each,
// through the client library's cache API (CLIENT CACHING YES, GET and PTTL
// in one MULTI per key, redirected together).
func (r *Redis) linkedPodsPerKey(ctx context.Context, op, ns string, uids []string, svc string, ttl time.Duration) ([]int, error) {
	pods := make([]int, len(uids))
	keys := linkKeys(ns, uids, svc)
	cmds := make([]rueidis.CacheableTTL, len(keys))
	for i, k := range keys {
		cmds[i] = rueidis.CT(r.client.B().Get().Key(k).Cache().Pin(), ttl)
	}
	var bad []error
	for i, res := range r.client.DoMultiCache(ctx, cmds...) {
		msg, err := res.ToMessage()
		if err != nil && !rueidis.IsRedisNil(err) {
			return nil, classify(op, keys[i], err)
		}
		p, err := podValue(keys[i], &msg)
		if err != nil {
			bad = append(bad, err)
			p = NoPod
		}
		pods[i] = p
	}
	return pods, errors.Join(bad...)
}
