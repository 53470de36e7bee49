package engine

import (
	"iter"
	"math"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/stickyroute/stickyroute/internal/clock"
	"github.com/stickyroute/stickyroute/internal/xruntime"
)

// CacheStats is a snapshot of a client's link cache counters.
type CacheStats struct {
	// Hits and Misses count lookups that found a live link and those that did
	// not (an expired link is a miss).
	Hits, Misses uint64
	// Evictions counts links dropped to make room for new ones.
	Evictions uint64
	// Expired counts links dropped because their TTL had passed.
	Expired uint64
	// Invalidations counts links dropped because Redis said they changed, or
	// because tracking was lost and the whole cache was dropped.
	Invalidations uint64
	// Size is the number of cached links; MaxEntries bounds it.
	Size, MaxEntries int
	// Eviction is the policy in force.
	Eviction Eviction
	// RecencyWeight is how much the eviction policy weighs recency against
	// frequency, in [0, 1]: 1 for EvictLRU, 0 for EvictLFU and EvictTTL, and
	// for EvictAdaptive the weight it has learnt so far (it starts at 0.5).
	RecencyWeight float64
}

// HitRatio returns Hits / (Hits + Misses), or 0 before any lookup.
func (s CacheStats) HitRatio() float64 {
	if n := s.Hits + s.Misses; n > 0 {
		return float64(s.Hits) / float64(n)
	}
	return 0
}

const (
	// cacheInlineUID is the longest uid an entry holds inline; a longer one
	// costs two more allocations and one more cache line per hit.
	cacheInlineUID = 24
	// cacheSample is how many entries an eviction compares.
	cacheSample = 5
	// cacheEvictTries bounds the sampling rounds of one eviction: a sampled
	// entry may be deleted or replaced before the eviction takes its shard's
	// lock, and then it is not evicted.
	cacheEvictTries = 8
	// cacheSampleTries is how many random slots a sample looks at for a
	// live entry (a shard is at least 3/8 full once it has grown).
	cacheSampleTries = 16
	// cacheLFUInit is a new entry's frequency counter, so that it is not the
	// first one out before it had a chance to be read again (as in Redis).
	cacheLFUInit = 5
	// cacheLFULog slows the counter down: from c, a hit increments it with
	// probability 1/((c-cacheLFUInit)*cacheLFULog+1), so 255 stands for some
	// 300,000 hits and most hits on a warm entry write nothing.
	cacheLFULog = 10
	// cacheLFUDecays is how many counter levels an entry loses over one TTL
	// of idleness.
	cacheLFUDecays = 16
	// cacheGhostMax bounds each ghost ring of the adaptive policy.
	cacheGhostMax = 4096
	// cacheAdaptStep is how far one ghost hit moves the recency weight.
	cacheAdaptStep = 1.0 / 64
	// cacheLine is the size of a cache line, which keeps the fields hits read
	// apart from the ones writers change.
	cacheLine = 64
)

// cacheEntry is one cached link as the table's slot holds it (see tslot),
// decoded: what a hit compares and returns.
type cacheEntry struct {
	// svc is the entry's service; a lookup compares its names, so that a
	// hash collision is a miss and never another user's pod.
	svc *service
	// long is the key of an entry whose uid is longer than cacheInlineUID;
	// nil when the uid is inline.
	long *longUID
	// expLen packs the expiry, in coarse Unix milliseconds, above 8 bits of
	// inline uid length (slotLongLen for a long uid).
	expLen uint64
	pod    int32
	// uid holds an inline uid, zero-padded.
	uid [cacheInlineUID]byte
	// meta is the slot's metadata word as read with the entry (see
	// packMeta); unused when storing.
	meta uint64
}

func makeCacheEntry(svc *service, uid string, pod int32, exp int64) cacheEntry {
	e := cacheEntry{svc: svc, pod: pod, expLen: uint64(exp) << 8}
	if len(uid) <= cacheInlineUID {
		copy(e.uid[:], uid)
		e.expLen |= uint64(len(uid))
	} else {
		// A copy, so that the entry does not pin a caller's larger buffer.
		e.long = &longUID{svc: svc, uid: strings.Clone(uid)}
		e.expLen |= slotLongLen
	}
	return e
}

// expiry returns the entry's expiry in coarse Unix milliseconds.
func (e *cacheEntry) expiry() int64 { return int64(e.expLen >> 8) }

