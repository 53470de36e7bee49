package benchmarks

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/maypok86/otter/v2"
	gocache "github.com/patrickmn/go-cache"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/testkit"
	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

// The link cache: a lookup of (namespace, uid, service) → pod, through our
// engine.Client and through the maps a user would pick instead:
//   - sync.Map, keyed by the concatenated key;
//   - otter/v2 (W-TinyLFU), ristretto/v2 (TinyLFU admission, sampled LFU
//     eviction): the bounded caches;
//   - go-cache (one RWMutex around a map, no size bound): what the old design used.
//
// Peers get their most efficient natural key: "ns:uid:svc" built in a reused
// buffer, looked up through a string view (no allocation where the peer
// allows it). Ours is ComputeLinkedPod's cache hit, which also checks that the
// pod is still routable, work the peers do not do.
//
// BenchmarkCacheHit rows: stream=<zipf0.9|zipf1.1>/mode=<single|parallel>/impl=<...>,
// every key cached (1,048,576 users), so every lookup is a hit.
// BenchmarkHitRatio rows: stream=<zipf0.9|zipf1.1|scan>/size=<1pct|10pct>/impl=<...>:
// a fresh cache of 1% or 10% of the key space replays the stream, filling on
// each miss; hit% is the share of hits. sync.Map and go-cache have no bound,
// so they have no hit-ratio rows; impl=unbounded is the ceiling (only first
// accesses miss).
//
// BenchmarkCacheVersus rows: stream=<zipf0.9|zipf1.1>/mode=<single|parallel>,
// the same hits with every implementation in memory, timed in alternating
// turns: <peer>/ours and fastest/ours.
//
// Goals (the issue's), judged by TestGoals on the same run:
//   - a cache hit at least as fast as the fastest peer, on every stream, single
//     and parallel (fastest/ours of BenchmarkCacheVersus, median of its runs,
//     at least 1), with 0 allocs (BenchmarkCacheHit's rows of ours);
//   - the adaptive policy (the default) within 5 points of otter's hit ratio
//     on every stream at both sizes.

const (
	hitUsers  = 1 << 20 // users cached for BenchmarkCacheHit
	hitStream = 1 << 22 // lookups in a hit stream, cycled
	benchNS   = "bench"
	benchSvc  = "room"
	benchPods = 16

	ratioKeys   = 200_000   // the key space of the hit-ratio streams
	ratioStream = 1_000_000 // accesses per hit-ratio replay
)

var (
	hitStreams   = []string{"zipf0.9", "zipf1.1"}
	ratioStreams = []string{"zipf0.9", "zipf1.1", "scan"}
	ratioSizes   = []struct {
		name    string
		entries int
	}{{"1pct", ratioKeys / 100}, {"10pct", ratioKeys / 10}}
)

var _ = addGoals(func() []goal {
	var gs []goal
	for _, s := range hitStreams {
		for _, mode := range []string{"single", "parallel"} {
			row := func(impl string) string { return "CacheHit/stream=" + s + "/mode=" + mode + "/impl=" + impl }
			gs = append(gs,
				ratioAtLeast("cache hit vs fastest peer, "+s+", "+mode, 1, "fastest/ours", "CacheVersus/stream="+s+"/mode="+mode),
				noAllocs("cache hit allocations, "+s+", "+mode, row("ours")))
		}
	}
	for _, s := range ratioStreams {
		for _, size := range ratioSizes {
			row := func(impl string) string { return "HitRatio/stream=" + s + "/size=" + size.name + "/impl=" + impl }
			gs = append(gs, pointsWithin("hit ratio (adaptive) vs otter, "+s+", "+size.name, 5, "hit%", row("ours"), row("otter")))
		}
	}
	return gs
}()...)

// slowTiming keeps published pod states alive for three hours: no server
// heartbeats here, the states are written once.
var slowTiming = engine.Timing{Heartbeat: time.Hour, Refresh: time.Hour}

