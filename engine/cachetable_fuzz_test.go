package engine

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/internal/clock"
	"github.com/stickyroute/stickyroute/internal/testkit"
)

const (
	// fuzzKeys is the key space of FuzzCacheTable: small enough that keys
	// come back, large enough to grow a shard several times past its first
	// array.
	fuzzKeys = 128
	// fuzzMaxOps bounds the operations of one input, and so the time it
	// takes: the fuzzer minimizes every new input by running it again and
	// again.
	fuzzMaxOps = 200
)

// fuzzHash returns the hash of fuzz key k, built so that keys collide where
// the table is tested hardest. The top two bits are k's low two: on a table
// of four shards each shard gets every fourth key, on one of two every
// other one. The low 32 bits, which pick the home slot, take one of eight
// values: two home at slot 0 of any array, two at its last slot, two at
// its middle and two at its quarters, so that probe runs are long, wrap
// around and cross tombstones. Bits 32-39 hold k itself, so that no two keys share a hash
// (the table holds one entry per hash) and fuzzKeyOf can tell the key.
func fuzzHash(k int) uint64 {
	low := [...]uint64{0, 1, 0xFFFFFFFF, 0xFFFFFFFE, 0x40000000, 0x80000000, 0x80000001, 0xC0000000}[k>>2&7]
	return uint64(k&3)<<62 | uint64(k)<<32 | low
}

// fuzzKeyOf returns the fuzz key of hash h, if h is one's.
func fuzzKeyOf(h uint64) (int, bool) {
	k := int(h >> 32 & 0xFF)
	return k, k < fuzzKeys && fuzzHash(k) == h
}

// shardIndex returns the index of the shard of hash h.
func shardIndex(tb *table, h uint64) int {
	if tb.shift == 64 {
		return 0
	}
	return int(h >> tb.shift)
}

// fuzzServices are the services of the fuzz keys' entries.
var fuzzServices = [...]*service{testService("ns", "room"), testService("ns", "chat")}

// fuzzModel is what the table should hold: entry k at fuzz key k's hash.
type fuzzModel [fuzzKeys]fuzzEntry

// fuzzEntry is what the model expects at a hash, if held. meta is checked
// only when the table is driven directly: through the cache, hits and
// stores of the same key change it.
type fuzzEntry struct {
	held bool
	svc  *service
	uid  string
	pod  int32
	exp  int64
	meta uint64
}

// fuzzKey returns key k's service and, by variant, one of its uids: an
// inline one or one longer than cacheInlineUID. An entry stored at k's hash
// with another variant is another key taking the hash over.
func fuzzKey(k int, variant byte) (*service, string) {
	uid := "u" + strconv.Itoa(k)
	if variant&1 != 0 {
		uid += strings.Repeat("-long", 6)
	}
	return fuzzServices[k&1], uid
}

// fuzzInput is the fuzz input read byte by byte, zeros once it runs out.
type fuzzInput struct{ *testkit.Program }

// key returns a fuzz key number.
func (in *fuzzInput) key() int { return int(in.Next()) % fuzzKeys }

// fuzzSeed joins a mode byte and operations into a seed input.
func fuzzSeed(mode byte, ops ...[]byte) []byte {
	b := []byte{mode}
	for _, op := range ops {
		b = append(b, op...)
	}
	return b
}

// fuzzStep is one operation as run, to tell what led to a failure: its
// key and, as the operation has one, its count, variant, second key or
// shard.
type fuzzStep struct {
	op   string
	k, n int
}

// fuzzTrace is the operations run so far.
type fuzzTrace []fuzzStep

// String lists the operations, one a line, to end a failure message.
func (tr fuzzTrace) String() string {
	var b strings.Builder
	for i, s := range tr {
		fmt.Fprintf(&b, "\n\t%d: %s k=%d (hash %#x) n=%d", i, s.op, s.k, fuzzHash(s.k), s.n)
	}
	return b.String()
}

