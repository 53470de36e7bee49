package benchmarks

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

// The store: our link operations against the real standalone server (make
// bench and make bench-check start it) next to the same operations written
// plainly on go-redis, as a user without this library would: keys built with
// fmt.Sprintf, each atomic operation an EVAL of a short script per call, a
// batch lookup one GET per uid sent in one pipeline, its replies parsed and
// grouped by pod.
//
// BenchmarkStoreOp rows: op=<name>/impl=<ours|goredis>, one call per op from
// one goroutine (a round trip each). BenchmarkStoreBatch rows:
// uids=<1000|10000>/impl=<ours|goredis|goredis_mget>, one batch lookup per op.
//
// Goal (the issue's): a batch lookup of 10,000 uids ≥ 3× faster than the
// go-redis version (not met yet: see batchKnown; the check fails below 1.5×). The single operations have no goal: both sides are one
// round trip to the same server, and their ratio shows what each client adds.

var _ = addGoals(
	fasterThan("batch lookup of 10,000 uids vs go-redis pipelined GETs", 3,
		"StoreBatch/uids=10000/impl=ours", "StoreBatch/uids=10000/impl=goredis").knownMiss(1.5, batchKnown),
)

// batchKnown is why the batch goal is not met yet: BatchGetLinkedPod already
// runs at the speed of one raw MGET of the same keys (the store package's
// BenchmarkBatch, batch/MGET ≈ 0.95–0.97), and on this machine MGET is only
// about 2× a pipeline of single GETs; 3× needs more than MGET gives.
const batchKnown = "ours matches a raw MGET, which is ~2× pipelined GETs here"

const storePool = 1024 // uids the single operations cycle through

// Plain scripts, as a go-redis user would write them for the same contract
// (SPEC §4): KEYS[1] the link, KEYS[2] the uid's directory of persistent links.
const (
	plainSet = `local prev = redis.call('GET', KEYS[1])
if ARGV[3] == '-1' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return prev`
	plainTrySet = `local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[2] and redis.call('TTL', KEYS[1]) == -1 then
  return {0, cur}
end
if ARGV[3] == '-1' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return {1, cur}`
	plainIfAbsent = `local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return ARGV[2]`
	plainReplace = `local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[4] then return {0, cur} end
if ARGV[3] == '-1' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return {1, ARGV[2]}`
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
			uid := e.uids[i%storePool]
			return ignoreNil(e.rdb.Eval(ctx, plainSet, []string{plainLinkKey(e.ns, uid, benchSvc), plainDirKey(e.ns, uid)},
				benchSvc, pods[i%benchPods], "-1").Err())
		}},
	{"TrySetLinkedPod",
		func(ctx context.Context, e *storeEnv, i int) error {
			_, err := e.ours.TrySetLinkedPod(ctx, e.ns, e.uids[i%storePool], benchSvc, i%benchPods, store.Persistent)
			return err
		},
		func(ctx context.Context, e *storeEnv, i int) error {
			uid := e.uids[i%storePool]
			return e.rdb.Eval(ctx, plainTrySet, []string{plainLinkKey(e.ns, uid, benchSvc), plainDirKey(e.ns, uid)},
				benchSvc, pods[i%benchPods], "-1").Err()
		}},
	{"SetLinkedPodIfAbsent",
		func(ctx context.Context, e *storeEnv, i int) error {
			_, err := e.ours.SetLinkedPodIfAbsent(ctx, e.ns, e.uids[i%storePool], benchSvc, 1, 60)
			return err
		},
		func(ctx context.Context, e *storeEnv, i int) error {
			uid := e.uids[i%storePool]
			return e.rdb.Eval(ctx, plainIfAbsent, []string{plainLinkKey(e.ns, uid, benchSvc), plainDirKey(e.ns, uid)},
				benchSvc, "1", "60").Err()
		}},
	{"ReplaceLinkedPod",
		func(ctx context.Context, e *storeEnv, i int) error {
			_, _, err := e.ours.ReplaceLinkedPod(ctx, e.ns, e.uids[i%storePool], benchSvc, i%benchPods, i%benchPods, store.Persistent)
			return err
		},
		func(ctx context.Context, e *storeEnv, i int) error {
			uid := e.uids[i%storePool]
			return e.rdb.Eval(ctx, plainReplace, []string{plainLinkKey(e.ns, uid, benchSvc), plainDirKey(e.ns, uid)},
				benchSvc, pods[i%benchPods], "-1", pods[i%benchPods]).Err()
		}},
}

// ignoreNil treats a nil reply (no previous link) as success.
func ignoreNil(err error) error {
	if err == redis.Nil {
		return nil
	}
	return err
}

// BenchmarkStoreOp times one round trip of each link operation.
func BenchmarkStoreOp(b *testing.B) {
	e := newStoreEnv(b)
	ctx := benchCtx(b)
	for _, op := range storeOps {
		for _, impl := range []string{"ours", "goredis"} {
			fn := op.ours
			if impl == "goredis" {
				fn = op.goredis
			}
			b.Run("op="+op.name+"/impl="+impl, func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if err := fn(ctx, e, i); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
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

// BenchmarkStoreBatch looks up the links of 1,000 and 10,000 linked uids.
func BenchmarkStoreBatch(b *testing.B) {
	e := newStoreEnv(b)
	ctx := benchCtx(b)
	for _, n := range []int{1000, 10000} {
		uids := make([]string, n)
		pipe := e.rdb.Pipeline()
		for i := range uids {
			uids[i] = "batch" + strconv.Itoa(i)
			pipe.Set(ctx, plainLinkKey(e.ns, uids[i], benchSvc), pods[i%benchPods], time.Hour)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		impls := []struct {
			name string
			fn   func() (map[int][]string, error)
		}{
			{"ours", func() (map[int][]string, error) { return e.ours.BatchGetLinkedPod(ctx, e.ns, uids, benchSvc) }},
			{"goredis", func() (map[int][]string, error) { return batchGoRedis(ctx, e.rdb, e.ns, uids, benchSvc) }},
			{"goredis_mget", func() (map[int][]string, error) { return batchGoRedisMGET(ctx, e.rdb, e.ns, uids, benchSvc) }},
		}
		for _, im := range impls {
			b.Run(fmt.Sprintf("uids=%d/impl=%s", n, im.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					groups, err := im.fn()
					if err != nil {
						b.Fatal(err)
					}
					if len(groups) != benchPods || len(groups[0]) != n/benchPods+min(n%benchPods, 1) {
						b.Fatalf("%d groups, %d uids on pod 0", len(groups), len(groups[0]))
					}
				}
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "uids/s")
			})
		}
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