// is reports whether the entry holds the key (ns, name, uid). It allocates
// nothing: string(bytes) in a comparison is a view, not a copy.
func (e *cacheEntry) is(ns, name, uid string) bool {
	if e.svc.ns != ns || e.svc.name != name {
		return false
	}
	if e.long == nil {
		n := int(uint8(e.expLen))
		return n == len(uid) && string(e.uid[:n]) == uid
	}
	return e.long.uid == uid
}

// sameKey reports whether e and o are entries of the same key. Unused
// bytes of uid are zero, so comparing the arrays compares inline uids.
func (e *cacheEntry) sameKey(o *cacheEntry) bool {
	if e.svc.ns != o.svc.ns || e.svc.name != o.svc.name || (e.long == nil) != (o.long == nil) {
		return false
	}
	if e.long == nil {
		return e.uid == o.uid && uint8(e.expLen) == uint8(o.expLen)
	}
	return e.long.uid == o.long.uid
}

// A metadata word: the last access (milliseconds since base, wrapping) in
// bits 0-31 and the frequency counter in bits 32-39.
func packMeta(at uint32, freq uint8) uint64 {
	return uint64(freq)<<32 | uint64(at)
}

// cacheLFUOdds[c] is the threshold under which a uniform uint32 increments a
// frequency counter at c: a table, so that a hit does not divide.
var cacheLFUOdds = func() (t [256]uint32) {
	for c := range t {
		t[c] = uint32(math.MaxUint32 / uint64(max(c-cacheLFUInit, 0)*cacheLFULog+1))
	}
	t[255] = 0 // saturated
	return t
}()

// linkCache maps (namespace, service, uid) to a pod for a Client. Keys are
// keyHash(serviceHash(ns, name), uid), one entry per hash (a later key takes
// the hash over); entries keep the full key, so a hash collision costs a
// miss, never a wrong pod. It is safe for concurrent use: get takes no lock
// and allocates nothing; the other methods run on the miss path and may lock.
// The entries live in a table of one-cache-line slots (cachetable.go).
//
// # Coherence
//
// A link read from Redis may be cached only if Redis did not announce a
// change of its key after the read began. The caller takes token(h) before
// reading and hands it to put; invalidate(h) first bumps the epoch of h's
// stripe, then deletes whatever is at h under h's shard lock. put compares
// the epochs with its token under the same lock and stores in the same
// critical section. Go's atomics are sequentially consistent, so either
// put's comparison sees the bump and it stores nothing, or it ran before the
// bump, within a critical section that invalidate's delete, coming after the
// bump, must wait for: the delete then removes what put stored.
// invalidateAll does the same with the global epoch, shard by shard. The
// only cost of striping the epochs is that an invalidation also turns away
// the in-flight puts of the other keys of its stripe; they are read again
// later.
//
// # Eviction
//
// size counts the entries and the room reserved for ones being stored; a
// put of a new key reserves room first and, when MaxEntries are taken,
// samples cacheSample live entries and evicts the one its policy ranks
// lowest. Each slot carries its entry's metadata word (last access,
// frequency), which hits update in place.
type linkCache struct {
	// Read by every hit, written only by newLinkCache.
	t        *table
	clk      *clock.Coarse
	counters []cacheStripe // hits and misses, per processor
	base     int64         // clk.Millis() at construction: the zero of access times
	decay    uint32        // milliseconds of idleness that cost one frequency level
	policy   Eviction
	// deg says whether an expired entry may still be served (its service
	// is in an outage); read only once an entry has expired. nil in a bare
	// cache. Set by NewClient.
	deg *degraded

	// Read on the miss path only.
	ttl       int64 // milliseconds
	max       int64
	epochs    []atomic.Uint32 // invalidation epochs per stripe of key hashes
	epochMask uint64
	// global is the invalidation epoch of the whole cache: every token
	// reads it, and it changes only when the whole cache is dropped, so it
	// sits with the fields read on the miss path, away from size, which
	// every put of a new key writes (a batch puts from several goroutines).
	global atomic.Uint32

	// Written on the miss path, kept off the lines the hits read.
	_             [cacheLine]byte
	size          atomic.Int64 // entries stored, and room reserved for puts
	evictions     atomic.Uint64
	expired       atomic.Uint64
	invalidations atomic.Uint64
	recency       atomic.Uint64 // weight's float64 bits, for stats

	// ghosted is set once a ghost ring remembers a hash: until then a new
	// entry has no history to look up, and its put does not take mu.
	ghosted atomic.Bool

	// mu guards the adaptive policy's state. A hit never takes it.
	mu     sync.Mutex
	weight float64 // adaptive recency weight in [0, 1]
	// ghostRec holds hashes evicted as the least recent although the
	// frequency ranking would have kept them; ghostFreq the reverse.
	ghostRec, ghostFreq cacheGhosts
}

