package engine

import (
	"encoding/binary"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/puzpuzpuz/xsync/v4"

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
	// costs a second allocation and one more cache line per hit.
	cacheInlineUID = 24
	// cacheSample is how many entries an eviction compares.
	cacheSample = 5
	// cacheEvictTries bounds the sampling rounds of one eviction: a sampled
	// slot may belong to a put that has not stored yet, or to an entry being
	// deleted, and then it is no candidate.
	cacheEvictTries = 8
	// Eviction metadata lives in chunks of cacheChunk slots, allocated as the
	// slots are first used, so a small cache does not pay for MaxEntries.
	cacheChunkShift = 12
	cacheChunk      = 1 << cacheChunkShift
	cacheChunkMask  = cacheChunk - 1
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
	// cacheNoSlot ends the free list.
	cacheNoSlot = math.MaxUint32
	// cacheLine is the size the per-processor counters are padded to.
	cacheLine = 64
)

// cacheEntry is the value the map holds for one key hash: everything a hit
// reads. With the map's 8-byte key it fills one 64-byte allocation, which the
// allocator aligns to a cache line, so a hit reads the map bucket, this line
// and the slot's metadata word. A value rather than a pointer to a struct
// saves a dependent miss on every hit.
type cacheEntry struct {
	// svc is the entry's service; a lookup compares its names, so that a
	// hash collision is a miss and never another user's pod.
	svc *service
	// long is a private copy of a uid longer than cacheInlineUID; nil when
	// the uid is inline.
	long *byte
	// expLen packs the expiry, in coarse Unix milliseconds, above 8 bits of
	// inline uid length.
	expLen uint64
	pod    int32
	// slot indexes the entry's eviction metadata.
	slot uint32
	// uid holds an inline uid, or the length of a long one in its first 8
	// bytes.
	uid [cacheInlineUID]byte
}

// The entry must stay 56 bytes: 64 with the map's key.
var (
	_ [56 - unsafe.Sizeof(cacheEntry{})]byte
	_ [unsafe.Sizeof(cacheEntry{}) - 56]byte
)

