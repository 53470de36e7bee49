package engine

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stickyroute/stickyroute/internal/clock"
)

func testService(ns, name string) *service {
	return &service{ns: ns, name: name, hash: serviceHash(ns, name)}
}

// testKey is one cache key with its hash.
type testKey struct {
	svc *service
	uid string
	h   uint64
}

func newKey(svc *service, uid string) testKey { return testKey{svc, uid, keyHash(svc.hash, uid)} }

// newKeys returns n keys of svc, uids prefix0 .. prefix(n-1).
func newKeys(svc *service, prefix string, n int) []testKey {
	ks := make([]testKey, n)
	for i := range ks {
		ks[i] = newKey(svc, prefix+strconv.Itoa(i))
	}
	return ks
}

// newTestCache returns a cache on a 1ms clock that stops with the test.
// Zero MaxEntries means 1000, zero TTL an hour. Inside a synctest bubble the
// clock follows the bubble's time.
func newTestCache(t testing.TB, cfg CacheConfig) *linkCache {
	t.Helper()
	clk := clock.New(time.Millisecond)
	t.Cleanup(clk.Stop)
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 1000
	}
	if cfg.TTL == 0 {
		cfg.TTL = time.Hour
	}
	return newLinkCache(cfg, clk)
}

// newTestCacheKey returns a cache with the defaults of newTestCache and the
// key of user u of the service (ns, room).
func newTestCacheKey(t testing.TB) (*linkCache, testKey) {
	return newTestCache(t, CacheConfig{}), newKey(testService("ns", "room"), "u")
}

// stressOps is a stress test's operation count: n, or fewer under the race
// detector or -short.
func stressOps(n, fewer int) int {
	if raceEnabled || testing.Short() {
		return fewer
	}
	return n
}

// advance moves a synctest bubble's time by d and waits for the coarse clock
// to tick up to it.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func lookup(c *linkCache, k testKey) (int, bool) {
	pod, _, ok := c.get(k.h, k.svc.ns, k.svc.name, k.uid)
	return pod, ok
}

// wantHit checks that a read of k hits pod; what names the read.
func wantHit(t testing.TB, c *linkCache, k testKey, pod int, what string) {
	t.Helper()
	if got, ok := lookup(c, k); !ok || got != pod {
		t.Fatalf("%s = %d, %v; want %d, true", what, got, ok, pod)
	}
}

// fill puts pod for k with a fresh token, as a client does after a miss.
func fill(t testing.TB, c *linkCache, k testKey, pod int) {
	t.Helper()
	if !c.put(k.h, k.svc, k.uid, pod, c.token(k.h)) {
		t.Fatalf("put(%q) with a fresh token did not store", k.uid)
	}
}

// fillKeys caches n new keys of svc (newKeys) on pod 1 and returns them.
func fillKeys(t testing.TB, c *linkCache, svc *service, prefix string, n int) []testKey {
	t.Helper()
	ks := newKeys(svc, prefix, n)
	for _, k := range ks {
		fill(t, c, k, 1)
	}
	return ks
}

// access reads k and fills it on a miss.
func access(c *linkCache, k testKey) {
	if _, ok := lookup(c, k); !ok {
		c.put(k.h, k.svc, k.uid, 1, c.token(k.h))
	}
}

// cached reports whether k is in the cache, without recording an access.
func cached(c *linkCache, k testKey) bool {
	e, _, ok := c.t.load(k.h)
	return ok && e.is(k.svc.ns, k.svc.name, k.uid)
}

func countCached(c *linkCache, ks []testKey) int {
	n := 0
	for _, k := range ks {
		if cached(c, k) {
			n++
		}
	}
	return n
}

// checkSlots checks the table of a cache at rest: each shard's counts match
// its slots, every live entry is found by a lookup of its hash (no probe run
// is broken) and sits in its hash's shard, no hash is held twice, and len
// counts the entries, at most MaxEntries.
func checkSlots(t *testing.T, c *linkCache) {
	t.Helper()
	seen := map[uint64]bool{}
	n := 0
	for i := range c.t.shards {
		sh := &c.t.shards[i]
		sh.mu.Lock()
		a := sh.arr.Load()
		live, used := 0, 0
		for j := range a.slots {
			switch slotState(a.slots[j].ver.Load()) {
			case slotLive:
				live++
				used++
				h := a.slots[j].h.Load()
				if seen[h] {
					t.Errorf("hash %x is held twice", h)
				}
				seen[h] = true
				if c.t.shard(h) != sh {
					t.Errorf("hash %x sits in shard %d", h, i)
				}
				if _, r, ok := c.t.load(h); !ok || r != a.at(j) {
					t.Errorf("hash %x is not found where it sits", h)
				}
			case slotDead:
				used++
			case slotBusy:
				t.Errorf("slot %d of shard %d is busy at rest", j, i)
			}
		}
		if live != sh.live || used != sh.used || 4*used > 3*len(a.slots) {
			t.Errorf("shard %d: %d live and %d used of %d slots, counted %d and %d", i, live, used, len(a.slots), sh.live, sh.used)
		}
		sh.mu.Unlock()
		n += live
	}
	if n != c.len() || n > int(c.max) {
		t.Errorf("%d entries, len() %d, MaxEntries %d", n, c.len(), c.max)
	}
}