// newClient returns an engine client on the embedded Redis with benchPods
// Ready pods, and a release that closes it and its store; tb's end releases
// it too, if not done before.
func newClient(tb testing.TB, cache engine.CacheConfig) (release func(), _ *engine.Client) {
	tb.Helper()
	st, err := embedded.Dial(store.DialConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for p := range benchPods {
		if _, err := st.SetServiceState(ctx, benchNS, benchSvc, p, 0, store.Ready); err != nil {
			tb.Fatal(err)
		}
	}
	cache.TTL = time.Hour
	c, err := engine.NewClient(engine.ClientConfig{Store: st, Timing: slowTiming, TempLinkTTL: 2 * time.Hour, Cache: cache})
	if err != nil {
		tb.Fatal(err)
	}
	release = sync.OnceFunc(func() { c.Close(); st.Close() })
	tb.Cleanup(release)
	return release, c
}

// appendKey appends the peers' key of user u, "ns:uid:svc", to buf.
func appendKey(buf []byte, u int32) []byte {
	buf = append(buf, benchNS+":"...)
	buf = testkit.AppendUID(buf, u)
	return append(buf, ":"+benchSvc...)
}

// view is a string over b without a copy, for lookups that do not keep the key.
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// hitImpl is one implementation of the lookup of user u; buf is the
// caller's scratch buffer. fill builds it with every user cached and returns
// the lookup and a release of what it holds: the rows run one implementation
// at a time, so that the heap holds one cache of a million users, not five
// (testing forces a garbage collection before every row, and its cost grows
// with the live heap).
type hitImpl struct {
	name string
	fill func(b *testing.B) (get func(buf []byte, u int32) (pod int, ok bool), release func())
}

// fillKeys calls set for every user with the peers' key and pod.
func fillKeys(set func(key string, pod int32)) {
	var buf []byte
	for u := range int32(hitUsers) {
		set(string(appendKey(buf[:0], u)), u%benchPods)
	}
}

var hitImpls = []hitImpl{
	{"ours", func(b *testing.B) (func([]byte, int32) (int, bool), func()) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		closeClient, c := newClient(b, engine.CacheConfig{MaxEntries: hitUsers})
		var buf []byte
		for u := range int32(hitUsers) {
			if err := c.SetCache(ctx, benchNS, string(testkit.AppendUID(buf[:0], u)), benchSvc, int(u%benchPods)); err != nil {
				b.Fatal(err)
			}
		}
		return func(buf []byte, u int32) (int, bool) {
			pod, err := c.ComputeLinkedPod(ctx, benchNS, view(testkit.AppendUID(buf, u)), benchSvc)
			return pod, err == nil
		}, func() { closeClient(); cancel() }
	}},
	{"syncmap", func(b *testing.B) (func([]byte, int32) (int, bool), func()) {
		var sm sync.Map
		fillKeys(func(k string, pod int32) { sm.Store(k, pod) })
		return func(buf []byte, u int32) (int, bool) {
			v, ok := sm.Load(view(appendKey(buf, u)))
			if !ok {
				return -1, false
			}
			return int(v.(int32)), true
		}, func() { sm.Clear() }
	}},
	{"otter", func(b *testing.B) (func([]byte, int32) (int, bool), func()) {
		ot := otter.Must(&otter.Options[string, int32]{MaximumSize: 2 * hitUsers, InitialCapacity: hitUsers})
		fillKeys(func(k string, pod int32) { ot.Set(k, pod) })
		return func(buf []byte, u int32) (int, bool) {
			v, ok := ot.GetIfPresent(view(appendKey(buf, u)))
			return int(v), ok
		}, func() { ot.InvalidateAll() }
	}},
	{"ristretto", func(b *testing.B) (func([]byte, int32) (int, bool), func()) {
		rc, err := ristretto.NewCache(&ristretto.Config[string, int32]{
			NumCounters: 10 * hitUsers, MaxCost: 2 * hitUsers, BufferItems: 64, IgnoreInternalCost: true,
		})
		if err != nil {
			b.Fatal(err)
		}
		fillKeys(func(k string, pod int32) {
			for !rc.Set(k, pod, 1) {
				rc.Wait() // its set buffer was full: the set was dropped
			}
		})
		rc.Wait()
		// Ristretto applies sets asynchronously and may still drop some: put
		// back any it lost, so that every lookup is a hit for it too.
		var buf []byte
		for range 10 {
			lost := 0
			for u := range int32(hitUsers) {
				if key := appendKey(buf[:0], u); !has(rc, view(key)) {
					lost++
					rc.Set(string(key), u%benchPods, 1)
				}
			}
			rc.Wait()
			if lost == 0 {
				break
			}
		}
		return func(buf []byte, u int32) (int, bool) {
			v, ok := rc.Get(view(appendKey(buf, u)))
			return int(v), ok
		}, rc.Close
	}},
	{"gocache", func(b *testing.B) (func([]byte, int32) (int, bool), func()) {
		gc := gocache.New(gocache.NoExpiration, 0) // no janitor goroutine
		fillKeys(func(k string, pod int32) { gc.Set(k, pod, gocache.NoExpiration) })
		return func(buf []byte, u int32) (int, bool) {
			v, ok := gc.Get(view(appendKey(buf, u)))
			if !ok {
				return -1, false
			}
			return int(v.(int32)), true
		}, gc.Flush
	}},
}