func makeCacheEntry(svc *service, uid string, pod int32, exp int64) cacheEntry {
	e := cacheEntry{svc: svc, pod: pod, expLen: uint64(exp) << 8}
	if len(uid) <= cacheInlineUID {
		copy(e.uid[:], uid)
		e.expLen |= uint64(len(uid))
	} else {
		// A copy, so that the entry does not pin a caller's larger buffer.
		e.long = unsafe.StringData(strings.Clone(uid))
		binary.LittleEndian.PutUint64(e.uid[:8], uint64(len(uid)))
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
	return binary.LittleEndian.Uint64(e.uid[:8]) == uint64(len(uid)) &&
		unsafe.String(e.long, len(uid)) == uid
}

// sameKey reports whether e and o are entries of the same key. Unused
// bytes of uid are zero, so comparing the arrays compares inline uids, or the
// lengths of long ones.
func (e *cacheEntry) sameKey(o *cacheEntry) bool {
	if e.svc.ns != o.svc.ns || e.svc.name != o.svc.name || e.uid != o.uid ||
		uint8(e.expLen) != uint8(o.expLen) || (e.long == nil) != (o.long == nil) {
		return false
	}
	if e.long == nil {
		return true
	}
	n := int(binary.LittleEndian.Uint64(e.uid[:8]))
	return unsafe.String(e.long, n) == unsafe.String(o.long, n)
}

// cacheSlots holds the key hashes of cacheChunk consecutive slots: the key
// each slot was last handed out for, guarded by linkCache.mu.
type cacheSlots struct {
	keys [cacheChunk]uint64
}

// A metadata word: the last access (milliseconds since base, wrapping) in
// bits 0-31, the frequency counter in bits 32-39, and in bits 40-63 a tag of
// the key hash that owns the word. Words are indexed by hash, so two keys may
// land on one; the tag says whose history it holds. A key that does not own
// its word is not ranked: an eviction takes it for a new entry half a TTL old.
func packMeta(at uint32, freq uint8, tag uint64) uint64 {
	return tag<<40 | uint64(freq)<<32 | uint64(at)
}

// metaTag is the tag of key hash h in a metadata word.
func metaTag(h uint64) uint64 { return h >> 40 }

// owns reports whether metadata word m belongs to key hash h.
func owns(m, h uint64) bool { return m>>40 == metaTag(h) }

// cacheLFUOdds[c] is the threshold under which a uniform uint32 increments a
// frequency counter at c: a table, so that a hit does not divide.
var cacheLFUOdds = func() (t [256]uint32) {
	for c := range t {
		t[c] = uint32(math.MaxUint32 / uint64(max(c-cacheLFUInit, 0)*cacheLFULog+1))
	}
	t[255] = 0 // saturated
	return t
}()

// cacheStripe counts the hits and misses of the lookups that ran on one
// processor. Padding keeps two processors from ever writing one cache line.
type cacheStripe struct {
	hits, misses atomic.Uint64
	_            [cacheLine - 16]byte
}

// linkCache maps (namespace, service, uid) to a pod for a Client. Keys are
// keyHash(serviceHash(ns, name), uid); entries keep the full key, so a hash
// collision costs a miss, never a wrong pod. It is safe for concurrent use:
// get takes no lock and allocates nothing; the other methods run on the miss
// path and may lock.
//
// # Coherence
//
// A link read from Redis may be cached only if Redis did not announce a
// change of its key after the read began. The caller takes token(h) before
// reading and hands it to put; invalidate(h) first bumps the epoch of h's
// stripe, then deletes whatever is at h inside Compute, which always takes
// h's bucket lock (Delete could return early without it, having looked before
// a concurrent put stored). put compares the epochs with its token inside
// Compute for h and stores in the same critical section. Go's atomics are
// sequentially consistent, so either put's comparison sees the bump and it
// stores nothing, or it ran before the bump, within a critical section that
// invalidate's delete, coming after the bump, must wait for: the delete then
// removes what put stored. invalidateAll does the same with the global epoch
// and DeleteMatching, which visits every bucket under its lock. The only
// cost of striping the epochs is that an invalidation also turns away the
// in-flight puts of the other keys of its stripe; they are read again later.
//
// # Eviction
//
// Each entry owns a slot in [0, MaxEntries): since slots are never shared,
// they bound the number of entries. A put takes a free slot or, when none is
// left, samples cacheSample slots and evicts the entry its policy ranks
// lowest. The eviction metadata (last access, frequency) is not kept by slot
// but in a table of words twice the size of the cache, indexed by key hash,
// each key owning one of two words (see claimMeta): a hit can then load its
// words before the map lookup, and the misses overlap instead of following
// each other (a third of the hit latency at 1M entries). A key that finds
// both words held is ranked as a middling entry until one is given back.
type linkCache struct {
	// Read by every hit, written only by newLinkCache.
	m      *xsync.Map[uint64, cacheEntry]
	clk    *clock.Coarse
	chunks []atomic.Pointer[cacheSlots] // allocated by alloc under mu, in order
	// meta holds the eviction metadata words (see packMeta), indexed by key
	// hash, two candidate words per key (see claimMeta and the type comment).
	meta     []atomic.Uint64
	metaMask uint64
	counters []cacheStripe // hits and misses, per processor
	base     int64         // clk.Millis() at construction: the zero of access times
	decay    uint32        // milliseconds of idleness that cost one frequency level
	policy   Eviction

	// Read on the miss path only.
	ttl       int64 // milliseconds
	max       uint32
	epochs    []atomic.Uint32 // invalidation epochs per stripe of key hashes
	epochMask uint64

	// Written on the miss path, kept off the lines the hits read.
	_             [cacheLine]byte
	global        atomic.Uint32 // invalidation epoch of the whole cache
	size          atomic.Int64  // entries in m, counted where they are stored and deleted
	evictions     atomic.Uint64
	expired       atomic.Uint64
	invalidations atomic.Uint64
	recency       atomic.Uint64 // weight's float64 bits, for stats

	// mu guards the slot allocator (next, the free list, the chunks' keys
	// and the chunks' allocation) and the adaptive policy's state. Only a put
	// that needs a new slot and a deleter returning one take it; a hit never
	// does.
	mu   sync.Mutex
	next uint32 // slots [next, max) were never handed out
	// free is the first slot handed back, or cacheNoSlot; the keys word of a
	// free slot links to the next one, so releasing allocates nothing.
	free   uint32
	nfree  int
	weight float64 // adaptive recency weight in [0, 1]
	// ghostRec holds hashes evicted as the least recent although the
	// frequency ranking would have kept them; ghostFreq the reverse.
	ghostRec, ghostFreq cacheGhosts
}

// newLinkCache returns an empty cache. cfg is already defaulted: MaxEntries
// > 0 and TTL > 0. clk must be running; the cache reads it on every hit.
func newLinkCache(cfg CacheConfig, clk *clock.Coarse) *linkCache {
	maxEntries := uint32(min(max(cfg.MaxEntries, 1), math.MaxInt32))
	ttl := max(cfg.TTL.Milliseconds(), 1)
	nEpochs := 256
	for nEpochs < int(maxEntries/16) && nEpochs < 1<<16 {
		nEpochs <<= 1
	}
	// Twice as many words as entries, and two choices per key: a key seldom
	// finds both of its words held by others.
	metaSize := 2
	for metaSize < 2*int(maxEntries) {
		metaSize <<= 1
	}
	c := &linkCache{
		meta:      make([]atomic.Uint64, metaSize),
		metaMask:  uint64(metaSize - 1),
		m:         xsync.NewMap[uint64, cacheEntry](xsync.WithPresize(int(min(maxEntries, 1<<12)))),
		clk:       clk,
		chunks:    make([]atomic.Pointer[cacheSlots], (maxEntries+cacheChunkMask)>>cacheChunkShift),
		counters:  make([]cacheStripe, xruntime.Stripes()),
		policy:    cfg.Eviction,
		base:      clk.Millis(),
		ttl:       ttl,
		decay:     uint32(min(max(ttl/cacheLFUDecays, 1), math.MaxUint32)),
		max:       maxEntries,
		free:      cacheNoSlot,
		epochs:    make([]atomic.Uint32, nEpochs),
		epochMask: uint64(nEpochs - 1),
		weight:    0.5,
	}
	c.recency.Store(math.Float64bits(c.weight))
	if c.policy == EvictAdaptive {
		n := int(min(maxEntries, cacheGhostMax))
		c.ghostRec.init(n)
		c.ghostFreq.init(n)
	}
	return c
}

// get returns the cached pod of uid and its service, when present and not
// expired. It takes no lock, allocates nothing, calls no time function (it
// reads the coarse clock) and records the access for eviction.
func (c *linkCache) get(h uint64, ns, name, uid string) (pod int, svc *service, ok bool) {
	// Load the key's first metadata word before the map lookup: its miss
	// overlaps the map's instead of following it. Most keys own their first
	// word (claimMeta prefers it); the others read the second one after.
	w1 := c.metaAt(h)
	m1 := w1.Load()
	e, found := c.m.Load(h)
	if !found || !e.is(ns, name, uid) {
		c.stripe().misses.Add(1)
		return -1, nil, false
	}
	now := c.clk.Millis()
	if now >= e.expiry() && !e.svc.view.servesStale(e.expiry(), now) {
		c.dropExpired(h, now)
		c.stripe().misses.Add(1)
		return -1, nil, false
	}
	if owns(m1, h) {
		c.touch(w1, m1, now)
	} else {
		c.touchSecond(h, w1, m1, now)
	}
	c.stripe().hits.Add(1)
	return int(e.pod), e.svc, true
}

// stripe returns the counters of the caller's processor.
func (c *linkCache) stripe() *cacheStripe {
	return &c.counters[xruntime.ProcID()&(len(c.counters)-1)]
}

// metaAt and metaAt2 return the two metadata words key hash h may own: two
// choices make it rare that a key finds both taken by others.
func (c *linkCache) metaAt(h uint64) *atomic.Uint64  { return &c.meta[h&c.metaMask] }
func (c *linkCache) metaAt2(h uint64) *atomic.Uint64 { return &c.meta[(h>>24)&c.metaMask] }

// touchSecond records an access of a key that does not own its first word
// w1 (holding m1): it owns the second, or neither. An unranked key takes a
// word another key gave back (rare: one CAS).
func (c *linkCache) touchSecond(h uint64, w1 *atomic.Uint64, m1 uint64, now int64) {
	w2 := c.metaAt2(h)
	m2 := w2.Load()
	switch {
	case owns(m2, h):
		c.touch(w2, m2, now)
	case m1 == 0:
		w1.CompareAndSwap(0, packMeta(uint32(now-c.base), cacheLFUInit, metaTag(h)))
	case m2 == 0:
		w2.CompareAndSwap(0, packMeta(uint32(now-c.base), cacheLFUInit, metaTag(h)))
	}
}

// ownedMeta returns the word key hash h owns and its value, or nil.
func (c *linkCache) ownedMeta(h uint64) (*atomic.Uint64, uint64) {
	if w := c.metaAt(h); owns(w.Load(), h) {
		return w, w.Load()
	}
	if w := c.metaAt2(h); owns(w.Load(), h) {
		return w, w.Load()
	}
	return nil, 0
}

// touch records an access at now to the metadata word w, whose value the
// caller loaded as old. The word is written only when it changes: the access
// time at most once per clock tick, the frequency counter with a probability
// that falls as it grows. Two hits racing may lose one of their updates; the
// metadata only ranks entries for eviction.
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
			w.Store(old&^0xFFFFFFFF | uint64(at))
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
		w.Store(packMeta(at, next, old>>40))
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
// again under the bucket lock, so a fresh entry a put stored meanwhile stays.
func (c *linkCache) dropExpired(h uint64, now int64) {
	slot, ok := c.deleteIf(h, func(e cacheEntry) bool { return now >= e.expiry() })
	if ok {
		c.expired.Add(1)
		c.release(slot)
	}
}

// deleteIf deletes the entry at h if cond holds for it, under h's bucket
// lock, and returns its slot, which the caller now owns.
func (c *linkCache) deleteIf(h uint64, cond func(cacheEntry) bool) (slot uint32, ok bool) {
	c.m.Compute(h, func(e cacheEntry, loaded bool) (cacheEntry, xsync.ComputeOp) {
		if !loaded || !cond(e) {
			return e, xsync.CancelOp
		}
		slot, ok = e.slot, true
		c.size.Add(-1)
		return e, xsync.DeleteOp
	})
	return slot, ok
}

// token returns the invalidation epoch of h, to take before reading a link
// from Redis and hand to put, which drops the link if h was invalidated since.
func (c *linkCache) token(h uint64) uint64 {
	return uint64(c.global.Load())<<32 | uint64(c.epochs[h&c.epochMask].Load())
}

// put caches pod for (svc, uid) unless invalidate(h) or invalidateAll ran
// after token was taken; it reports whether it stored. When the cache is full
// it evicts one entry per the policy. A pod outside the int32 range is not
// cached.
func (c *linkCache) put(h uint64, svc *service, uid string, pod int, token uint64) bool {
	if c.token(h) != token {
		return false // stale already: spare the slot work
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
	stored := false
	// take replaces old with e under h's bucket lock. The new entry inherits
	// the old one's slot, and its history when it is the same key.
	take := func(old *cacheEntry) (cacheEntry, xsync.ComputeOp) {
		if checked && c.token(h) != token {
			return *old, xsync.CancelOp
		}
		stored = true
		e.slot = old.slot
		if w, m := c.ownedMeta(h); old.sameKey(&e) && w != nil {
			c.touch(w, m, now)
		} else if !old.sameKey(&e) {
			c.claimMeta(h, now, cacheLFUInit)
		}
		return e, xsync.UpdateOp
	}
	// Replacing an entry needs no new slot (nor an eviction).
	if _, ok := c.m.Load(h); ok {
		present := false
		c.m.Compute(h, func(old cacheEntry, loaded bool) (cacheEntry, xsync.ComputeOp) {
			if !loaded {
				return old, xsync.CancelOp // evicted or invalidated meanwhile
			}
			present = true
			return take(&old)
		})
		if present {
			return stored
		}
	}
	slot, ok := c.alloc(h, now)
	if !ok {
		return false
	}
	used := false
	c.m.Compute(h, func(old cacheEntry, loaded bool) (cacheEntry, xsync.ComputeOp) {
		if loaded {
			return take(&old) // another put got there first
		}
		if checked && c.token(h) != token {
			return old, xsync.CancelOp
		}
		stored, used = true, true
		e.slot = slot
		c.size.Add(1)
		return e, xsync.UpdateOp
	})
	if !used {
		c.release(slot)
	}
	return stored
}

// alloc hands out a slot for a new entry at h, evicting one when all are
// taken, and resets its metadata as of now. It fails when every sampled slot
// was in transit.
func (c *linkCache) alloc(h uint64, now int64) (uint32, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	freq := uint8(cacheLFUInit)
	if c.policy == EvictAdaptive {
		freq = max(freq, c.adapt(h))
	}
	var slot uint32
	switch {
	case c.free != cacheNoSlot:
		slot = c.free
		c.free = uint32(c.chunks[slot>>cacheChunkShift].Load().keys[slot&cacheChunkMask])
		c.nfree--
	case c.next < c.max:
		slot = c.next
		c.next++
		if slot&cacheChunkMask == 0 {
			c.chunks[slot>>cacheChunkShift].Store(new(cacheSlots))
		}
	default:
		var ok bool
		if slot, ok = c.evict(c.clk.Millis()); !ok {
			return 0, false
		}
	}
	c.chunks[slot>>cacheChunkShift].Load().keys[slot&cacheChunkMask] = h
	// Before the entry is published, so no hit sees another key's history.
	c.claimMeta(h, now, freq)
	return slot, true
}

// claimMeta gives key hash h its metadata word as of now, unless another key
// owns the word and has earned more than a new entry's standing: a scan of
// one-off keys must not wipe the history of a hot key it collides with.
//
// Of its two words the key takes one it owns already, else a free one (never
// used, or untouched for a TTL, so its entry expired), else the one whose
// owner ranks lower (older, or less frequent), unless that owner has earned
// more than a new entry's frequency.
func (c *linkCache) claimMeta(h uint64, now int64, freq uint8) {
	at := uint32(now - c.base)
	w1, w2 := c.metaAt(h), c.metaAt2(h)
	m1, m2 := w1.Load(), w2.Load()
	age := func(m uint64) uint32 { return uint32(max(int32(at-uint32(m)), 0)) }
	free := func(m uint64) bool { return m == 0 || owns(m, h) || int64(age(m)) >= c.ttl }
	var w *atomic.Uint64
	switch {
	case owns(m1, h) || (free(m1) && !owns(m2, h)):
		w = w1
	case free(m2):
		w = w2
	default:
		victim, m := w1, m1
		if age(m2) > age(m1) {
			victim, m = w2, m2
		}
		if c.decayed(uint8(m>>32), age(m)) > cacheLFUInit {
			return // both owners are established: stay unranked
		}
		w = victim
	}
	w.Store(packMeta(at, freq, metaTag(h)))
}

// freeMeta hands back the metadata word key hash h owns, now that its entry
// is gone, so that the next key hashed there can own it.
func (c *linkCache) freeMeta(h uint64) {
	if w, m := c.ownedMeta(h); w != nil {
		w.CompareAndSwap(m, 0)
	}
}

// release hands slots back; the caller deleted the entries that held them.
func (c *linkCache) release(slots ...uint32) {
	c.mu.Lock()
	for _, s := range slots {
		c.freeMeta(c.chunks[s>>cacheChunkShift].Load().keys[s&cacheChunkMask])
		c.chunks[s>>cacheChunkShift].Load().keys[s&cacheChunkMask] = uint64(c.free)
		c.free = s
	}
	c.nfree += len(slots)
	c.mu.Unlock()
}

// cacheCandidate is a sampled entry as the eviction policies compare it.
type cacheCandidate struct {
	h    uint64
	exp  int64
	slot uint32
	age  uint32 // milliseconds since the last access
	freq uint8  // decayed frequency counter
}

// evict drops one entry chosen by the policy among cacheSample sampled slots
// and returns its slot. c.mu is held.
func (c *linkCache) evict(now int64) (uint32, bool) {
	now32 := uint32(now - c.base)
	for range cacheEvictTries {
		var cands [cacheSample]cacheCandidate
		n := 0
		for range cacheSample {
			s := uint32(uint64(xruntime.Rand32()) * uint64(c.max) >> 32)
			ch := c.chunks[s>>cacheChunkShift].Load()
			h := ch.keys[s&cacheChunkMask]
			e, ok := c.m.Load(h)
			if !ok || e.slot != s {
				continue // a put has not stored yet, or a delete not returned it
			}
			w, meta := c.ownedMeta(h)
			age := uint32(max(int32(now32-uint32(meta)), 0))
			freq := c.decayed(uint8(meta>>32), age)
			if w == nil {
				// Unranked: both words are held by other keys. Rank it as a
				// new entry half a TTL old: older than a working set, younger
				// than what expires.
				age, freq = uint32(c.ttl/2), cacheLFUInit
			}
			cands[n] = cacheCandidate{h: h, exp: e.expiry(), slot: s, age: age, freq: freq}
			n++
		}
		if n == 0 {
			continue
		}

		v, ghosts := c.choose(cands[:n], now)
		victim := cands[v]
		if _, ok := c.deleteIf(victim.h, func(e cacheEntry) bool { return e.slot == victim.slot }); !ok {
			continue // deleted or replaced meanwhile
		}
		switch {
		case now >= victim.exp:
			c.expired.Add(1)
		default:
			c.evictions.Add(1)
			if ghosts != nil {
				ghosts.add(victim.h, victim.freq)
			}
		}
		return victim.slot, true
	}
	return 0, false
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
	slot, found := c.deleteIf(h, func(x cacheEntry) bool {
		if x.is(ns, name, uid) {
			e = x
			return true
		}
		return false
	})
	if !found {
		return -1, false
	}
	c.release(slot)
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
	if slot, ok := c.deleteIf(h, func(cacheEntry) bool { return true }); ok {
		c.invalidations.Add(1)
		c.release(slot)
	}
}

// invalidateAll drops every entry and makes every earlier token stale. (A
// lost tracking connection or a flushed Redis no longer drops the cache: the
// client re-validates it instead, see Client.trackingLost.)
func (c *linkCache) invalidateAll() {
	c.global.Add(1)
	var slots []uint32
	c.m.DeleteMatching(func(_ uint64, e cacheEntry) (bool, bool) {
		// Called under the bucket lock, and the entry is deleted in the same
		// critical section: each slot comes back once.
		slots = append(slots, e.slot)
		c.size.Add(-1)
		return true, false
	})
	c.invalidations.Add(uint64(len(slots)))
	c.release(slots...)
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