func TestCacheHitMiss(t *testing.T) {
	c := newTestCache(t, CacheConfig{})
	svc := testService("ns", "room")
	uids := []string{"", "u1", strings.Repeat("a", 24), strings.Repeat("b", 25), strings.Repeat("c", 300)}
	for i, uid := range uids {
		k := newKey(svc, uid)
		if pod, ok := lookup(c, k); ok || pod != -1 {
			t.Fatalf("get(%q) on an empty cache = %d, %v", uid, pod, ok)
		}
		fill(t, c, k, i)
		pod, got, ok := c.get(k.h, "ns", "room", uid)
		if !ok || pod != i || got != svc {
			t.Fatalf("get(%q) = %d, %p, %v; want %d, %p, true", uid, pod, got, ok, i, svc)
		}
	}
	st := c.stats()
	want := CacheStats{Hits: 5, Misses: 5, Size: 5, MaxEntries: 1000, Eviction: EvictAdaptive, RecencyWeight: 0.5}
	if st != want {
		t.Fatalf("stats = %+v, want %+v", st, want)
	}
	if r := st.HitRatio(); r != 0.5 {
		t.Fatalf("HitRatio = %v, want 0.5", r)
	}
	if r := (CacheStats{}).HitRatio(); r != 0 {
		t.Fatalf("HitRatio of no lookups = %v, want 0", r)
	}
}

// A hash collision must cost a miss, never another key's pod.
func TestCacheFullKeyVerification(t *testing.T) {
	c := newTestCache(t, CacheConfig{})
	room, chat := testService("ns", "room"), testService("ns", "chat")
	long := strings.Repeat("x", 40)
	const h = 42 // every key below is forced onto it
	c.set(h, room, "alice", 1)
	for _, k := range [][3]string{
		{"ns", "chat", "alice"}, {"ns2", "room", "alice"}, {"ns", "room", "alicf"},
		{"ns", "room", "alic"}, {"ns", "room", "alice\x00"}, {"ns", "room", ""}, {"", "", ""},
	} {
		if pod, _, ok := c.get(h, k[0], k[1], k[2]); ok {
			t.Fatalf("get(%q) at the hash of (ns, room, alice) = %d, want a miss", k, pod)
		}
		if pod, ok := c.remove(h, k[0], k[1], k[2]); ok {
			t.Fatalf("remove(%q) dropped the entry of (ns, room, alice), pod %d", k, pod)
		}
	}
	if pod, _, ok := c.get(h, "ns", "room", "alice"); !ok || pod != 1 {
		t.Fatalf("get(alice) = %d, %v; want 1, true", pod, ok)
	}
	// A long uid is compared whole.
	c.set(h, room, long, 2)
	for _, uid := range []string{"alice", long[:24], long[:39], long + "x", long[:39] + "y"} {
		if pod, _, ok := c.get(h, "ns", "room", uid); ok {
			t.Fatalf("get(%q) at the hash of a 40-byte uid = %d, want a miss", uid, pod)
		}
	}
	if pod, _, ok := c.get(h, "ns", "room", strings.Clone(long)); !ok || pod != 2 {
		t.Fatalf("get(long uid) = %d, %v; want 2, true", pod, ok)
	}
	// The later key takes the hash over.
	c.set(h, chat, "bob", 3)
	if _, _, ok := c.get(h, "ns", "room", long); ok {
		t.Fatal("get(long uid) hit after (chat, bob) took its hash")
	}
	if pod, svc, ok := c.get(h, "ns", "chat", "bob"); !ok || pod != 3 || svc != chat {
		t.Fatalf("get(chat, bob) = %d, %v; want 3, true", pod, ok)
	}
	if c.len() != 1 {
		t.Fatalf("len = %d, want 1", c.len())
	}
	checkSlots(t, c)
}

func TestCacheTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, CacheConfig{MaxEntries: 10, TTL: time.Second})
		svc := testService("ns", "room")
		a, b := newKey(svc, "a"), newKey(svc, "b")
		fill(t, c, a, 1)
		c.set(b.h, svc, b.uid, 2)
		advance(999 * time.Millisecond)
		if _, ok := lookup(c, a); !ok {
			t.Fatal("entry expired before its TTL")
		}
		c.set(b.h, svc, b.uid, 2) // refreshes b's TTL
		advance(time.Millisecond)
		if _, ok := lookup(c, a); ok {
			t.Fatal("entry hit at its TTL")
		}
		if c.len() != 1 {
			t.Fatalf("len = %d after the expired entry was read, want 1", c.len())
		}
		if _, ok := lookup(c, b); !ok {
			t.Fatal("refreshed entry expired with the TTL of its first set")
		}
		advance(time.Second)
		// remove reports an expired entry absent, and drops it.
		if pod, ok := c.remove(b.h, "ns", "room", "b"); ok {
			t.Fatalf("remove of an expired entry = %d, true", pod)
		}
		fill(t, c, a, 3)
		wantHit(t, c, a, 3, "get after refill")
		st := c.stats()
		if st.Hits != 3 || st.Misses != 1 || st.Expired != 2 || st.Size != 1 || st.Evictions != 0 {
			t.Fatalf("stats = %+v; want 3 hits, 1 miss, 2 expired, size 1", st)
		}
		checkSlots(t, c)
	})
}