// FuzzCacheTable runs random sequences of operations on the link cache's
// table and checks it after every step against a model (what each key's
// hash should hold) and its own invariants (see checkFuzzTable). The first byte picks the level: the
// table itself (insert, replace, remove, remove by a stale ref, clear,
// rebuild, runs of inserts and removals that grow and empty the arrays),
// or a linkCache over it (put, set, stale put, remove, invalidate,
// invalidateAll, get, evict), whose evictions the model follows: an
// eviction must drop exactly one entry, and only when one is reported.
// The keys' hashes are crafted (fuzzHash) so that they pile up on a few
// home slots of few shards.
func FuzzCacheTable(f *testing.F) {
	// The seeds, op by op. Table level: 0 k variant pod is a put, 2 k a
	// removal, 3 k how a stale remove, 4 n a clear, 5 k a rebuild, 6 k n
	// variant pod a run of puts, 7 k n a run of removals. Cache level: the
	// MaxEntries byte, then op k variant pod, and a second key for a stale
	// put (op 3).
	//
	// One shard: keys 0, 4, 32 and 36 are home at slot 0, 8 and 12 at the
	// last slot, so 12 wraps to slot 4; removing 32 and 36 leaves
	// tombstones, removing 12 reclaims them; then a stale ref across a
	// rebuild, and a long uid taking hash 0 over.
	f.Add(fuzzSeed(0, []byte{0, 0, 0, 1}, []byte{0, 4, 0, 2}, []byte{0, 32, 0, 3}, []byte{0, 36, 0, 4},
		[]byte{0, 8, 0, 5}, []byte{0, 12, 0, 6}, []byte{2, 32}, []byte{2, 36}, []byte{2, 12},
		[]byte{3, 0, 0}, []byte{0, 0, 1, 7}, []byte{2, 0}))
	// One shard: 8 sits in the last slot, 12 wraps to slot 0; removing
	// both reclaims the tombstones backwards across the wrap.
	f.Add(fuzzSeed(0, []byte{0, 8, 0, 1}, []byte{0, 12, 0, 2}, []byte{2, 8}, []byte{2, 12}))
	// Four shards: a run of 64 puts grows every array, a run of removals
	// empties half of it; stale refs across growth, used on another shard,
	// across a clear; a rebuild, and a clear of everything.
	f.Add(fuzzSeed(2, []byte{6, 0, 63, 0, 9}, []byte{7, 0, 31}, []byte{3, 40, 2}, []byte{3, 41, 3},
		[]byte{3, 42, 1}, []byte{5, 43}, []byte{4, 4}, []byte{0, 3, 1, 1}))
	// Two shards: runs with long uids that wrap around the key space,
	// rebuilds in place, a stale ref across one, runs of removals.
	f.Add(fuzzSeed(1, []byte{6, 100, 100, 1, 50}, []byte{5, 0}, []byte{5, 1}, []byte{7, 120, 20},
		[]byte{3, 110, 0}, []byte{6, 12, 40, 0, 0}, []byte{7, 0, 255}))
	// Cache level, LRU, MaxEntries 4: six puts evict two, a put with a token
	// made stale by invalidating a key of its stripe, removals by the right
	// and by the wrong uid, an invalidation and a direct eviction.
	f.Add(fuzzSeed(0x81, []byte{3}, []byte{0, 0, 0, 1}, []byte{0, 4, 0, 2}, []byte{0, 8, 0, 3},
		[]byte{0, 12, 0, 4}, []byte{0, 16, 0, 5}, []byte{0, 20, 1, 6}, []byte{3, 32, 0, 7, 16},
		[]byte{4, 4, 0, 0}, []byte{4, 8, 1, 0}, []byte{5, 12, 0, 0}, []byte{7, 0, 0, 0}))
	// Cache level, adaptive, MaxEntries 9: sets and gets past the bound,
	// so that the ghost rings fill and stores take the ghost path, then
	// invalidateAll.
	f.Add(fuzzSeed(0x80, []byte{8}, []byte{2, 1, 0, 1}, []byte{2, 5, 0, 2}, []byte{2, 9, 0, 3},
		[]byte{2, 13, 0, 4}, []byte{2, 17, 0, 5}, []byte{8, 1, 0, 0}, []byte{8, 5, 0, 0}, []byte{2, 21, 0, 6},
		[]byte{2, 25, 0, 7}, []byte{2, 29, 0, 8}, []byte{2, 33, 0, 9}, []byte{2, 37, 0, 10}, []byte{2, 1, 0, 11},
		[]byte{1, 41, 1, 12}, []byte{6, 0, 0, 0}, []byte{0, 45, 0, 13}))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fuzzInput{testkit.NewProgram(data)}
		if mode := in.Next(); mode&0x80 == 0 {
			fuzzTable(t, in, mode)
		} else {
			fuzzCache(t, in, mode)
		}
	})
}