// newLinkCache returns an empty cache. cfg is already defaulted: MaxEntries
// > 0 and TTL > 0. clk must be running; the cache reads it on every hit.
func newLinkCache(cfg CacheConfig, clk *clock.Coarse) *linkCache {
	maxEntries := min(max(cfg.MaxEntries, 1), math.MaxInt32)
	ttl := max(cfg.TTL.Milliseconds(), 1)
	nEpochs := 256
	for nEpochs < maxEntries/16 && nEpochs < 1<<16 {
		nEpochs <<= 1
	}
	c := &linkCache{
		t:         newTable(maxEntries),
		clk:       clk,
		counters:  make([]cacheStripe, xruntime.Stripes()),
		policy:    cfg.Eviction,
		base:      clk.Millis(),
		ttl:       ttl,
		decay:     uint32(min(max(ttl/cacheLFUDecays, 1), math.MaxUint32)),
		max:       int64(maxEntries),
		epochs:    make([]atomic.Uint32, nEpochs),
		epochMask: uint64(nEpochs - 1),
		weight:    0.5,
	}
	c.recency.Store(math.Float64bits(c.weight))
	if c.policy == EvictAdaptive {
		n := min(maxEntries, cacheGhostMax)
		c.ghostRec.init(n)
		c.ghostFreq.init(n)
	}
	return c
}

// cacheStripe counts the hits and misses of the lookups that ran on one
// processor. Padding keeps two processors from ever writing one cache line.
type cacheStripe struct {
	hits, misses atomic.Uint64
	_            [cacheLine - 16]byte
}

// stripe returns the counters of the caller's processor.
func (c *linkCache) stripe() *cacheStripe {
	return &c.counters[xruntime.ProcID()&(len(c.counters)-1)]
}

// get returns the cached pod of uid and its service, when present and not
// expired. It takes no lock, allocates nothing, calls no time function (it
// reads the coarse clock) and records the access for eviction.
func (c *linkCache) get(h uint64, ns, name, uid string) (pod int, svc *service, ok bool) {
	pod, svc, ok = c.lookup(h, ns, name, uid)
	if ok {
		c.stripe().hits.Add(1)
	} else {
		c.stripe().misses.Add(1)
	}
	return pod, svc, ok
}

// lookup is get without counting the hit or the miss: a batch counts its
// lookups once (count), sparing a locked instruction per key.
func (c *linkCache) lookup(h uint64, ns, name, uid string) (pod int, svc *service, ok bool) {
	e, r, found := c.t.load(h)
	if !found || !e.is(ns, name, uid) {
		return -1, nil, false
	}
	now := c.clk.Millis()
	if now >= e.expiry() && !c.deg.servesStale(e.svc, e.expiry(), now) {
		c.dropExpired(h, now)
		return -1, nil, false
	}
	c.touch(&r.slot().meta, e.meta, now)
	return int(e.pod), e.svc, true
}

// count adds hits and misses of lookups to the counters.
func (c *linkCache) count(hits, misses int) {
	st := c.stripe()
	if hits > 0 {
		st.hits.Add(uint64(hits))
	}
	if misses > 0 {
		st.misses.Add(uint64(misses))
	}
}

// peek is get without counting a hit or a miss nor recording the access: a
// second look by a call that already counted its miss.
func (c *linkCache) peek(h uint64, ns, name, uid string) (pod int, svc *service, ok bool) {
	e, _, found := c.t.load(h)
	if !found || !e.is(ns, name, uid) {
		return -1, nil, false
	}
	if now := c.clk.Millis(); now >= e.expiry() && !c.deg.servesStale(e.svc, e.expiry(), now) {
		return -1, nil, false
	}
	return int(e.pod), e.svc, true
}