func TestCacheRemove(t *testing.T) {
	c, k := newTestCacheKey(t)
	fill(t, c, k, 3)
	if pod, ok := c.remove(k.h, "ns", "room", "v"); ok {
		t.Fatalf("remove of another uid at the same hash = %d, true", pod)
	}
	if pod, ok := c.remove(k.h, "ns", "room", "u"); !ok || pod != 3 {
		t.Fatalf("remove = %d, %v; want 3, true", pod, ok)
	}
	if pod, ok := c.remove(k.h, "ns", "room", "u"); ok || pod != -1 {
		t.Fatalf("second remove = %d, %v; want -1, false", pod, ok)
	}
	if _, ok := lookup(c, k); ok {
		t.Fatal("get hit after remove")
	}
	fill(t, c, k, 4)
	wantHit(t, c, k, 4, "get after refill")
	if st := c.stats(); st.Invalidations != 0 || st.Expired != 0 || st.Evictions != 0 || st.Size != 1 {
		t.Fatalf("stats = %+v; remove counts as none of evicted, expired, invalidated", st)
	}
	checkSlots(t, c)
}

func TestCacheSet(t *testing.T) {
	c, k := newTestCacheKey(t)
	c.invalidate(k.h)
	c.invalidateAll()
	c.set(k.h, k.svc, k.uid, 7) // takes no token: stores whatever ran before
	wantHit(t, c, k, 7, "get after set")
	c.set(k.h, k.svc, k.uid, 8)
	wantHit(t, c, k, 8, "get after second set")
	c.set(k.h, k.svc, "w", 1<<40) // not representable: not cached
	if pod, ok := lookup(c, k); !ok || pod != 8 || c.len() != 1 {
		t.Fatalf("get = %d, %v, len %d; want 8, true, 1", pod, ok, c.len())
	}
	checkSlots(t, c)
}

func TestCacheInvalidate(t *testing.T) {
	c, k := newTestCacheKey(t)
	tok := c.token(k.h)
	c.invalidate(k.h) // nothing cached: nothing counted
	if c.put(k.h, k.svc, k.uid, 1, tok) {
		t.Fatal("put with a token taken before invalidate stored")
	}
	if _, ok := lookup(c, k); ok {
		t.Fatal("get hit after a stale put")
	}
	fill(t, c, k, 2)
	// A key of another epoch stripe keeps its token.
	var other testKey
	for i := 0; ; i++ {
		if other = newKey(k.svc, "o"+strconv.Itoa(i)); other.h&c.epochMask != k.h&c.epochMask {
			break
		}
	}
	otherTok := c.token(other.h)
	c.invalidate(k.h)
	if _, ok := lookup(c, k); ok {
		t.Fatal("get hit after invalidate")
	}
	if !c.put(other.h, k.svc, other.uid, 3, otherTok) {
		t.Fatal("invalidate made the token of a key in another stripe stale")
	}
	if st := c.stats(); st.Invalidations != 1 || st.Size != 1 {
		t.Fatalf("stats = %+v; want 1 invalidation, size 1", st)
	}
	checkSlots(t, c)
}

func TestCacheInvalidateAll(t *testing.T) {
	c := newTestCache(t, CacheConfig{MaxEntries: 100})
	svc := testService("ns", "room")
	ks := newKeys(svc, "u", 100)
	for i, k := range ks {
		fill(t, c, k, i)
	}
	fresh := newKeys(svc, "v", 100)
	toks := make([]uint64, len(fresh))
	for i, k := range fresh {
		toks[i] = c.token(k.h)
	}
	c.invalidateAll()
	if n := countCached(c, ks); n != 0 || c.len() != 0 {
		t.Fatalf("%d entries (len %d) left after invalidateAll", n, c.len())
	}
	for i, k := range fresh {
		if c.put(k.h, svc, k.uid, i, toks[i]) {
			t.Fatalf("put(%q) with a token taken before invalidateAll stored", k.uid)
		}
	}
	// The slots came back: refilling evicts nothing.
	for i, k := range fresh {
		fill(t, c, k, i)
	}
	st := c.stats()
	if st.Invalidations != 100 || st.Evictions != 0 || st.Size != 100 {
		t.Fatalf("stats = %+v; want 100 invalidations, no eviction, size 100", st)
	}
	checkSlots(t, c)
}