// has reports whether ristretto holds key.
func has(rc *ristretto.Cache[string, int32], key string) bool {
	_, ok := rc.Get(key)
	return ok
}

// BenchmarkCacheHit times a cache hit of each implementation on the same
// key streams, from one goroutine and from GOMAXPROCS; a miss fails the row.
func BenchmarkCacheHit(b *testing.B) {
	streams := map[string][]int32{
		"zipf0.9": zipfStream(0.9, hitUsers, hitStream, 1),
		"zipf1.1": zipfStream(1.1, hitUsers, hitStream, 2),
	}
	for _, im := range hitImpls {
		get, release := im.fill(b)
		warmUp(b, get, streams)
		for _, s := range hitStreams {
			seq := streams[s]
			for _, mode := range []string{"single", "parallel"} {
				b.Run(fmt.Sprintf("stream=%s/mode=%s/impl=%s", s, mode, im.name), func(b *testing.B) {
					b.ReportAllocs()
					if mode == "single" {
						buf := make([]byte, 0, 64)
						sum := 0
						for i := 0; b.Loop(); i++ {
							pod, ok := get(buf[:0], seq[i&(hitStream-1)])
							if !ok {
								b.Fatalf("user %d missed", seq[i&(hitStream-1)])
							}
							sum += pod
						}
						sink(sum)
						return
					}
					b.RunParallel(func(pb *testing.PB) {
						buf := make([]byte, 0, 64)
						i, sum := rand.IntN(hitStream), 0
						for pb.Next() {
							pod, ok := get(buf[:0], seq[i&(hitStream-1)])
							if !ok {
								b.Errorf("user %d missed", seq[i&(hitStream-1)])
								return
							}
							sum += pod
							i++
						}
						sink(sum)
					})
				})
			}
		}
		release()
	}
}

// versusSlice is how many lookups each implementation makes per turn in
// BenchmarkCacheVersus (per goroutine in parallel mode), after as many
// untimed ones: tens of milliseconds.
const versusSlice = 1 << 17

