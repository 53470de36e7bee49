package benchmarks

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/internal/testkit"
	"github.com/stickyroute/stickyroute/store"
)

// The store: our link operations against the real standalone server (make
// bench and make bench-check start it) next to the same operations written
// plainly on go-redis, as a user without this library would: keys built with
// fmt.Sprintf, each atomic operation an EVAL of a short script per call, a
// batch lookup one GET per uid sent in one pipeline, its replies parsed and
// grouped by pod.
//
// BenchmarkStoreOp rows: op=<name>, a run of calls of each implementation per
// iteration from one goroutine, interleaved (see interleaved): ns/op is ours,
// goredis-ns/op theirs, goredis/ours the ratio (above 1: ours is faster).
// BenchmarkStoreConcurrent rows: op=<name>, 50 goroutines, alternating
// rounds. BenchmarkStoreBatch rows: uids=<1000|10000>, a run of batch lookups
// of each implementation per iteration, interleaved; goredis_mget is the same
// lookup as one MGET, which only a standalone server takes.
//
// Goal (the issue's): a batch lookup of 10,000 uids ≥ 3× faster than the
// go-redis version, judged on the median of the row's goredis/ours. What
// bounds ours is Redis's work per key and rueidis's writing of each key and
// parsing of each value, on 2 cores shared with the server: a raw socket
// writing the same MGETs and parsing the replies by hand took 79–89% of
// BatchGetLinkedPod's time, in turns of 10 (three runs). The single operations
// have no goal: both sides are one round trip to the same server, and their
// ratios show what each client adds, alone and under concurrency.

// The engine's path (uids=10000/path=engine rows: ours is
// engine.Client.BatchGetLinkedPod with nothing cached, every entry it puts
// forgotten before each call, untimed, as users call it on a cold cache; store
// is the store's batch above): goals ≥ 0.8× the store's keys/s, ≥ 1.5×
// go-redis's MGET and ≥ 3× its pipelined GETs. uids=10000/path=engine90: a
// client with 90% of the uids cached before each call (it forgets one in ten,
// untimed) against the store's batch of all of them, none cached (goal ≥ 2×),
// and against go-redis's MGET and GETs of all of them, which have no cache
// (no goal: what the engine's path gives a caller whose users are mostly
// cached, the common case).
//
// 2026-12-07, a fresh server, -benchtime 1s -count 5, quiet machine:
//   - engine: 0.70/0.75/0.59/0.74/0.73× the store, 1.15/1.37/1.36/1.08/1.18×
//     go-redis's MGET, 1.62/2.11/2.01/1.88/1.86× its GETs;
//   - enginebcast: 0.70/0.70/0.67/0.83/0.85×, 1.34/1.44/1.44/1.38/1.37×,
//     1.81/2.18/2.09/1.98/2.04×;
//   - engine90: 2.69/2.51/2.59/2.46/2.48× the store, 4.14/3.91/4.49/4.02/3.71×
//     go-redis's MGET, 5.85/5.83/6.71/5.95/6.04× its GETs;
//   - the store's own batch: 1.50–2.05× go-redis's MGET, 2.08–2.96× its GETs.
//
// So the cold engine batch misses its three goals, and the GETs one cannot
// be met on this machine: the store's batch, a part of the cold engine
// batch's work, is itself below 3× go-redis's GETs. BenchmarkBatchCPU (see
// cpu_test.go) says where the rest goes: the client and Redis share 2 cores
// and the call's time follows their CPU together; the default mode's
// tracking costs Redis about a millisecond more per 10,000 keys (CLIENT
// CACHING YES before each MGET, and Redis remembering every key read for
// the client), and the engine's cache work (a lookup before the read, a put
// after it) costs the client 2–3 ms. What was tried: reading the misses by
// chunks as the lookups find them, overlapped with the cache's work (0.56×
// the store before), puts with fewer locked stores
// (BenchmarkCachePut, 15% less a put), and all chunks sent at once after the
// lookups instead (no better: 7.5 against 7.1 ms a call in the same run).
// They are known misses with floors below what this machine measured, so
// that a regression still fails.
//
// uids=10000/path=enginebcast is the same cold batch on a store in
// broadcast mode (DialConfig.Broadcast), whose tracked read is a plain MGET
// with no per-key table in Redis: no goal, it measures that mode's side of
// the trade-off. Its tracked read costs what the store's batch does, but the
// engine's work per uid stays, and the two modes' rows overlap from run to
// run.
var _ = addGoals(
	ratioAtLeast("batch lookup of 10,000 uids vs go-redis pipelined GETs", 3,
		"goredis/ours", "StoreBatch/uids=10000"),
	ratioAtLeast("engine batch of 10,000 uids, none cached, vs the store's batch", 0.8,
		"store/ours", "StoreBatch/uids=10000/path=engine").knownMiss(0.45, "the tracked read costs Redis more per key, and the engine looks up and puts each uid"),
	ratioAtLeast("engine batch of 10,000 uids, none cached, vs go-redis MGET", 1.5,
		"goredis_mget/ours", "StoreBatch/uids=10000/path=engine").knownMiss(0.7, "as above"),
	ratioAtLeast("engine batch of 10,000 uids, none cached, vs go-redis pipelined GETs", 3,
		"goredis/ours", "StoreBatch/uids=10000/path=engine").knownMiss(1.1, "as above"),
	ratioAtLeast("engine batch of 10,000 uids, 90% cached, vs the store's batch", 2,
		"store/ours", "StoreBatch/uids=10000/path=engine90"),
)