// Concurrent puts, sets, removes and invalidations never hold more entries
// than MaxEntries, and leave the slot accounting whole.
func TestCacheCapacityConcurrent(t *testing.T) {
	const maxEntries = 64
	for _, ev := range []Eviction{EvictAdaptive, EvictLRU, EvictLFU, EvictTTL} {
		t.Run(ev.String(), func(t *testing.T) {
			c := newTestCache(t, CacheConfig{MaxEntries: maxEntries, Eviction: ev})
			svc := testService("ns", "room")
			ks := newKeys(svc, "u", 1000)
			ops := stressOps(20000, 3000)
			var stop atomic.Bool
			var peak atomic.Int64
			var checker, workers sync.WaitGroup
			checker.Go(func() {
				for !stop.Load() {
					if n := int64(c.len()); n > peak.Load() {
						peak.Store(n)
					}
					runtime.Gosched()
				}
			})
			for range 8 {
				workers.Go(func() {
					for i := range ops {
						k := ks[rand.IntN(len(ks))]
						switch r := rand.IntN(100); {
						case r < 60:
							c.put(k.h, svc, k.uid, i, c.token(k.h))
						case r < 80:
							lookup(c, k)
						case r < 88:
							c.set(k.h, svc, k.uid, i)
						case r < 94:
							c.remove(k.h, "ns", "room", k.uid)
						case r < 99:
							c.invalidate(k.h)
						default:
							if i%16 == 0 {
								c.invalidateAll()
							}
						}
					}
				})
			}
			workers.Wait()
			stop.Store(true)
			checker.Wait()
			if p := peak.Load(); p > maxEntries {
				t.Fatalf("len reached %d, MaxEntries is %d", p, maxEntries)
			}
			if c.len() == 0 {
				t.Fatal("cache empty after the run")
			}
			checkSlots(t, c)
		})
	}
}

func TestCacheEvictLRU(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, CacheConfig{MaxEntries: 1000, Eviction: EvictLRU})
		svc := testService("ns", "room")
		ks := fillKeys(t, c, svc, "u", 1000)
		advance(10 * time.Millisecond)
		read, unread := ks[:500], ks[500:]
		for _, k := range read {
			lookup(c, k)
		}
		advance(10 * time.Millisecond)
		fillKeys(t, c, svc, "v", 250)
		keptRead, keptUnread := countCached(c, read), countCached(c, unread)
		t.Logf("after 250 evictions: %d/500 recently read kept, %d/500 unread kept", keptRead, keptUnread)
		// Exact per-key history kept about 473; metadata words are indexed by
		// hash and a few keys share theirs (see claimMeta), which costs a few.
		if keptRead < 425 || keptUnread > 325 {
			t.Fatalf("LRU kept %d recently read and %d unread keys of 500 each", keptRead, keptUnread)
		}
		if st := c.stats(); st.Evictions != 250 || st.Size != 1000 || st.RecencyWeight != 1 {
			t.Fatalf("stats = %+v; want 250 evictions, size 1000, recency weight 1", st)
		}
	})
}

// A scan of one-off keys flushes an LRU cache but not an LFU one.
func TestCacheEvictLFU(t *testing.T) {
	kept := map[Eviction]int{}
	for _, ev := range []Eviction{EvictLFU, EvictLRU} {
		synctest.Test(t, func(t *testing.T) {
			c := newTestCache(t, CacheConfig{MaxEntries: 1000, Eviction: ev})
			svc := testService("ns", "room")
			ks := fillKeys(t, c, svc, "u", 1000)
			advance(time.Millisecond)
			frequent := ks[:200]
			for range 50 {
				for _, k := range frequent {
					lookup(c, k)
				}
			}
			advance(time.Millisecond)
			for i, k := range newKeys(svc, "scan", 3000) {
				fill(t, c, k, 1)
				lookup(c, k)
				if i%100 == 99 {
					advance(time.Millisecond)
				}
			}
			kept[ev] = countCached(c, frequent)
			if st := c.stats(); st.Evictions != 3000 || st.Size != 1000 {
				t.Fatalf("stats = %+v; want 3000 evictions, size 1000", st)
			}
		})
	}
	t.Logf("frequent keys kept through a scan: LFU %d/200, LRU %d/200", kept[EvictLFU], kept[EvictLRU])
	// Exact per-key history kept about 197; shared metadata words (see
	// claimMeta) cost a few.
	if kept[EvictLFU] < 175 || kept[EvictLRU] > 50 {
		t.Fatalf("frequent keys kept: LFU %d/200 (want ≥ 175), LRU %d/200 (want ≤ 50)", kept[EvictLFU], kept[EvictLRU])
	}
}

func TestCacheEvictTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, CacheConfig{MaxEntries: 400, TTL: time.Minute, Eviction: EvictTTL})
		svc := testService("ns", "room")
		first := fillKeys(t, c, svc, "a", 200)
		advance(10 * time.Second)
		second := fillKeys(t, c, svc, "b", 200)
		advance(time.Second)
		for range 20 { // reads do not save the entries closest to expiry
			for _, k := range first {
				lookup(c, k)
			}
		}
		fillKeys(t, c, svc, "c", 100)
		keptFirst, keptSecond := countCached(c, first), countCached(c, second)
		t.Logf("after 100 evictions: %d/200 of the first batch kept, %d/200 of the second", keptFirst, keptSecond)
		if keptFirst > 140 || keptSecond < 175 {
			t.Fatalf("TTL eviction kept %d of the first batch and %d of the later one", keptFirst, keptSecond)
		}
		// An expired entry goes first and counts as expired.
		advance(64 * time.Second) // every entry is past its TTL
		fill(t, c, newKey(svc, "d"), 1)
		if st := c.stats(); st.Evictions != 100 || st.Expired != 1 || st.Size != 400 {
			t.Fatalf("stats = %+v; want 100 evictions, 1 expired, size 400", st)
		}
	})
}

// Hot keys that a scan of one-off keys pushes out come back: the adaptive
// policy moves toward frequency.
func TestCacheAdaptiveScan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, CacheConfig{MaxEntries: 1000})
		svc := testService("ns", "room")
		hot := newKeys(svc, "hot", 600)
		scan := 0
		for range 40 {
			for _, k := range hot {
				access(c, k)
			}
			advance(time.Millisecond)
			for range 600 {
				access(c, newKey(svc, "scan"+strconv.Itoa(scan)))
				scan++
			}
			advance(time.Millisecond)
		}
		w := c.stats().RecencyWeight
		t.Logf("recency weight %.3f; %d/600 hot keys cached; hit ratio %.3f", w, countCached(c, hot), c.stats().HitRatio())
		if w > 0.35 {
			t.Fatalf("recency weight %.3f under a scan-polluted workload, want ≤ 0.35 (it starts at 0.5)", w)
		}
	})
}

// A working set that moves on leaves frequent keys that never come back: the
// adaptive policy moves toward recency.
func TestCacheAdaptiveShift(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, CacheConfig{MaxEntries: 1000})
		svc := testService("ns", "room")
		for phase := range 6 {
			ws := newKeys(svc, fmt.Sprintf("p%d-", phase), 700)
			for range 30 {
				for _, k := range ws {
					access(c, k)
				}
				advance(time.Millisecond)
			}
		}
		w := c.stats().RecencyWeight
		t.Logf("recency weight %.3f; hit ratio %.3f", w, c.stats().HitRatio())
		if w < 0.75 {
			t.Fatalf("recency weight %.3f under a shifting working set, want ≥ 0.75 (it starts at 0.5)", w)
		}
	})
}

// Writers change a key in "Redis" and then invalidate it; readers take a
// token, read "Redis" and put. However they interleave, once an invalidation
// has returned no lookup sees a value older than the one it announced, and
// once they all stop every cached pod is its key's last value.
func TestCacheStress(t *testing.T) {
	for _, ev := range []Eviction{EvictAdaptive, EvictLRU} {
		t.Run(ev.String(), func(t *testing.T) {
			const nkeys = 32
			c := newTestCache(t, CacheConfig{MaxEntries: nkeys / 2, Eviction: ev})
			svc := testService("ns", "room")
			ks := newKeys(svc, "u", nkeys)
			// redis is each key's value; announced the latest value an
			// invalidation has returned for.
			var redis, announced [nkeys]atomic.Int64
			ops := stressOps(100000, 20000)
			var done atomic.Bool
			var stale atomic.Int64
			var writers, readers sync.WaitGroup
			for range 2 {
				writers.Go(func() {
					for i := 0; !done.Load(); i++ {
						j := rand.IntN(nkeys)
						v := redis[j].Add(1)
						if i%500 == 499 {
							c.invalidateAll() // tracking lost: every key may have changed
						} else {
							c.invalidate(ks[j].h)
						}
						for a := announced[j].Load(); a < v && !announced[j].CompareAndSwap(a, v); a = announced[j].Load() {
						}
						if i%2 == 0 {
							runtime.Gosched() // let the readers fill in between
						}
					}
				})
			}
			for range 4 {
				readers.Go(func() {
					for i := range ops {
						j := rand.IntN(nkeys)
						k := ks[j]
						a := announced[j].Load()
						if pod, ok := lookup(c, k); ok {
							if int64(pod) < a && stale.Add(1) <= 5 {
								t.Errorf("key %d: got pod %d after the invalidation of %d returned", j, pod, a)
							}
							continue
						}
						tok := c.token(k.h)
						pod := int(redis[j].Load())
						if i%2 == 0 {
							runtime.Gosched() // a slow Redis read
						}
						c.put(k.h, svc, k.uid, pod, tok)
						if i%97 == 0 {
							c.remove(k.h, "ns", "room", k.uid)
						}
					}
				})
			}
			readers.Wait()
			done.Store(true)
			writers.Wait()
			for j, k := range ks {
				if pod, ok := lookup(c, k); ok && int64(pod) != redis[j].Load() {
					t.Errorf("key %d: cached pod %d, Redis has %d", j, pod, redis[j].Load())
				}
			}
			t.Logf("%d stale reads; %+v", stale.Load(), c.stats())
			checkSlots(t, c)
		})
	}
}

func TestCacheGetAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, ev := range []Eviction{EvictAdaptive, EvictLRU, EvictLFU, EvictTTL} {
		c := newTestCache(t, CacheConfig{Eviction: ev})
		svc := testService("ns", "room")
		short, long, absent := newKey(svc, "user-1234"), newKey(svc, strings.Repeat("u", 64)), newKey(svc, "nobody")
		fill(t, c, short, 1)
		fill(t, c, long, 2)
		for _, k := range []testKey{short, long, absent} {
			if n := testing.AllocsPerRun(1000, func() { lookup(c, k) }); n != 0 {
				t.Errorf("%v: get(%q) allocates %v times", ev, k.uid[:min(len(k.uid), 12)], n)
			}
		}
	}
	// Dropping an expired entry allocates nothing either.
	synctest.Test(t, func(t *testing.T) {
		c := newTestCache(t, CacheConfig{MaxEntries: 2000, TTL: time.Second})
		ks := fillKeys(t, c, testService("ns", "room"), "u", 1001)
		advance(time.Second)
		i := 0
		if n := testing.AllocsPerRun(1000, func() { lookup(c, ks[i]); i++ }); n != 0 {
			t.Errorf("get of an expired entry allocates %v times", n)
		}
		if st := c.stats(); st.Expired != 1001 {
			t.Errorf("%d expired, want 1001", st.Expired)
		}
	})
}

func TestCacheMemoryPerEntry(t *testing.T) {
	if testing.Short() && raceEnabled {
		t.Skip("filling a million entries takes about 10s under the race detector")
	}
	const n = 1_000_000
	start := time.Now()
	svc := testService("ns", "room")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := newTestCache(t, CacheConfig{MaxEntries: n})
	for i := range n {
		uid := fmt.Sprintf("user%08d", i) // 12 bytes; the cache keeps a copy
		c.set(keyHash(svc.hash, uid), svc, uid, i%64)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if c.len() != n {
		t.Fatalf("len = %d, want %d", c.len(), n)
	}
	perEntry := float64(after.HeapAlloc-before.HeapAlloc) / n
	runtime.KeepAlive(c)
	t.Logf("%.1f heap bytes per entry (12-byte uids, %d entries, filled in %v)", perEntry, n, time.Since(start).Round(time.Millisecond))
	if perEntry > 128 {
		t.Fatalf("%.1f bytes per entry, want ≤ 128", perEntry)
	}
}

// BenchmarkCacheGet reads 1,000,000 cached links by uniform and Zipf(1.1)
// key streams: the cache, computing the key hash as the client does; a
// read-only map keyed by the concatenated key, as a floor; and a sync.Map
// keyed by fmt.Sprintf, as the old Go port did.
func BenchmarkCacheGet(b *testing.B) {
	const (
		n    = 1_000_000
		seqN = 1 << 20
		ns   = "prod"
		name = "room"
	)
	clk := clock.New(0)
	b.Cleanup(clk.Stop)
	c := newLinkCache(CacheConfig{MaxEntries: n, TTL: time.Hour}, clk)
	svc := testService(ns, name)
	uids := make([]string, n)
	flatKeys := make([]string, n)
	flat := make(map[string]int, n)
	var sm sync.Map
	for i := range uids {
		uid := fmt.Sprintf("user%08d", i)
		uids[i] = uid
		c.set(keyHash(svc.hash, uid), svc, uid, i%64)
		flatKeys[i] = ns + ":" + uid + ":" + name
		flat[flatKeys[i]] = i % 64
		sm.Store(fmt.Sprintf("%s:%s:%s", ns, uid, name), i%64)
	}
	r := rand.New(rand.NewPCG(1, 2))
	perm := r.Perm(n) // Zipf ranks to uids, so hot keys are spread out
	zipf := rand.NewZipf(r, 1.1, 1, n-1)
	seqs := []struct {
		name string
		seq  []uint32
	}{{"uniform", make([]uint32, seqN)}, {"zipf", make([]uint32, seqN)}}
	for i := range seqN {
		seqs[0].seq[i] = uint32(r.IntN(n))
		seqs[1].seq[i] = uint32(perm[zipf.Uint64()])
	}
	impls := []struct {
		name string
		get  func(i uint32) int
	}{
		{"cache", func(i uint32) int {
			uid := uids[i]
			pod, _, _ := c.get(keyHash(serviceHash(ns, name), uid), ns, name, uid)
			return pod
		}},
		{"map", func(i uint32) int { return flat[flatKeys[i]] }},
		{"sync.Map", func(i uint32) int {
			v, _ := sm.Load(fmt.Sprintf("%s:%s:%s", ns, uids[i], name))
			return v.(int)
		}},
	}
	for _, s := range seqs {
		for _, impl := range impls {
			b.Run(s.name+"/"+impl.name, func(b *testing.B) {
				b.ReportAllocs()
				sum, j := 0, 0
				for b.Loop() {
					sum += impl.get(s.seq[j&(seqN-1)])
					j++
				}
				benchSink.Add(int64(sum))
			})
			b.Run(s.name+"/"+impl.name+"/parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					sum, j := 0, rand.IntN(seqN)
					for pb.Next() {
						sum += impl.get(s.seq[j&(seqN-1)])
						j++
					}
					benchSink.Add(int64(sum))
				})
			})
		}
	}
	if st := c.stats(); st.Misses != 0 {
		b.Fatalf("%d cache misses", st.Misses)
	}
}