// fuzzTable drives a table directly. The low bits of mode pick one, two or
// four shards.
func fuzzTable(t *testing.T, in *fuzzInput, mode byte) {
	tb := newTable([...]int{1, 1024, 2048}[int(mode&3)%3])
	var model fuzzModel
	var trace fuzzTrace
	// put stores key k's entry of the variant with the pod in its shard, as
	// a new entry or over the one there. Expiry and metadata derive from
	// them, so that a field the table moves to the wrong slot shows.
	put := func(k int, variant byte, pod int32) {
		h := fuzzHash(k)
		sh := tb.shard(h)
		svc, uid := fuzzKey(k, variant)
		m := fuzzEntry{held: true, svc: svc, uid: uid, pod: pod, exp: int64(k)<<8 | int64(uint8(pod)), meta: uint64(variant)<<32 | uint64(k)}
		e := makeCacheEntry(svc, uid, m.pod, m.exp)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		r, ok := sh.find(h)
		if ok != model[k].held {
			t.Fatalf("find(%#x) = %v, model holds it: %v%v", h, ok, model[k].held, trace)
		}
		if ok {
			r.slot().write(h, &e, m.meta)
		} else {
			sh.insert(h, &e, m.meta)
			if a := sh.arr.Load(); 4*sh.used > 3*len(a.slots) {
				t.Fatalf("%d of %d slots used after an insert%v", sh.used, len(a.slots), trace)
			}
		}
		model[k] = m
	}
	// del removes key k by find and remove, then checks that removing by
	// the same ref again is refused.
	del := func(k int) {
		h := fuzzHash(k)
		sh := tb.shard(h)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		r, ok := sh.find(h)
		if ok != model[k].held {
			t.Fatalf("find(%#x) = %v, model holds it: %v%v", h, ok, model[k].held, trace)
		}
		if !ok {
			return
		}
		if !sh.remove(r) {
			t.Fatalf("remove of the live slot of %#x refused%v", h, trace)
		}
		model[k] = fuzzEntry{}
		before := snapshotShard(sh)
		if sh.remove(r) {
			t.Fatalf("remove of the slot of %#x again was not refused%v", h, trace)
		}
		checkUnchanged(t, sh, before, "a second remove", trace)
	}
	for n := 0; in.More() && n < fuzzMaxOps; n++ {
		switch in.Next() % 10 {
		case 0, 1: // put a key, new or replacing the entry at its hash
			k, variant, pod := in.key(), in.Next(), int32(in.Next())-64
			trace = append(trace, fuzzStep{"put", k, int(variant)})
			put(k, variant, pod)
		case 2: // remove a key, held or not
			k := in.key()
			trace = append(trace, fuzzStep{"remove", k, 0})
			del(k)
		case 3: // take a ref, replace the array under it, remove by the ref
			k, how := in.key(), int(in.Next()%4)
			trace = append(trace, fuzzStep{"stale remove", k, how})
			fuzzStaleRemove(t, tb, &model, k, how, put, trace)
		case 4: // clear one shard, or all
			which := int(in.Next()) % (len(tb.shards) + 1) // len: all
			trace = append(trace, fuzzStep{"clear", 0, which})
			for i := range tb.shards {
				if which < len(tb.shards) && i != which {
					continue
				}
				sh := &tb.shards[i]
				sh.mu.Lock()
				live := sh.clear()
				sh.mu.Unlock()
				held := 0
				for k := range model {
					if model[k].held && shardIndex(tb, fuzzHash(k)) == i {
						model[k] = fuzzEntry{}
						held++
					}
				}
				if live != held {
					t.Fatalf("clear of shard %d dropped %d entries, model held %d%v", i, live, held, trace)
				}
			}
		case 5: // rebuild a key's shard in place, as an insert does among tombstones
			k := in.key()
			trace = append(trace, fuzzStep{"rebuild", k, 0})
			sh := tb.shard(fuzzHash(k))
			sh.mu.Lock()
			sh.rebuild(len(sh.arr.Load().slots))
			sh.mu.Unlock()
		case 6: // a run of puts from k on
			k, n, variant, pod := in.key(), int(in.Next())%64+1, in.Next(), int32(in.Next())
			trace = append(trace, fuzzStep{"put run", k, n})
			for i := range n {
				put((k+i)%fuzzKeys, variant, pod+int32(i))
			}
		case 7: // a run of removals from k on
			k, n := in.key(), int(in.Next())%64+1
			trace = append(trace, fuzzStep{"remove run", k, n})
			for i := range n {
				del((k + i) % fuzzKeys)
			}
		default: // load a key that may be absent: checkFuzzTable loads all
			k := in.key()
			trace = append(trace, fuzzStep{"load", k, 0})
			if _, _, ok := tb.load(fuzzHash(k)); ok != model[k].held {
				t.Fatalf("key %d loads %v, model holds it %v%v", k, ok, model[k].held, trace)
			}
		}
		checkFuzzTable(t, tb, &model, true, trace)
	}
}