// BenchmarkCacheVersus times the same hits as BenchmarkCacheHit with every
// implementation filled at once and timed in alternating turns, the first of
// each iteration rotating: a turn is versusSlice untimed lookups, then
// versusSlice timed ones further along the same stream. It reports each
// one's time per lookup as <impl>-ns/op, each peer's time over ours as
// <peer>/ours, and fastest/ours, the smallest of those, which the cache-hit
// goal is judged on (its median over the runs; above 1: ours is faster than
// every peer). Rows: stream=<zipf0.9|zipf1.1>/mode=<single|parallel>.
//
// Why turns: BenchmarkCacheHit's rows of one implementation run minutes
// after another's, and this shared machine's speed moves that much in
// minutes. In two make bench runs of the same hour, ours measured 66.75 and
// 120.4 ns/op at best on rows where ristretto's best was 59.11 and 109.4,
// while a brief check in between had ours at 107.7 and ristretto at 152.2
// on the latter. Turns a fraction of a second apart see the same machine.
//
// Why the untimed lookups: a turn starts with the processor caches holding
// the previous implementation's memory. Timed from its first lookup, a turn
// of 65,536 measured the peers from 1% faster to 43% slower than their own
// rows in the same run (go-cache on zipf1.1 single: 191.9 against 135.9
// ns/op), and ours from 17% faster to 28% slower: that cold start favours
// whoever touches fewer cache lines per lookup, which is not what the rows
// compare. The untimed half brings each implementation's hot keys back first.
func BenchmarkCacheVersus(b *testing.B) {
	streams := map[string][]int32{
		"zipf0.9": zipfStream(0.9, hitUsers, hitStream, 1),
		"zipf1.1": zipfStream(1.1, hitUsers, hitStream, 2),
	}
	gets := make([]func([]byte, int32) (int, bool), len(hitImpls))
	for i, im := range hitImpls {
		get, release := im.fill(b)
		defer release()
		warmUp(b, get, streams)
		gets[i] = get
	}
	procs := runtime.GOMAXPROCS(0)
	for _, s := range hitStreams {
		seq := streams[s]
		for _, mode := range []string{"single", "parallel"} {
			b.Run("stream="+s+"/mode="+mode, func(b *testing.B) {
				// run times versusSlice lookups through get (from each
				// goroutine in parallel mode) from position from of the
				// stream; slice is one turn: run untimed, then timed further on.
				run := func(get func([]byte, int32) (int, bool), from int) time.Duration {
					if mode == "single" {
						t0 := time.Now()
						hitRun(b, get, seq, from, versusSlice)
						return time.Since(t0)
					}
					var wg sync.WaitGroup
					t0 := time.Now()
					for p := range procs {
						wg.Go(func() { hitRun(b, get, seq, from+p*hitStream/procs, versusSlice) })
					}
					wg.Wait()
					return time.Since(t0)
				}
				slice := func(get func([]byte, int32) (int, bool), from int) time.Duration {
					run(get, from) // untimed: the caches warm to this implementation
					return run(get, from+versusSlice)
				}
				spent := make([]time.Duration, len(hitImpls))
				for i := 0; b.Loop(); i++ {
					from := rand.IntN(hitStream)
					for k := range hitImpls {
						j := (k + i) % len(hitImpls)
						spent[j] += slice(gets[j], from)
					}
				}
				lookups := float64(b.N) * versusSlice
				if mode == "parallel" {
					lookups *= float64(procs)
				}
				fastest := math.Inf(1)
				for j, im := range hitImpls {
					b.ReportMetric(float64(spent[j].Nanoseconds())/lookups, im.name+"-ns/op")
					if j > 0 {
						r := float64(spent[j]) / float64(spent[0])
						b.ReportMetric(r, im.name+"/ours")
						fastest = min(fastest, r)
					}
				}
				b.ReportMetric(fastest, "fastest/ours")
				b.ReportMetric(float64(spent[0].Nanoseconds())/lookups, "ns/op")
			})
		}
	}
}

// hitRun looks up n users of seq through get from position from on (cycling),
// failing b on a miss.
func hitRun(b *testing.B, get func([]byte, int32) (int, bool), seq []int32, from, n int) {
	buf := make([]byte, 0, 64)
	sum := 0
	for i := from; i < from+n; i++ {
		u := seq[i&(hitStream-1)]
		pod, ok := get(buf[:0], u)
		if !ok {
			b.Errorf("user %d missed", u)
			return
		}
		sum += pod
	}
	sink(sum)
}

// hitWarmUp is how many lookups of each stream run untimed after a fill.
const hitWarmUp = 1 << 20

// warmUp readies a freshly filled implementation for timing, the same way
// for every one: a first pass over each stream takes the page faults and
// TLB misses of memory touched for the first time (a peer's first 100 ms
// run measured 2.7x its later ones), and the memory the fill let go of is
// collected and returned to the OS now rather than by the background
// scavenger during the rows.
func warmUp(b *testing.B, get func([]byte, int32) (int, bool), streams map[string][]int32) {
	buf := make([]byte, 0, 64)
	for _, s := range hitStreams {
		for _, u := range streams[s][:hitWarmUp] {
			if _, ok := get(buf[:0], u); !ok {
				b.Fatalf("user %d missed while warming up", u)
			}
		}
	}
	debug.FreeOSMemory()
}

var sinkMu sync.Mutex
var sinkSum int

// sink keeps the compiler from dropping the lookups' results.
func sink(v int) {
	sinkMu.Lock()
	sinkSum += v
	sinkMu.Unlock()
}

// simCache is a bounded cache replaying a stream: access looks key up and,
// on a miss, fills it; it reports the hit.
type simCache interface {
	access(key string, u int32) bool
}