// touch records an access at now to the metadata word w, whose value the
// caller loaded as old. The word is written only when it changes: the access
// time at most once per clock tick, the frequency counter with a probability
// that falls as it grows. The write is a compare-and-swap, so that a hit
// never writes over the word of an entry a writer stored in its slot after
// the hit read it; two hits racing may lose one of their updates, which only
// ranks an entry a little lower for eviction.
func (c *linkCache) touch(w *atomic.Uint64, old uint64, now int64) {
	if c.policy == EvictTTL {
		return // nothing a hit does changes the ranking
	}
	at, oldAt := uint32(now-c.base), uint32(old)
	// A hit that read the clock before another one already stored may carry
	// an older time: keep the newer.
	later := int32(at-oldAt) > 0
	if c.policy == EvictLRU {
		if later {
			w.CompareAndSwap(old, old&^0xFFFFFFFF|uint64(at))
		}
		return
	}
	freq := uint8(old >> 32)
	next := freq
	if later {
		next = c.decayed(freq, at-oldAt)
	} else {
		at = oldAt
	}
	if xruntime.Rand32() < cacheLFUOdds[next] {
		next++
	}
	if later || next != freq {
		w.CompareAndSwap(old, packMeta(at, next))
	}
}

// decayed returns freq after idle milliseconds without an access.
func (c *linkCache) decayed(freq uint8, idle uint32) uint8 {
	if n := idle / c.decay; n < uint32(freq) {
		return freq - uint8(n)
	}
	return 0
}

// dropExpired deletes the entry at h if it is expired at now. The check runs
// again under the shard lock, so a fresh entry a put stored meanwhile stays.
func (c *linkCache) dropExpired(h uint64, now int64) {
	if c.deleteIf(h, func(e cacheEntry) bool { return now >= e.expiry() }) {
		c.expired.Add(1)
	}
}

// deleteIf deletes the entry at h if cond holds for it, under h's shard
// lock, and reports whether it did.
func (c *linkCache) deleteIf(h uint64, cond func(cacheEntry) bool) bool {
	sh := c.t.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r, ok := sh.find(h)
	if !ok {
		return false
	}
	if e, _, _, ok := r.slot().read(); !ok || !cond(e) || !sh.remove(r) {
		return false
	}
	c.size.Add(-1)
	return true
}

// token returns the invalidation epoch of h, to take before reading a link
// from Redis and hand to put, which drops the link if h was invalidated since.
func (c *linkCache) token(h uint64) uint64 {
	return uint64(c.global.Load())<<32 | uint64(c.epochs[h&c.epochMask].Load())
}

// prefetch reads, for each key hash of hs, the slot where a lookup or a put
// of it starts and the epoch its token reads, so that they are in the
// processor's cache when a batch looks these keys up or puts them next. The
// table is larger than the processor's caches and its slots are read at
// random, so each of those is a cache miss, paid in full one after another
// when the lookups and puts come one at a time (a put waits behind its
// locked instructions), where these plain loads overlap. A batch prefetches a
// chunk of a few hundred keys at a time, which its cache holds.
func (c *linkCache) prefetch(hs []uint64) {
	for _, h := range hs {
		a := c.t.shard(h).arr.Load()
		a.slots[a.home(h)].ver.Load()
		c.epochs[h&c.epochMask].Load()
	}
}

// put caches pod for (svc, uid) unless invalidate(h) or invalidateAll ran
// after token was taken; it reports whether it stored. When the cache is full
// it evicts one entry per the policy. A pod outside the int32 range is not
// cached.
func (c *linkCache) put(h uint64, svc *service, uid string, pod int, token uint64) bool {
	if c.token(h) != token {
		return false // stale already: spare the eviction work
	}
	return c.store(h, svc, uid, pod, token, true)
}

// set caches pod for (svc, uid) unconditionally (the SetCache API).
func (c *linkCache) set(h uint64, svc *service, uid string, pod int) {
	c.store(h, svc, uid, pod, 0, false)
}