// fuzzStaleRemove takes a ref to the slot of a held key (k, or the next
// held one), replaces the array of its shard (how: 0 a rebuild in place, 1
// a clear, 2 puts until the array grows, 3 none but the ref is used on
// another shard), then checks that removing by the ref is refused and
// changes nothing, and that the old array kept the entry.
func fuzzStaleRemove(t *testing.T, tb *table, model *fuzzModel, k, how int, put func(int, byte, int32), trace fuzzTrace) {
	t.Helper()
	for i := 0; !model[k].held; i++ {
		if i == fuzzKeys {
			return // nothing to take a ref to
		}
		k = (k + 1) % fuzzKeys
	}
	h := fuzzHash(k)
	sh := tb.shard(h)
	sh.mu.Lock()
	r, ok := sh.find(h)
	sh.mu.Unlock()
	if !ok {
		t.Fatalf("find(%#x) of a held key failed%v", h, trace)
	}
	target := sh
	switch how {
	case 0:
		sh.mu.Lock()
		sh.rebuild(len(r.a.slots))
		sh.mu.Unlock()
	case 1:
		sh.mu.Lock()
		sh.clear()
		sh.mu.Unlock()
		for g := range model {
			if tb.shard(fuzzHash(g)) == sh {
				model[g] = fuzzEntry{}
			}
		}
	case 2:
		// Keys k+4i share k's shard.
		for i := 1; i < fuzzKeys/4 && sh.arr.Load() == r.a; i++ {
			if g := (k + 4*i) % fuzzKeys; !model[g].held {
				put(g, 0, int32(i))
			}
		}
		if sh.arr.Load() == r.a {
			return // the shard took every key of the space without growing
		}
	case 3:
		if len(tb.shards) == 1 {
			return
		}
		target = &tb.shards[(shardIndex(tb, h)+1)%len(tb.shards)]
	}
	old := r.slot()
	v, oldH := old.ver.Load(), old.h.Load()
	target.mu.Lock()
	before := snapshotShard(target)
	refused := !target.remove(r)
	target.mu.Unlock()
	if !refused {
		t.Fatalf("remove by a stale ref to %#x (how %d) was not refused%v", h, how, trace)
	}
	checkUnchanged(t, target, before, "a stale remove", trace)
	if how != 3 && (old.ver.Load() != v || oldH != h || slotState(v) != slotLive) {
		t.Fatalf("the replaced array's slot of %#x changed: state %d, hash %#x%v", h, slotState(old.ver.Load()), old.h.Load(), trace)
	}
}

// shardSnapshot is a shard's state, to check that a refused remove changed
// nothing.
type shardSnapshot struct {
	arr        *tarray
	live, used int
	vers       []uint64
}

// snapshotShard returns the shard's state. The caller holds its mutex.
func snapshotShard(sh *tshard) shardSnapshot {
	a := sh.arr.Load()
	s := shardSnapshot{arr: a, live: sh.live, used: sh.used, vers: make([]uint64, len(a.slots))}
	for i := range a.slots {
		s.vers[i] = a.slots[i].ver.Load()
	}
	return s
}

// checkUnchanged checks that the shard is as snapshotted: same array, same
// counts, no slot changed (every change of a slot steps its version).
func checkUnchanged(t *testing.T, sh *tshard, s shardSnapshot, what string, trace fuzzTrace) {
	t.Helper()
	a := sh.arr.Load()
	if a != s.arr || sh.live != s.live || sh.used != s.used {
		t.Fatalf("%s changed the shard: %d live, %d used, were %d, %d%v", what, sh.live, sh.used, s.live, s.used, trace)
	}
	for i := range a.slots {
		if v := a.slots[i].ver.Load(); v != s.vers[i] {
			t.Fatalf("%s changed slot %d: version %#x, was %#x%v", what, i, v, s.vers[i], trace)
		}
	}
}