const storePool = 1024 // uids the single operations cycle through

// Calls per turn in interleaved: a turn of each implementation lasts a
// millisecond or more (single operations take 30–100 µs, a batch of 10,000
// uids 2–12 ms), long enough that the switch's warm-up is paid once.
const (
	storeOpRun = 16
	batchRun   = 8
)

// Plain scripts, as a go-redis user would write them for the same contract
// (SPEC §4): KEYS[1] the link, KEYS[2] the uid's directory of persistent links.
const (
	// plainWrite writes the link, listed in the directory when persistent
	// (ARGV[3] -1) and unlisted when temporary; the writing scripts share it.
	plainWrite = `if ARGV[3] == '-1' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
`
	plainSet = `local prev = redis.call('GET', KEYS[1])
` + plainWrite + `return prev`
	plainTrySet = `local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[2] and redis.call('TTL', KEYS[1]) == -1 then
  return {0, cur}
end
` + plainWrite + `return {1, cur}`
	plainIfAbsent = `local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return ARGV[2]`
	plainReplace = `local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[4] then return {0, cur} end
` + plainWrite + `return {1, ARGV[2]}`
)

// storeEnv is both clients on the standalone server, one namespace.
type storeEnv struct {
	ours *store.Redis
	rdb  *redis.Client
	ns   string
	uids []string
}

func newStoreEnv(b *testing.B) *storeEnv {
	b.Helper()
	addrs := redistest.Addrs(b, redistest.Standalone)
	ours, err := store.Dial(store.DialConfig{Addrs: addrs})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ours.Close)
	rdb := redis.NewClient(&redis.Options{Addr: addrs[0]})
	b.Cleanup(func() { rdb.Close() })
	e := &storeEnv{ours: ours, rdb: rdb, ns: redistest.Namespace(b)}
	ctx := redistest.Ctx(b)
	for i := range storePool {
		uid := "user" + strconv.Itoa(i)
		e.uids = append(e.uids, uid)
		if _, err := ours.SetLinkedPod(ctx, e.ns, uid, benchSvc, i%benchPods, store.Persistent); err != nil {
			b.Fatal(err)
		}
	}
	return e
}

// plainLinkKey and plainDirKey are the wire keys (SPEC §3) as a plain user
// builds them; the benchmark's uids need no escaping.
func plainLinkKey(ns, uid, svc string) string { return fmt.Sprintf("sf:{%s:lk:%s}%s", ns, uid, svc) }
func plainDirKey(ns, uid string) string       { return fmt.Sprintf("sf:{%s:lk:%s}", ns, uid) }

// storeOp is one operation in both implementations; i picks the uid.
type storeOp struct {
	name          string
	ours, goredis func(ctx context.Context, e *storeEnv, i int) error
}