// store is put (checked) and set.
func (c *linkCache) store(h uint64, svc *service, uid string, pod int, token uint64, checked bool) bool {
	if pod < math.MinInt32 || pod > math.MaxInt32 {
		return false
	}
	now := c.clk.Millis()
	e := makeCacheEntry(svc, uid, int32(pod), now+c.ttl)
	if !c.ghosted.Load() && c.room() {
		// Room without evicting and no eviction history: one pass under
		// the shard lock, which gives the room back if it replaces the
		// entry at h instead. A storm of new users puts this way.
		stored, _ := c.storeAt(h, &e, token, checked, now, cacheLFUInit, true)
		return stored
	}
	// Replacing the entry at h needs no room (nor an eviction).
	stored, needRoom := c.storeAt(h, &e, token, checked, now, 0, false)
	if !needRoom {
		return stored
	}
	if !c.reserve(now) {
		return false
	}
	freq := uint8(cacheLFUInit)
	if c.policy == EvictAdaptive {
		c.mu.Lock()
		freq = max(freq, c.adapt(h))
		c.mu.Unlock()
	}
	stored, _ = c.storeAt(h, &e, token, checked, now, freq, true)
	return stored
}

// storeAt stores e at h under h's shard lock, unless the token is stale:
// over the entry at h if there is one (which keeps its history when it is
// the same key), else as a new entry with frequency freq if the caller
// reserved room for it; needRoom asks for that reservation. The reservation
// is given back when it is not used.
func (c *linkCache) storeAt(h uint64, e *cacheEntry, token uint64, checked bool, now int64, freq uint8, reserved bool) (stored, needRoom bool) {
	sh := c.t.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if checked && c.token(h) != token {
		if reserved {
			c.size.Add(-1)
		}
		return false, false
	}
	if r, ok := sh.find(h); ok {
		s := r.slot()
		old, _, _, _ := s.read()
		meta := packMeta(uint32(now-c.base), cacheLFUInit)
		if old.sameKey(e) {
			c.touch(&s.meta, s.meta.Load(), now)
			meta = s.meta.Load()
		}
		s.write(h, e, meta)
		if reserved {
			c.size.Add(-1) // another put stored h meanwhile
		}
		return true, false
	}
	if !reserved {
		return false, true
	}
	sh.insert(h, e, packMeta(uint32(now-c.base), freq))
	return true, false
}

// reserve takes room for one new entry, evicting one when MaxEntries are
// taken. It fails when no room could be made in cacheEvictTries rounds.
func (c *linkCache) reserve(now int64) bool {
	for range cacheEvictTries {
		if c.room() {
			return true
		}
		c.evict(now)
	}
	return false
}

// room takes room for one new entry if there is some without evicting.
func (c *linkCache) room() bool {
	for n := c.size.Load(); n < c.max; n = c.size.Load() {
		if c.size.CompareAndSwap(n, n+1) {
			return true
		}
	}
	return false
}

// cacheCandidate is a sampled entry as the eviction policies compare it.
type cacheCandidate struct {
	h    uint64
	exp  int64
	age  uint32 // milliseconds since the last access
	freq uint8  // decayed frequency counter
	// Where it was sampled: its shard, slot and version, checked again
	// under the shard lock before it is evicted.
	sh  *tshard
	ref slotRef
	ver uint64
}

// evict drops one entry chosen by the policy among cacheSample sampled live
// entries, and reports whether it did.
func (c *linkCache) evict(now int64) bool {
	now32 := uint32(now - c.base)
	var cands [cacheSample]cacheCandidate
	n := 0
	for range cacheSample {
		if cd, ok := c.sample(now32); ok {
			cands[n] = cd
			n++
		}
	}
	if n == 0 {
		return false
	}
	var v int
	var ghosts *cacheGhosts
	if c.policy == EvictAdaptive {
		c.mu.Lock() // choose reads the weight
		v, ghosts = c.choose(cands[:n], now)
		c.mu.Unlock()
	} else {
		v, ghosts = c.choose(cands[:n], now)
	}
	victim := &cands[v]
	sh := victim.sh
	sh.mu.Lock()
	// remove refuses a slot of an array a rebuild replaced; the version
	// catches an entry deleted or replaced in the current array. (The
	// slots of a replaced array stay readable and never change again.)
	ok := victim.ref.slot().ver.Load() == victim.ver && sh.remove(victim.ref)
	sh.mu.Unlock()
	if !ok {
		return false // deleted or replaced meanwhile
	}
	c.size.Add(-1)
	switch {
	case now >= victim.exp:
		c.expired.Add(1)
	default:
		c.evictions.Add(1)
		if ghosts != nil {
			c.mu.Lock()
			ghosts.add(victim.h, victim.freq)
			c.ghosted.Store(true)
			c.mu.Unlock()
		}
	}
	return true
}

