package engine

import (
	"encoding/binary"
	"math"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The link cache's table: open addressing over 64-byte slots, one cache line
// each, split into shards by the top bits of the key hash. A slot holds the
// whole entry and its eviction metadata, so a hit reads one line of the
// table, where a map of pointers to entries (xsync.Map, which the cache used
// before) reads the bucket, then the entry, and the metadata lived in a third
// line. Measured by BenchmarkComputeLinkedPodHit, the two builds run one
// after the other: uniform keys 489–555 ns a hit before, 311–332 ns with this
// table (a read-only Go map keyed by the joined key: 534–564 ns); Zipf(1.1)
// keys 196–216 ns before, 128–143 ns now.
//
// Readers take no lock. Each slot carries a version word: writers, who hold
// their shard's mutex, mark it busy, write the fields and publish the new
// version; a reader loads the version, the fields, and the version again, and
// trusts the fields only if both loads agree and show a live slot. Every field
// is an atomic word, so readers and writers never race in the Go memory model.
//
// Linear probing, with tombstones for deleted slots: a reader walks from the
// hash's home slot to the first never-used one. A shard's slot array is
// replaced whole when it fills up (doubled) or fills with tombstones (same
// size, rebuilt); the old array stays readable for readers that loaded it,
// and no writer touches it again. A read that started before the swap may
// still answer from the old array: its answer was current when it began.

const (
	// slotEmpty is a never-used slot (the end of a probe run), slotLive one
	// holding an entry, slotDead one whose entry was deleted (a tombstone),
	// slotBusy one a writer is changing.
	slotEmpty = 0
	slotLive  = 1
	slotDead  = 2
	slotBusy  = 3
	// slotSeq is one step of the version counter, above the state bits.
	slotSeq = 4
	// slotLongLen marks an entry whose uid is longer than cacheInlineUID:
	// its ref then points to a longUID instead of the service.
	slotLongLen = 0xFF
	// tableMinSlots is the size of a new shard's array.
	tableMinSlots = 16
	// tableMaxShards bounds the shards; tableShardEntries is how many
	// entries per shard MaxEntries asks for before another shard is added.
	tableMaxShards    = 256
	tableShardEntries = 512
	// tableReadTries bounds how often a reader re-reads a slot that a writer
	// is changing before it answers a miss.
	tableReadTries = 64
)

// tslot is one entry of the table, exactly one cache line.
type tslot struct {
	// ver holds the entry's pod in its top 32 bits, then a 30-bit version
	// counter and the state (slotEmpty..slotBusy) in its low 2 bits (see
	// slotVer). Only writers store it.
	ver atomic.Uint64
	// h is the entry's key hash.
	h atomic.Uint64
	// meta is the eviction metadata (see packMeta), written by hits too.
	meta atomic.Uint64
	// ref is the entry's *service, or its *longUID when the uid is long;
	// accessed atomically.
	ref unsafe.Pointer
	// expLen packs the expiry in coarse Unix milliseconds above 8 bits of
	// inline uid length (slotLongLen for a long uid).
	expLen atomic.Uint64
	// uid holds an inline uid, little-endian, zero-padded.
	uid [cacheInlineUID / 8]atomic.Uint64
}

// The slot must stay one 64-byte line.
var (
	_ [64 - unsafe.Sizeof(tslot{})]byte
	_ [unsafe.Sizeof(tslot{}) - 64]byte
)

// longUID is the key of an entry whose uid does not fit in a slot.
type longUID struct {
	svc *service
	uid string
}

func slotState(v uint64) uint64 { return v & 3 }

// slotVer returns the version word of a slot in state st holding pod, one
// step after v.
//
// The counter is the 30 bits between the state and the pod, and it wraps:
// uint32 arithmetic drops the carry out of bit 31. Every change of a slot
// (a write, a kill, a tombstone made never-used again) is one step; a write
// over a live slot stores busy and then live at the same step. A
// rebuild starts the slots of its new array at step one and never touches
// the old array again. A reader trusts the fields it read when its two
// loads of ver return the same word, so a wrap can fool it only if, between
// those two loads, the same slot of the same array changed exactly a
// non-zero multiple of 2^30 (1,073,741,824) times, any other count leaving
// a different counter, and its last change left it live with the pod of
// the first load, busy store over. Each change takes the shard's mutex and
// writes a cache line: at tens of nanoseconds a change, that is tens of
// seconds of writes to one slot, with no rebuild of its shard, while the
// reader stalls between two loads a few nanoseconds apart; and only if the
// writes land among its field loads does it return a mix of entries.
// Widening the counter would take bits from the pod.
func slotVer(v uint64, st uint64, pod int32) uint64 {
	seq := uint32(v)&^3 + slotSeq
	return uint64(uint32(pod))<<32 | uint64(seq) | st
}

// read returns the slot's entry and key hash when the slot is live, as one
// consistent snapshot: ok is false for a slot that is empty, dead, or still
// being written after tableReadTries attempts; v is the version it read, for
// a writer to check that the slot did not change since.
func (s *tslot) read() (e cacheEntry, h, v uint64, ok bool) {
	for range tableReadTries {
		v = s.ver.Load()
		switch slotState(v) {
		case slotEmpty, slotDead:
			return e, 0, v, false
		case slotBusy:
			continue
		}
		h = s.h.Load()
		meta := s.meta.Load()
		ref := atomic.LoadPointer(&s.ref)
		el := s.expLen.Load()
		var u [cacheInlineUID / 8]uint64
		for i := range u {
			u[i] = s.uid[i].Load()
		}
		if s.ver.Load() != v {
			continue
		}
		e.expLen, e.pod, e.meta = el, int32(v>>32), meta
		if uint8(el) == slotLongLen {
			e.long = (*longUID)(ref)
			e.svc = e.long.svc
		} else {
			e.svc = (*service)(ref)
			for i := range u {
				binary.LittleEndian.PutUint64(e.uid[8*i:], u[i])
			}
		}
		return e, h, v, true
	}
	return e, 0, v, false
}

// write stores entry e of hash h with metadata meta in the slot. The
// caller holds the shard's mutex and owns the array.
//
// Only a live slot is marked busy first: a reader may have loaded its
// version and be reading its fields, and must see the change when it loads
// the version again. A reader that finds the slot empty or dead reads no
// field, so the fields of one are written in place and the final version
// store publishes them. Each store to a slot is a locked instruction on
// amd64 (an atomic store is an XCHG), the bulk of a put's cost once the
// slot is in the processor's cache, so the uid words that already hold
// their new value (the zero padding of a short uid, most often) are not
// stored again. With these two changes and kill's below, BenchmarkCachePut
// went from 129–163 ns a put and 107–137 ns a remove to 99–129 and 90–115
// (five runs of each build, taken in turns).
func (s *tslot) write(h uint64, e *cacheEntry, meta uint64) {
	v := s.ver.Load()
	if slotState(v) == slotLive {
		s.ver.Store(slotVer(v, slotBusy, 0))
	}
	s.h.Store(h)
	s.meta.Store(meta)
	if e.long != nil {
		atomic.StorePointer(&s.ref, unsafe.Pointer(e.long))
	} else {
		atomic.StorePointer(&s.ref, unsafe.Pointer(e.svc))
	}
	s.expLen.Store(e.expLen)
	for i := range s.uid {
		if w := binary.LittleEndian.Uint64(e.uid[8*i:]); s.uid[i].Load() != w {
			s.uid[i].Store(w)
		}
	}
	s.ver.Store(slotVer(v, slotLive, e.pod))
}

// kill turns a live slot into a tombstone and lets go of its references.
// The caller holds the shard's mutex. The version is stored first, so a
// reader still reading the entry's fields sees the change; nobody reads
// the other fields of a dead slot, so only the reference is cleared (for
// the collector).
func (s *tslot) kill() {
	s.ver.Store(slotVer(s.ver.Load(), slotDead, 0))
	atomic.StorePointer(&s.ref, nil)
}

// tarray is one generation of a shard's slots.
type tarray struct {
	slots []tslot
}

func newTarray(n int) *tarray {
	return &tarray{slots: make([]tslot, n)}
}

// slotRef names a slot by its array and index. A slot is only meaningful
// with its array: after a rebuild the same entry sits elsewhere in another
// array, and the old one is frozen. Carrying the array lets remove tell a
// slot of the shard's current array from one of an array it replaced, which
// an index or a bare *tslot cannot. The zero slotRef names no slot.
type slotRef struct {
	a *tarray
	i int
	// s is &a.slots[i], which whoever makes the ref has at hand. A hit
	// records its access through s: going through a.slots[i] instead, to
	// load the array's header and check the index again, took the median
	// hit of BenchmarkCacheGet/uniform/cache/parallel from 302 ns to 377
	// (335 before refs). Only a and i identify the slot.
	s *tslot
}

// at returns the ref of slot i.
func (a *tarray) at(i int) slotRef { return slotRef{a, i, &a.slots[i]} }

// slot returns the slot r names.
func (r slotRef) slot() *tslot { return r.s }

// home returns the first slot a probe for hash h looks at: the low 32 bits
// of h scaled to the array (the shard is chosen by the top bits).
func (a *tarray) home(h uint64) int {
	return int(uint64(uint32(h)) * uint64(len(a.slots)) >> 32)
}

// next returns the slot after i, wrapping around.
func (a *tarray) next(i int) int {
	if i++; i == len(a.slots) {
		return 0
	}
	return i
}

// tshard is one shard of the table. Writers hold mu; readers load arr.
type tshard struct {
	arr atomic.Pointer[tarray]
	mu  sync.Mutex
	// live counts live slots, used live and dead ones; guarded by mu.
	live, used int
	// full is the array size that holds the shard's share of MaxEntries,
	// with room for the hash's unevenness, at most three quarters full:
	// growth stops there unless the shard holds more than its share.
	full int
	_    [cacheLine - 8 - 8 - 16 - 8]byte
}

// table is the link cache's map from key hash to entry.
type table struct {
	shards []tshard
	shift  uint // a hash's shard is h >> shift
}

func newTable(maxEntries int) *table {
	n := 1
	for n < tableMaxShards && n*tableShardEntries < maxEntries {
		n <<= 1
	}
	t := &table{shards: make([]tshard, n), shift: 64}
	share := (maxEntries + n - 1) / n
	// A shard's entries vary by about the square root of its share.
	full := (share + 4*int(math.Sqrt(float64(share))) + tableMinSlots) * 4 / 3
	for m := n; m > 1; m >>= 1 {
		t.shift--
	}
	for i := range t.shards {
		t.shards[i].arr.Store(newTarray(tableMinSlots))
		t.shards[i].full = full
	}
	return t
}

// shard returns the shard of hash h.
func (t *table) shard(h uint64) *tshard {
	if t.shift == 64 {
		return &t.shards[0]
	}
	return &t.shards[h>>t.shift]
}

// load returns the entry of hash h and its slot, lock-free. The slot may be
// written again at any time: its metadata word is the only part a reader
// may change.
func (t *table) load(h uint64) (cacheEntry, slotRef, bool) {
	a := t.shard(h).arr.Load()
	for i, n := a.home(h), 0; n < len(a.slots); i, n = a.next(i), n+1 {
		s := &a.slots[i]
		switch slotState(s.ver.Load()) {
		case slotEmpty:
			return cacheEntry{}, slotRef{}, false // the end of the run
		case slotDead:
			continue
		case slotLive:
			if s.h.Load() != h {
				continue // another key's: no need to read it whole
			}
		}
		// Live with h, or busy: read it consistently.
		if e, sh, _, ok := s.read(); ok && sh == h {
			return e, slotRef{a, i, s}, true
		}
	}
	return cacheEntry{}, slotRef{}, false
}

// find returns the slot of the live entry of hash h in the shard's current
// array, if there is one. The caller holds the shard's mutex, so no slot is
// busy.
func (sh *tshard) find(h uint64) (slotRef, bool) {
	a := sh.arr.Load()
	for i, n := a.home(h), 0; n < len(a.slots); i, n = a.next(i), n+1 {
		s := &a.slots[i]
		switch slotState(s.ver.Load()) {
		case slotEmpty:
			return slotRef{}, false
		case slotLive:
			if s.h.Load() == h {
				return slotRef{a, i, s}, true
			}
		}
	}
	return slotRef{}, false
}

// insert stores the entry of hash h, which the shard does not hold, with
// metadata meta, growing or rebuilding the array first when live and dead
// slots would pass three quarters of it. The caller holds the mutex.
func (sh *tshard) insert(h uint64, e *cacheEntry, meta uint64) {
	a := sh.arr.Load()
	if n := len(a.slots); 4*(sh.used+1) > 3*n {
		if 8*(sh.live+1) > 3*n {
			// More than 3/8 live: double (half full at most), but no
			// further than the shard's share needs.
			n = max(min(2*n, sh.full), 2*(sh.live+1))
		}
		a = sh.rebuild(n)
	}
	for i := a.home(h); ; i = a.next(i) {
		s := &a.slots[i]
		switch slotState(s.ver.Load()) {
		case slotEmpty:
			sh.used++
			fallthrough
		case slotDead:
			s.write(h, e, meta)
			sh.live++
			return
		}
	}
}

// rebuild moves the live entries into a new array of n slots, without
// tombstones, and publishes it. The caller holds the mutex.
func (sh *tshard) rebuild(n int) *tarray {
	old, a := sh.arr.Load(), newTarray(n)
	for i := range old.slots {
		s := &old.slots[i]
		if slotState(s.ver.Load()) != slotLive {
			continue
		}
		h := s.h.Load()
		j := a.home(h)
		for slotState(a.slots[j].ver.Load()) != slotEmpty {
			j = a.next(j)
		}
		d := &a.slots[j]
		d.h.Store(h)
		d.meta.Store(s.meta.Load())
		atomic.StorePointer(&d.ref, atomic.LoadPointer(&s.ref))
		d.expLen.Store(s.expLen.Load())
		for k := range d.uid {
			d.uid[k].Store(s.uid[k].Load())
		}
		d.ver.Store(slotVer(0, slotLive, int32(s.ver.Load()>>32)))
	}
	sh.used = sh.live
	sh.arr.Store(a)
	return a
}

// remove turns the live slot r into a tombstone and reports whether it did.
// It refuses, changing nothing, a slot that is not live or that belongs to
// an array the shard no longer uses: a ref taken before a rebuild (an
// eviction's sample, say) names a frozen copy, and the entry, if still
// there, sits at another index of the new array. The caller holds the
// mutex.
func (sh *tshard) remove(r slotRef) bool {
	a := sh.arr.Load()
	if r.a != a || slotState(a.slots[r.i].ver.Load()) != slotLive {
		return false
	}
	a.slots[r.i].kill()
	sh.live--
	// A tombstone followed by a never-used slot is in the way of no probe:
	// it and the tombstones before it become never-used again, so that
	// deletions do not pile up tombstones until the next rebuild.
	i := r.i
	if slotState(a.slots[a.next(i)].ver.Load()) != slotEmpty {
		return true
	}
	for n := 0; n < len(a.slots); n++ {
		d := &a.slots[i]
		v := d.ver.Load()
		if slotState(v) != slotDead {
			return true
		}
		d.ver.Store(slotVer(v, slotEmpty, 0))
		sh.used--
		if i--; i < 0 {
			i = len(a.slots) - 1
		}
	}
	return true
}

// clear drops every entry of the shard and returns how many there were. The
// caller holds the mutex.
func (sh *tshard) clear() int {
	n := sh.live
	sh.arr.Store(newTarray(tableMinSlots))
	sh.live, sh.used = 0, 0
	return n
}