// pods are the decimal pod indexes, so that the plain version does not
// format them per call either.
var pods = func() (p [benchPods]string) {
	for i := range p {
		p[i] = strconv.Itoa(i)
	}
	return p
}()

var storeOps = []storeOp{
	{"GetLinkedPod",
		func(ctx context.Context, e *storeEnv, i int) error {
			_, err := e.ours.GetLinkedPod(ctx, e.ns, e.uids[i%storePool], benchSvc)
			return err
		},
		func(ctx context.Context, e *storeEnv, i int) error {
			v, err := e.rdb.Get(ctx, plainLinkKey(e.ns, e.uids[i%storePool], benchSvc)).Result()
			if err != nil {
				return err
			}
			_, err = strconv.Atoi(v)
			return err
		}},
	{"SetLinkedPod",
		func(ctx context.Context, e *storeEnv, i int) error {
			_, err := e.ours.SetLinkedPod(ctx, e.ns, e.uids[i%storePool], benchSvc, i%benchPods, store.Persistent)
			return err
		},
		func(ctx context.Context, e *storeEnv, i int) error {
			return ignoreNil(e.plainEval(ctx, plainSet, i, benchSvc, pods[i%benchPods], "-1").Err())
		}},
	{"TrySetLinkedPod",
		func(ctx context.Context, e *storeEnv, i int) error {
			_, err := e.ours.TrySetLinkedPod(ctx, e.ns, e.uids[i%storePool], benchSvc, i%benchPods, store.Persistent)
			return err
		},
		func(ctx context.Context, e *storeEnv, i int) error {
			return e.plainEval(ctx, plainTrySet, i, benchSvc, pods[i%benchPods], "-1").Err()
		}},
	{"SetLinkedPodIfAbsent",
		func(ctx context.Context, e *storeEnv, i int) error {
			_, err := e.ours.SetLinkedPodIfAbsent(ctx, e.ns, e.uids[i%storePool], benchSvc, 1, 60)
			return err
		},
		func(ctx context.Context, e *storeEnv, i int) error {
			return e.plainEval(ctx, plainIfAbsent, i, benchSvc, "1", "60").Err()
		}},
	{"ReplaceLinkedPod",
		func(ctx context.Context, e *storeEnv, i int) error {
			_, _, err := e.ours.ReplaceLinkedPod(ctx, e.ns, e.uids[i%storePool], benchSvc, i%benchPods, i%benchPods, store.Persistent)
			return err
		},
		func(ctx context.Context, e *storeEnv, i int) error {
			return e.plainEval(ctx, plainReplace, i, benchSvc, pods[i%benchPods], "-1", pods[i%benchPods]).Err()
		}},
}

// plainEval sends a plain script with EVAL on the i-th pooled uid's link and
// directory keys, as the go-redis side of every atomic operation does.
func (e *storeEnv) plainEval(ctx context.Context, script string, i int, args ...any) *redis.Cmd {
	uid := e.uids[i%storePool]
	return e.rdb.Eval(ctx, script, []string{plainLinkKey(e.ns, uid, benchSvc), plainDirKey(e.ns, uid)}, args...)
}

// ignoreNil treats a nil reply (no previous link) as success.
func ignoreNil(err error) error {
	if err == redis.Nil {
		return nil
	}
	return err
}