// checkFuzzTable checks the table against the model and its invariants:
// every model entry loads, with its fields (and metadata when checkMeta),
// from a live slot of its shard's current array, and no other key loads;
// in each shard, the live slots are the model's entries of that shard, no
// two of them share a hash, live and used count the live and live-or-dead
// slots, at most three quarters of the array is used, no slot is busy, and
// no tombstone is followed by a never-used slot (remove reclaims those).
func checkFuzzTable(t *testing.T, tb *table, model *fuzzModel, checkMeta bool, trace fuzzTrace) {
	t.Helper()
	var held [tableMaxShards]int
	for k := range fuzzKeys {
		h := fuzzHash(k)
		m := &model[k]
		e, r, ok := tb.load(h)
		if ok != m.held {
			t.Fatalf("key %d (hash %#x): loads %v, model holds it %v%v", k, h, ok, m.held, trace)
		}
		if !ok {
			continue
		}
		if !e.is(m.svc.ns, m.svc.name, m.uid) || e.svc != m.svc || e.pod != m.pod || checkMeta && (e.expiry() != m.exp || e.meta != m.meta) {
			t.Fatalf("key %d: loaded pod %d exp %d meta %#x, want %q pod %d exp %d meta %#x%v",
				k, e.pod, e.expiry(), e.meta, m.uid, m.pod, m.exp, m.meta, trace)
		}
		if sh := tb.shard(h); r.a != sh.arr.Load() || r.slot() != &r.a.slots[r.i] || r.slot().h.Load() != h || slotState(r.slot().ver.Load()) != slotLive {
			t.Fatalf("key %d loads from a slot that is not its live one in the current array%v", k, trace)
		}
		held[shardIndex(tb, h)]++
	}
	for i := range tb.shards {
		sh := &tb.shards[i]
		sh.mu.Lock()
		a := sh.arr.Load()
		live, used := 0, 0
		var seen [fuzzKeys]bool
		for j := range a.slots {
			s := &a.slots[j]
			switch slotState(s.ver.Load()) {
			case slotLive:
				live++
				used++
				h := s.h.Load()
				k, ok := fuzzKeyOf(h)
				if !ok || !model[k].held || shardIndex(tb, h) != i || seen[k] {
					t.Fatalf("shard %d slot %d holds hash %#x: a key's %v, in the model %v, its shard %v, seen before %v%v",
						i, j, h, ok, ok && model[k].held, shardIndex(tb, h) == i, ok && seen[k], trace)
				}
				seen[k] = true
			case slotDead:
				used++
				if slotState(a.slots[a.next(j)].ver.Load()) == slotEmpty {
					t.Fatalf("shard %d: tombstone %d is followed by a never-used slot%v", i, j, trace)
				}
			case slotBusy:
				t.Fatalf("shard %d: slot %d is busy at rest%v", i, j, trace)
			}
		}
		if live != sh.live || used != sh.used || live != held[i] || used < live || used > len(a.slots) || 4*used > 3*len(a.slots) {
			t.Fatalf("shard %d: %d live and %d used of %d slots, counted %d and %d, model holds %d%v",
				i, live, used, len(a.slots), sh.live, sh.used, held[i], trace)
		}
		sh.mu.Unlock()
	}
}