// simImpl builds a fresh simCache of the given size.
type simImpl struct {
	name string
	make func(tb testing.TB, entries int) simCache
}

var simImpls = []simImpl{
	{"ours", func(tb testing.TB, n int) simCache { return newOursSim(tb, n, engine.EvictAdaptive) }},
	{"ours_lru", func(tb testing.TB, n int) simCache { return newOursSim(tb, n, engine.EvictLRU) }},
	{"ours_lfu", func(tb testing.TB, n int) simCache { return newOursSim(tb, n, engine.EvictLFU) }},
	{"otter", func(tb testing.TB, n int) simCache {
		return otterSim{otter.Must(&otter.Options[string, int32]{MaximumSize: n})}
	}},
	{"ristretto", func(tb testing.TB, n int) simCache {
		rc, err := ristretto.NewCache(&ristretto.Config[string, int32]{
			NumCounters: 10 * int64(n), MaxCost: int64(n), BufferItems: 64, IgnoreInternalCost: true,
		})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(rc.Close)
		return ristrettoSim{rc}
	}},
	{"unbounded", func(testing.TB, int) simCache { return unboundedSim{} }},
}

// oursSim drives an engine.Client's cache through its public API: a lookup
// in the cache (GetLinkedInCache), and on a miss SetCache, as a miss that
// read Redis would; the client counts the hits.
type oursSim struct {
	c   *engine.Client
	ctx context.Context
}

func newOursSim(tb testing.TB, entries int, ev engine.Eviction) oursSim {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	tb.Cleanup(cancel)
	_, c := newClient(tb, engine.CacheConfig{MaxEntries: entries, Eviction: ev})
	return oursSim{c, ctx}
}

func (s oursSim) access(uid string, u int32) bool {
	if s.c.GetLinkedInCache(benchNS, uid, benchSvc) != engine.NoPod {
		return true
	}
	if err := s.c.SetCache(s.ctx, benchNS, uid, benchSvc, int(u%benchPods)); err != nil {
		panic(err)
	}
	return false
}

type otterSim struct{ c *otter.Cache[string, int32] }

func (s otterSim) access(key string, u int32) bool {
	if _, ok := s.c.GetIfPresent(key); ok {
		return true
	}
	s.c.Set(key, u%benchPods)
	return false
}

type ristrettoSim struct {
	c *ristretto.Cache[string, int32]
}

func (s ristrettoSim) access(key string, u int32) bool {
	if _, ok := s.c.Get(key); ok {
		return true
	}
	s.c.Set(key, u%benchPods, 1)
	return false
}

// unboundedSim never evicts: only first accesses miss. It is the ceiling.
type unboundedSim map[string]struct{}

func (s unboundedSim) access(key string, _ int32) bool {
	if _, ok := s[key]; ok {
		return true
	}
	s[key] = struct{}{}
	return false
}

// BenchmarkHitRatio replays each stream through a fresh cache of each size
// per iteration (run it with -benchtime 1x: one replay is 1,000,000
// accesses) and reports the share of hits as hit%. Keys are strings built
// once, so the replay measures the cache, not the formatting.
func BenchmarkHitRatio(b *testing.B) {
	streams := map[string][]int32{
		"zipf0.9": zipfStream(0.9, ratioKeys, ratioStream, 3),
		"zipf1.1": zipfStream(1.1, ratioKeys, ratioStream, 4),
		"scan":    scanStream(ratioKeys, ratioStream, 5),
	}
	uids := make([]string, 2*ratioKeys) // scans use [ratioKeys, 2·ratioKeys)
	for u := range uids {
		uids[u] = string(testkit.AppendUID(nil, int32(u)))
	}
	for _, s := range ratioStreams {
		seq := streams[s]
		for _, size := range ratioSizes {
			for _, im := range simImpls {
				b.Run(fmt.Sprintf("stream=%s/size=%s/impl=%s", s, size.name, im.name), func(b *testing.B) {
					hits, total := 0, 0
					for b.Loop() {
						c := im.make(b, size.entries)
						for _, u := range seq {
							if c.access(uids[u], u) {
								hits++
							}
						}
						total += len(seq)
					}
					b.ReportMetric(100*float64(hits)/float64(total), "hit%")
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(total), "ns/access")
				})
			}
		}
	}
}