// interleaved runs the implementations in turns, each turn a run of calls
// of one implementation: one untimed call to warm it up, then run timed ones.
// The first implementation of a turn alternates between iterations. It
// reports each one's time per timed call as <name>-ns/op and its allocations
// (measured apart, before the timing) as <name>-allocs/op, and each peer's
// time over ours as <peer>/ours: a ratio taken in the same seconds, which a
// busy machine moves far less than either time. The first implementation is
// ours; ns/op is its time.
//
// Why runs and a warm-up call: a call that follows a pause or another
// client's burst starts cold. On this 2-core VM a raw socket writing the same
// 40 MGETs as BatchGetLinkedPod took 2.1–2.2 ms a call back to back, but
// 4.5–5.9 ms after a 5 ms sleep and 4.6–4.9 ms after 5 ms of spinning;
// alternated call by call with the go-redis batch it came out 2.49–2.88×
// faster than go-redis (four benchmark runs), and 3.29–3.79× in turns of 10
// calls (two runs; all on 2026-11-27). That fixed cost of the switch says
// nothing about either client and weighs most on the fastest; the warm-up
// call pays it, untimed, for every implementation alike.
func interleaved(b *testing.B, impls []namedCall, run int) {
	b.Helper()
	allocs := make([]float64, len(impls))
	for j, im := range impls {
		var err error
		allocs[j] = testing.AllocsPerRun(20, func() {
			if im.prep != nil {
				im.prep()
			}
			if e := im.call(); e != nil {
				err = e
			}
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	spent := make([]time.Duration, len(impls))
	for i := 0; b.Loop(); i++ {
		for k := range impls {
			j := (k + i) % len(impls)
			im := impls[j]
			if im.prep != nil {
				im.prep()
			}
			if err := im.call(); err != nil { // warm-up, untimed
				b.Fatal(err)
			}
			if im.prep != nil {
				for range run {
					im.prep()
					t0 := time.Now()
					if err := im.call(); err != nil {
						b.Fatal(err)
					}
					spent[j] += time.Since(t0)
				}
				continue
			}
			t0 := time.Now()
			for range run {
				if err := im.call(); err != nil {
					b.Fatal(err)
				}
			}
			spent[j] += time.Since(t0)
		}
	}
	calls := float64(b.N * run)
	for j, im := range impls {
		b.ReportMetric(allocs[j], im.name+"-allocs/op")
		b.ReportMetric(float64(spent[j].Nanoseconds())/calls, im.name+"-ns/op")
		if j > 0 {
			b.ReportMetric(float64(spent[j])/float64(spent[0]), im.name+"/ours")
		}
	}
	b.ReportMetric(float64(spent[0].Nanoseconds())/calls, "ns/op")
}

// namedCall is one implementation of a benchmarked call.
type namedCall struct {
	name string
	call func() error
	// prep, if set, runs before every call of this implementation, untimed
	// (it is in its allocs/op, which AllocsPerRun cannot separate).
	prep func()
}

// BenchmarkStoreOp times one round trip of each link operation, ours and
// go-redis's interleaved.
func BenchmarkStoreOp(b *testing.B) {
	e := newStoreEnv(b)
	ctx := benchCtx(b)
	for _, op := range storeOps {
		b.Run("op="+op.name, func(b *testing.B) {
			i, j := 0, 0
			interleaved(b, []namedCall{
				{"ours", func() error { i++; return op.ours(ctx, e, i) }, nil},
				{"goredis", func() error { j++; return op.goredis(ctx, e, j) }, nil},
			}, storeOpRun)
		})
	}
}

// BenchmarkStoreConcurrent runs two link operations from 50 goroutines, as a
// busy gateway does, in alternating rounds of ours and go-redis's (each round
// b.N/8 calls): ops/s each, and goredis/ours, their time ratio (above 1:
// ours is faster). No goal: it shows what each client does under concurrency,
// where rueidis pipelines every goroutine's commands on one connection and
// go-redis takes a pooled connection per call.
func BenchmarkStoreConcurrent(b *testing.B) {
	const workers, rounds = 50, 8
	e := newStoreEnv(b)
	ctx := benchCtx(b)
	// run does n calls of fn spread over the workers and returns the wall time.
	run := func(n int, fn func(ctx context.Context, e *storeEnv, i int) error) (time.Duration, error) {
		return testkit.Spread(workers, n, func(i int) error { return fn(ctx, e, i) })
	}
	for _, op := range storeOps {
		if op.name != "GetLinkedPod" && op.name != "TrySetLinkedPod" {
			continue
		}
		b.Run("op="+op.name, func(b *testing.B) {
			// Each call of this function with its b.N splits it into the
			// rounds (the classic loop: b.Loop cannot split its iterations).
			var ours, theirs time.Duration
			per := max(b.N/rounds, workers)
			for r := range rounds {
				first, second := op.ours, op.goredis
				if r%2 == 1 {
					first, second = second, first
				}
				d1, err := run(per, first)
				if err != nil {
					b.Fatal(err)
				}
				d2, err := run(per, second)
				if err != nil {
					b.Fatal(err)
				}
				if r%2 == 1 {
					d1, d2 = d2, d1
				}
				ours += d1
				theirs += d2
			}
			calls := float64(per * rounds)
			b.ReportMetric(calls/ours.Seconds(), "ours-ops/s")
			b.ReportMetric(calls/theirs.Seconds(), "goredis-ops/s")
			b.ReportMetric(float64(theirs)/float64(ours), "goredis/ours")
			b.ReportMetric(float64(ours.Nanoseconds())/calls, "ns/op")
		})
	}
}

// batchGoRedis is BatchGetLinkedPod written plainly on go-redis: one GET per
// uid in one pipeline, replies parsed and grouped by pod in input order.
func batchGoRedis(ctx context.Context, rdb *redis.Client, ns string, uids []string, svc string) (map[int][]string, error) {
	pipe := rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(uids))
	for i, uid := range uids {
		cmds[i] = pipe.Get(ctx, plainLinkKey(ns, uid, svc))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, err
	}
	groups := map[int][]string{}
	for i, c := range cmds {
		v, err := c.Result()
		if err == redis.Nil {
			continue
		}
		if err != nil {
			return nil, err
		}
		pod, err := strconv.Atoi(v)
		if err != nil {
			return nil, err
		}
		groups[pod] = append(groups[pod], uids[i])
	}
	return groups, nil
}

// batchGoRedisMGET is the same lookup as one MGET of every key, which only a
// standalone server accepts (a cluster refuses keys of different slots).
// It has no goal: it shows what the server's multi-key read gives.
func batchGoRedisMGET(ctx context.Context, rdb *redis.Client, ns string, uids []string, svc string) (map[int][]string, error) {
	keys := make([]string, len(uids))
	for i, uid := range uids {
		keys[i] = plainLinkKey(ns, uid, svc)
	}
	vals, err := rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	groups := map[int][]string{}
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // nil: no link
		}
		pod, err := strconv.Atoi(s)
		if err != nil {
			return nil, err
		}
		groups[pod] = append(groups[pod], uids[i])
	}
	return groups, nil
}