// fuzzCache drives a linkCache over crafted hashes. mode's bits 0-1 pick
// the eviction policy; the next byte MaxEntries, 1 to 48, so that puts
// evict. The clock is stopped: nothing expires, and hits record one time.
func fuzzCache(t *testing.T, in *fuzzInput, mode byte) {
	clk := clock.New(time.Hour)
	clk.Stop()
	c := newLinkCache(CacheConfig{MaxEntries: int(in.Next())%48 + 1, TTL: time.Hour, Eviction: Eviction(mode & 3)}, clk)
	var model fuzzModel
	size := 0 // entries the model holds
	drop := func(k int) {
		if model[k].held {
			model[k] = fuzzEntry{}
			size--
		}
	}
	var trace fuzzTrace
	// settle checks that the model's entries are all still cached, except
	// at most one, which an eviction dropped when evicted allows it; it
	// drops that one from the model, and checks the eviction counter.
	var evictions uint64
	settle := func(evicted bool) {
		gone := 0
		for k := range model {
			if _, _, ok := c.t.load(fuzzHash(k)); model[k].held && !ok {
				drop(k)
				gone++
			}
		}
		if gone > 1 || gone == 1 && !evicted {
			t.Fatalf("entries vanished: %d (an eviction allowed: %v)%v", gone, evicted, trace)
		}
		if evictions += uint64(gone); c.stats().Evictions != evictions {
			t.Fatalf("%d evictions counted, %d entries evicted%v", c.stats().Evictions, evictions, trace)
		}
	}
	// stored updates the model after a store of m at key k's hash, and
	// checks that it stored when it had to. A store of a new key into a
	// full cache evicts, or stores nothing if no eviction succeeded.
	stored := func(k int, m fuzzEntry, ok, must bool) {
		full := !model[k].held && size >= int(c.max)
		if ok {
			if !model[k].held {
				size++
			}
			model[k] = m
		} else if must && !full {
			t.Fatalf("a store of key %d into a cache with room did not store%v", k, trace)
		}
		settle(ok && full)
	}
	// holds reports whether the model holds key k's entry of (svc, uid).
	holds := func(k int, svc *service, uid string) bool {
		return model[k].held && model[k].svc == svc && model[k].uid == uid
	}
	for n := 0; in.More() && n < fuzzMaxOps; n++ {
		op, k := in.Next()%9, in.key()
		h := fuzzHash(k)
		svc, uid := fuzzKey(k, in.Next())
		m := fuzzEntry{held: true, svc: svc, uid: uid, pod: int32(in.Next())}
		switch op {
		case 0, 1: // put with a fresh token
			trace = append(trace, fuzzStep{"put", k, 0})
			stored(k, m, c.put(h, svc, uid, int(m.pod), c.token(h)), true)
		case 2: // set
			trace = append(trace, fuzzStep{"set", k, 0})
			c.set(h, svc, uid, int(m.pod))
			e, _, ok := c.t.load(h)
			stored(k, m, ok && e.is(svc.ns, svc.name, uid) && e.pod == m.pod, true)
		case 3: // put with a token taken before an invalidation, of k or another key
			g := in.key()
			trace = append(trace, fuzzStep{"stale put", k, g})
			tok := c.token(h)
			c.invalidate(fuzzHash(g))
			drop(g)
			ok := c.put(h, svc, uid, int(m.pod), tok)
			if ok && c.token(h) != tok {
				t.Fatalf("a put with a stale token stored%v", trace)
			}
			stored(k, m, ok, c.token(h) == tok)
		case 4: // remove by key, which may be another key of the hash
			trace = append(trace, fuzzStep{"remove", k, 0})
			want, held := model[k], holds(k, svc, uid)
			if pod, ok := c.remove(h, svc.ns, svc.name, uid); ok != held || ok && pod != int(want.pod) {
				t.Fatalf("remove(%#x, %q) = %d, %v; model holds %q pod %d%v", h, uid, pod, ok, want.uid, want.pod, trace)
			}
			if held {
				drop(k)
			}
			settle(false)
		case 5: // invalidate
			trace = append(trace, fuzzStep{"invalidate", k, 0})
			c.invalidate(h)
			drop(k)
			settle(false)
		case 6: // invalidateAll, rarely
			if k%8 != 0 {
				continue
			}
			trace = append(trace, fuzzStep{"invalidateAll", k, 0})
			c.invalidateAll()
			model, size = fuzzModel{}, 0
		case 7: // an eviction
			trace = append(trace, fuzzStep{"evict", k, 0})
			before := size
			ev := c.evict(clk.Millis())
			settle(ev)
			if ev && size != before-1 {
				t.Fatalf("evict reported an eviction, the model lost %d entries%v", before-size, trace)
			}
		default: // a lookup, which records an access
			trace = append(trace, fuzzStep{"get", k, 0})
			want, held := model[k], holds(k, svc, uid)
			if pod, _, ok := c.get(h, svc.ns, svc.name, uid); ok != held || ok && pod != int(want.pod) {
				t.Fatalf("get(%#x, %q) = %d, %v; model holds %q pod %d%v", h, uid, pod, ok, want.uid, want.pod, trace)
			}
		}
		if n := c.len(); n != size || n > int(c.max) {
			t.Fatalf("len %d, model %d, MaxEntries %d%v", n, size, c.max, trace)
		}
		if st := c.stats(); st.Expired != 0 {
			t.Fatalf("%d entries expired on a stopped clock%v", st.Expired, trace)
		}
		checkFuzzTable(t, c.t, &model, false, trace)
	}
}