// sample returns the live entry of a random slot of a random shard: a few
// random slots are tried, so that every entry is as likely to be sampled
// (a scan from a random slot would favour the entries after empty runs).
func (c *linkCache) sample(now32 uint32) (cacheCandidate, bool) {
	for range cacheSampleTries {
		r := xruntime.Rand64()
		sh := &c.t.shards[uint64(uint32(r))*uint64(len(c.t.shards))>>32]
		a := sh.arr.Load()
		ref := a.at(int((r >> 32) * uint64(len(a.slots)) >> 32))
		if e, h, v, ok := ref.slot().read(); ok {
			age := uint32(max(int32(now32-uint32(e.meta)), 0))
			return cacheCandidate{
				h: h, exp: e.expiry(), age: age, freq: c.decayed(uint8(e.meta>>32), age),
				sh: sh, ref: ref, ver: v,
			}, true
		}
	}
	return cacheCandidate{}, false
}

// choose returns the index of the candidate to evict and, for the adaptive
// policy, the ghost ring that should remember it: ghostRec when it is among
// the least recent but not among the least frequent, ghostFreq the reverse,
// nil when both rankings or neither would evict it (its return would teach
// nothing).
func (c *linkCache) choose(cands []cacheCandidate, now int64) (int, *cacheGhosts) {
	for i := range cands {
		if now >= cands[i].exp {
			return i, nil // dead already: free room
		}
	}
	// Least recent: oldest access. Least frequent: lowest counter, then oldest.
	lru, lfu := 0, 0
	for i := range cands {
		if cands[i].age > cands[lru].age {
			lru = i
		}
		if f, g := cands[i].freq, cands[lfu].freq; f < g || f == g && cands[i].age > cands[lfu].age {
			lfu = i
		}
	}
	switch c.policy {
	case EvictLRU:
		return lru, nil
	case EvictLFU:
		return lfu, nil
	case EvictTTL:
		v := 0
		for i := range cands {
			if cands[i].exp < cands[v].exp {
				v = i
			}
		}
		return v, nil
	}
	// Adaptive: rank the candidates by each measure (how many others are
	// older, how many are less frequent), so that the two scales compare,
	// and keep the ones with the highest blend.
	v, best := 0, math.Inf(1)
	for i := range cands {
		var older, rarer int
		for j := range cands {
			if cands[j].age > cands[i].age {
				older++
			}
			if cands[j].freq < cands[i].freq {
				rarer++
			}
		}
		keep := c.weight*float64(older) + (1-c.weight)*float64(rarer)
		if keep < best || keep == best && cands[i].age > cands[v].age {
			v, best = i, keep
		}
	}
	// Ties are common (one clock tick, one counter level), so compare values.
	switch byAge, byFreq := cands[v].age == cands[lru].age, cands[v].freq == cands[lfu].freq; {
	case byAge && !byFreq:
		return v, &c.ghostRec
	case byFreq && !byAge:
		return v, &c.ghostFreq
	}
	return v, nil
}

// adapt moves the adaptive policy's recency weight when h, about to be
// cached, was evicted lately by one ranking against the other's advice, as
// ARC moves its target; the step grows with the other ring's relative size,
// as ARC's does. It returns the frequency h had when evicted (0 if it was
// not remembered): a key that comes back resumes its count instead of
// looking like a one-off. c.mu is held.
func (c *linkCache) adapt(h uint64) uint8 {
	if freq, ok := c.ghostRec.take(h); ok {
		// Evicted as the least recent, yet wanted again: frequency would
		// have kept it.
		c.weight = max(0, c.weight-cacheAdaptStep*ghostRatio(c.ghostFreq.len(), c.ghostRec.len()))
		c.recency.Store(math.Float64bits(c.weight))
		return freq
	}
	if freq, ok := c.ghostFreq.take(h); ok {
		c.weight = min(1, c.weight+cacheAdaptStep*ghostRatio(c.ghostRec.len(), c.ghostFreq.len()))
		c.recency.Store(math.Float64bits(c.weight))
		return freq
	}
	return 0
}

// ghostRatio is ARC's step multiplier: other/this, within [1, 4].
func ghostRatio(other, this int) float64 {
	return min(max(float64(other)/float64(max(this, 1)), 1), 4)
}