// linkBatch links n uids (batch0, batch1, ...) in e's namespace, to the
// benchmark's pods in turn, and returns them.
func (e *storeEnv) linkBatch(b *testing.B, ctx context.Context, n int) []string {
	uids := make([]string, n)
	pipe := e.rdb.Pipeline()
	for i := range uids {
		uids[i] = "batch" + strconv.Itoa(i)
		pipe.Set(ctx, plainLinkKey(e.ns, uids[i], benchSvc), pods[i%benchPods], time.Hour)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	return uids
}

// BenchmarkStoreBatch looks up the links of 1,000 and 10,000 linked uids.
func BenchmarkStoreBatch(b *testing.B) {
	e := newStoreEnv(b)
	ctx := benchCtx(b)
	for _, n := range []int{1000, 10000} {
		uids := e.linkBatch(b, ctx, n)
		batch := func(fn func() (map[int][]string, error)) func() error {
			return func() error {
				groups, err := fn()
				if err != nil {
					return err
				}
				if len(groups) != benchPods || len(groups[0]) != n/benchPods+min(n%benchPods, 1) {
					return fmt.Errorf("%d groups, %d uids on pod 0", len(groups), len(groups[0]))
				}
				return nil
			}
		}
		// The store's batch and go-redis's two, which every row runs.
		storeBatch := batch(func() (map[int][]string, error) { return e.ours.BatchGetLinkedPod(ctx, e.ns, uids, benchSvc) })
		peers := []namedCall{
			{"goredis", batch(func() (map[int][]string, error) { return batchGoRedis(ctx, e.rdb, e.ns, uids, benchSvc) }), nil},
			{"goredis_mget", batch(func() (map[int][]string, error) { return batchGoRedisMGET(ctx, e.rdb, e.ns, uids, benchSvc) }), nil},
		}
		b.Run(fmt.Sprintf("uids=%d", n), func(b *testing.B) {
			interleaved(b, append([]namedCall{{"ours", storeBatch, nil}}, peers...), batchRun)
		})
		if n != 10000 {
			continue
		}
		// cold runs the row of an engine client on st whose cache forgets
		// every uid before each of its calls, untimed, so that the call
		// misses on all of them.
		cold := func(path string, st *store.Redis) {
			c, err := engine.NewClient(engine.ClientConfig{Store: st, TempLinkTTL: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(c.Close)
			forget := func() {
				for _, uid := range uids {
					c.CacheExpired(e.ns, uid, benchSvc)
				}
			}
			b.Run(fmt.Sprintf("uids=%d/path=%s", n, path), func(b *testing.B) {
				interleaved(b, append([]namedCall{
					{"ours", batch(func() (map[int][]string, error) { return c.BatchGetLinkedPod(ctx, e.ns, uids, benchSvc) }), forget},
					{"store", storeBatch, nil},
				}, peers...), batchRun)
				if st := c.CacheStats(); st.Hits != 0 {
					b.Fatalf("the engine's cache hit %d times, want none", st.Hits)
				}
			})
		}
		cold("engine", e.ours)
		// The same on a store in broadcast mode (DialConfig.Broadcast): its
		// tracked read is a plain MGET, and Redis keeps no per-key table.
		bst, err := store.Dial(store.DialConfig{Addrs: redistest.Addrs(b, redistest.Standalone), Broadcast: true, BroadcastNamespaces: []string{e.ns}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(bst.Close)
		cold("enginebcast", bst)
		// Another client, whose cache forgets one uid in ten before each
		// call, untimed: every call put all of them, so each call finds the
		// other 90% cached and reads 1,000 uids from Redis.
		c90, err := engine.NewClient(engine.ClientConfig{Store: e.ours, TempLinkTTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c90.Close)
		forgetTenth := func() {
			for i := 0; i < len(uids); i += 10 {
				c90.CacheExpired(e.ns, uids[i], benchSvc)
			}
		}
		b.Run(fmt.Sprintf("uids=%d/path=engine90", n), func(b *testing.B) {
			interleaved(b, append([]namedCall{
				{"ours", batch(func() (map[int][]string, error) { return c90.BatchGetLinkedPod(ctx, e.ns, uids, benchSvc) }), forgetTenth},
				{"store", storeBatch, nil},
			}, peers...), batchRun)
			// The first call found nothing cached; all the others, 90%.
			if st := c90.CacheStats(); st.HitRatio() < 0.85 || st.HitRatio() > 0.9 {
				b.Fatalf("the engine's cache hit %.3f of its lookups, want about 0.9", st.HitRatio())
			}
		})
	}
}

// benchCtx is a context for a benchmark's calls: long runs (-benchtime)
// outlast the 30 s of redistest.Ctx.
func benchCtx(b *testing.B) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	b.Cleanup(cancel)
	return ctx
}

// TestBatchGoRedisSameAnswer: the plain go-redis batch answers exactly what
// ours does, so the two rows measure the same work.
func TestBatchGoRedisSameAnswer(t *testing.T) {
	addrs := redistest.Addrs(t, redistest.Standalone)
	ours, err := store.Dial(store.DialConfig{Addrs: addrs})
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addrs[0]})
	defer rdb.Close()
	ctx, ns := redistest.Ctx(t), redistest.Namespace(t)
	uids := make([]string, 100)
	for i := range uids {
		uids[i] = "u" + strconv.Itoa(i)
		if i%3 != 0 { // a third unlinked
			if _, err := ours.SetLinkedPod(ctx, ns, uids[i], benchSvc, i%5, store.Persistent); err != nil {
				t.Fatal(err)
			}
		}
	}
	want, err := ours.BatchGetLinkedPod(ctx, ns, uids, benchSvc)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 5 {
		t.Fatalf("ours found %d pods, want 5: %v", len(want), want)
	}
	for name, batch := range map[string]func(context.Context, *redis.Client, string, []string, string) (map[int][]string, error){
		"pipeline": batchGoRedis, "mget": batchGoRedisMGET,
	} {
		got, err := batch(ctx, rdb, ns, uids, benchSvc)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("go-redis %s batch %v, ours %v", name, got, want)
		}
	}
}