// BenchmarkCachePut times what a cold batch does per uid it read: put a
// new entry into a table much larger than the processor's caches, its slot
// prefetched by chunk as the batch does, then remove it (as an invalidation
// would). ns/put and ns/remove are each half of the loop.
func BenchmarkCachePut(b *testing.B) {
	const (
		n     = 10_000
		other = 200_000 // entries that stay, so that the table is large
	)
	clk := clock.New(0)
	b.Cleanup(clk.Stop)
	c := newLinkCache(CacheConfig{MaxEntries: 1 << 20, TTL: time.Hour}, clk)
	svc := testService("ns", "room")
	for i := range other {
		uid := "other" + strconv.Itoa(i)
		c.set(keyHash(svc.hash, uid), svc, uid, i%7)
	}
	uids := make([]string, n)
	hs := make([]uint64, n)
	for i := range uids {
		uids[i] = "batch" + strconv.Itoa(i)
		hs[i] = keyHash(svc.hash, uids[i])
	}
	var put, del time.Duration
	for b.Loop() {
		t0 := time.Now()
		for lo := 0; lo < n; lo += batchChunk {
			hi := min(lo+batchChunk, n)
			c.prefetch(hs[lo:hi])
			for i := lo; i < hi; i++ {
				c.put(hs[i], svc, uids[i], i%7, c.token(hs[i]))
			}
		}
		t1 := time.Now()
		for lo := 0; lo < n; lo += batchChunk {
			hi := min(lo+batchChunk, n)
			c.prefetch(hs[lo:hi])
			for i := lo; i < hi; i++ {
				c.remove(hs[i], svc.ns, svc.name, uids[i])
			}
		}
		put += t1.Sub(t0)
		del += time.Since(t1)
	}
	if c.len() != other {
		b.Fatalf("%d entries after the loop, want %d", c.len(), other)
	}
	b.ReportMetric(float64(put.Nanoseconds())/float64(b.N*n), "ns/put")
	b.ReportMetric(float64(del.Nanoseconds())/float64(b.N*n), "ns/remove")
}

var benchSink atomic.Int64

// TestCacheTableConsistentReads races lock-free readers against writers
// that replace, delete, grow and clear the table, with several keys forced
// onto each hash and both inline and long uids: a hit must always return a
// pod that was stored for the very key looked up (pods encode their key),
// never a mix of two entries or another key's pod.
func TestCacheTableConsistentReads(t *testing.T) {
	const (
		nkeys   = 96
		nhashes = 24 // four keys per hash
	)
	c := newTestCache(t, CacheConfig{MaxEntries: 16})
	svcs := []*service{testService("ns", "room"), testService("ns", "chat")}
	type key struct {
		svc *service
		uid string
		h   uint64
	}
	ks := make([]key, nkeys)
	for i := range ks {
		uid := "u" + strconv.Itoa(i)
		if i%3 == 0 {
			uid += strings.Repeat("-long", 8) // past the inline bytes
		}
		ks[i] = key{svcs[i%2], uid, uint64(i%nhashes) * 0x9E3779B97F4A7C15}
	}
	ops := stressOps(200000, 30000)
	var done atomic.Bool
	var bad, hits atomic.Int64
	var writers, readers sync.WaitGroup
	for w := range 2 {
		writers.Go(func() {
			for i := 0; !done.Load(); i++ {
				j := rand.IntN(nkeys)
				k := ks[j]
				switch r := rand.IntN(100); {
				case r < 70:
					c.set(k.h, k.svc, k.uid, j*1000+i%1000)
				case r < 85:
					c.put(k.h, k.svc, k.uid, j*1000+i%1000, c.token(k.h))
				case r < 95:
					c.remove(k.h, k.svc.ns, k.svc.name, k.uid)
				case r < 99:
					c.invalidate(k.h)
				default:
					if w == 0 && i%50 == 0 {
						c.invalidateAll()
					}
				}
			}
		})
	}
	for range 3 {
		readers.Go(func() {
			for range ops {
				j := rand.IntN(nkeys)
				k := ks[j]
				pod, svc, ok := c.get(k.h, k.svc.ns, k.svc.name, k.uid)
				if !ok {
					continue
				}
				hits.Add(1)
				if pod/1000 != j || svc != k.svc {
					if bad.Add(1) <= 5 {
						t.Errorf("key %d (%q): got pod %d of service %q", j, k.uid, pod, svc.name)
					}
				}
			}
		})
	}
	readers.Wait()
	done.Store(true)
	writers.Wait()
	if hits.Load() == 0 {
		t.Fatal("no reader ever hit")
	}
	t.Logf("%d hits, %d wrong; %+v", hits.Load(), bad.Load(), c.stats())
	checkSlots(t, c)
}