// cacheGhosts remembers the last few hashes evicted for one reason, with
// their frequency: a ring for the order, a map to find them.
type cacheGhosts struct {
	ring []uint64
	next int
	n    int // filled positions of ring
	at   map[uint64]cacheGhost
}

// cacheGhost is where a remembered hash sits in the ring and its frequency.
type cacheGhost struct {
	pos  int32
	freq uint8
}

func (g *cacheGhosts) init(n int) {
	g.ring = make([]uint64, n)
	g.at = make(map[uint64]cacheGhost, n)
}

// add remembers h, forgetting the oldest hash when the ring is full.
func (g *cacheGhosts) add(h uint64, freq uint8) {
	if g.n == len(g.ring) {
		// Unless h was remembered again since, its position is still here.
		if old := g.ring[g.next]; g.at[old].pos == int32(g.next) {
			delete(g.at, old)
		}
	} else {
		g.n++
	}
	g.ring[g.next] = h
	g.at[h] = cacheGhost{pos: int32(g.next), freq: freq}
	g.next = (g.next + 1) % len(g.ring)
}

// take forgets h and returns its frequency, if it was remembered.
func (g *cacheGhosts) take(h uint64) (uint8, bool) {
	gh, ok := g.at[h]
	if ok {
		delete(g.at, h)
	}
	return gh.freq, ok
}

func (g *cacheGhosts) len() int { return len(g.at) }

// remove drops the entry of (ns, name, uid) and returns the pod it held (the
// CacheExpired API); an expired entry is dropped too but reported absent.
// It does not affect tokens.
func (c *linkCache) remove(h uint64, ns, name, uid string) (pod int, ok bool) {
	var e cacheEntry
	found := c.deleteIf(h, func(x cacheEntry) bool {
		if x.is(ns, name, uid) {
			e = x
			return true
		}
		return false
	})
	if !found {
		return -1, false
	}
	if c.clk.Millis() >= e.expiry() {
		c.expired.Add(1)
		return -1, false
	}
	return int(e.pod), true
}

// invalidate handles Redis saying that the key hashed to h changed: it drops
// whatever entry is at h and makes earlier tokens for h stale. The order
// matters; see the linkCache comment.
func (c *linkCache) invalidate(h uint64) {
	c.epochs[h&c.epochMask].Add(1)
	if c.deleteIf(h, func(cacheEntry) bool { return true }) {
		c.invalidations.Add(1)
	}
}

// invalidateAll drops every entry and makes every earlier token stale. (A
// lost tracking connection or a flushed Redis no longer drops the cache: the
// client re-validates it instead, see Client.trackingLost.)
func (c *linkCache) invalidateAll() {
	c.global.Add(1)
	for i := range c.t.shards {
		sh := &c.t.shards[i]
		sh.mu.Lock()
		n := sh.clear()
		sh.mu.Unlock()
		c.size.Add(-int64(n))
		c.invalidations.Add(uint64(n))
	}
}

// all yields every live entry with its key hash, shard by shard; entries
// stored or deleted meanwhile may or may not be seen.
func (c *linkCache) all() iter.Seq2[uint64, cacheEntry] {
	return func(yield func(uint64, cacheEntry) bool) {
		for i := range c.t.shards {
			a := c.t.shards[i].arr.Load()
			for j := range a.slots {
				if e, h, _, ok := a.slots[j].read(); ok && !yield(h, e) {
					return
				}
			}
		}
	}
}

// stats returns the cache's counters.
func (c *linkCache) stats() CacheStats {
	s := CacheStats{
		Evictions:     c.evictions.Load(),
		Expired:       c.expired.Load(),
		Invalidations: c.invalidations.Load(),
		Size:          c.len(),
		MaxEntries:    int(c.max),
		Eviction:      c.policy,
	}
	for i := range c.counters {
		s.Hits += c.counters[i].hits.Load()
		s.Misses += c.counters[i].misses.Load()
	}
	switch c.policy {
	case EvictLRU:
		s.RecencyWeight = 1
	case EvictAdaptive:
		s.RecencyWeight = math.Float64frombits(c.recency.Load())
	}
	return s
}

// len returns the number of cached entries, expired ones not yet dropped
// included.
func (c *linkCache) len() int { return int(c.size.Load()) }