// TestCacheTableGrowsUnderReads: readers keep finding every stored key
// while writers add keys, so that every shard is rebuilt several times
// under them; a key stored before a reader looks must be found.
func TestCacheTableGrowsUnderReads(t *testing.T) {
	const n = 20000
	c := newTestCache(t, CacheConfig{MaxEntries: 4 * n})
	svc := testService("ns", "room")
	ks := newKeys(svc, "user-", n)
	var stored atomic.Int64 // ks[:stored] are in the cache
	var readers sync.WaitGroup
	var missed atomic.Int64
	for range 2 {
		readers.Go(func() {
			for stored.Load() < n {
				m := stored.Load()
				if m == 0 {
					continue
				}
				j := rand.IntN(int(m))
				if pod, ok := lookup(c, ks[j]); !ok || pod != j {
					if missed.Add(1) <= 5 {
						t.Errorf("key %d stored before the lookup: got %d, %v", j, pod, ok)
					}
				}
			}
		})
	}
	for j, k := range ks {
		c.set(k.h, svc, k.uid, j)
		stored.Store(int64(j + 1))
	}
	readers.Wait()
	if got := c.len(); got != n {
		t.Fatalf("len = %d, want %d", got, n)
	}
	checkSlots(t, c)
}

// TestCacheTableReclaimsTombstones: once every entry is deleted, in any
// order, no slot is left a tombstone, so a shard is not rebuilt for
// deletions alone.
func TestCacheTableReclaimsTombstones(t *testing.T) {
	c := newTestCache(t, CacheConfig{MaxEntries: 5000})
	svc := testService("ns", "room")
	ks := newKeys(svc, "u", 3000)
	for round := range 3 {
		for i, k := range ks {
			fill(t, c, k, i)
		}
		for _, i := range rand.Perm(len(ks)) {
			c.invalidate(ks[i].h)
		}
		checkSlots(t, c)
		for i := range c.t.shards {
			if sh := &c.t.shards[i]; sh.used != 0 || sh.live != 0 {
				t.Fatalf("round %d: shard %d has %d used slots, %d live, after every entry was deleted", round, i, sh.used, sh.live)
			}
		}
	}
}

// TestCacheTableRemoveStaleRef: a ref taken before its shard's array was
// replaced names a frozen copy of the slot; removing by it is refused and
// changes nothing, although its index names another live entry in the new
// array, which a remove by index alone would delete.
func TestCacheTableRemoveStaleRef(t *testing.T) {
	tb := newTable(1)
	sh := &tb.shards[0]
	svc := testService("ns", "room")
	hash := func(i int) uint64 { return uint64(i) << 32 } // all home at slot 0
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i := range 6 {
		e := makeCacheEntry(svc, "u"+strconv.Itoa(i), int32(i), 1)
		sh.insert(hash(i), &e, 0) // slot i
	}
	if r, ok := sh.find(hash(1)); !ok || !sh.remove(r) {
		t.Fatal("removing entry 1 failed")
	}
	stale, ok := sh.find(hash(3))
	if !ok || stale.i != 3 {
		t.Fatalf("entry 3 found %v at slot %d, want slot 3", ok, stale.i)
	}
	sh.rebuild(len(stale.a.slots)) // entries 0, 2, 3, 4, 5 in slots 0-4
	if got := sh.arr.Load().slots[3].h.Load(); got != hash(4) {
		t.Fatalf("slot 3 of the new array holds hash %#x, want entry 4's", got)
	}
	if sh.remove(stale) {
		t.Fatal("remove by a ref to the replaced array was not refused")
	}
	for _, i := range []int{0, 2, 3, 4, 5} {
		if _, ok := sh.find(hash(i)); !ok {
			t.Errorf("entry %d is gone", i)
		}
	}
	if sh.live != 5 || sh.used != 5 {
		t.Errorf("%d live, %d used; want 5, 5", sh.live, sh.used)
	}
	// A ref to the current array removes once, then is refused.
	r, _ := sh.find(hash(3))
	if !sh.remove(r) || sh.remove(r) {
		t.Error("remove by a current ref: want done once, then refused")
	}
}
