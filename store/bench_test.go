package store_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/internal/testkit"
	"github.com/stickyroute/stickyroute/store"
)

// The benchmarks run against the real standalone server (make bench starts it)
// and compare each of our operations with the obvious baseline through the
// same client in the same run, interleaved, so a noisy machine moves both sides
// alike. The goals (SPEC issue 2) are ratios, never absolute times:
//   - a link op's round trip ≤ 1.3 × a plain GET            (metric op/GET)
//   - BatchGetLinkedPod ≥ 0.8 × the keys/s of one raw MGET  (metric batch/MGET)
//   - 50 goroutines of a link op ≥ 0.9 × raw EVALSHA ops/s  (metric op/EVALSHA)

const benchPool = 1024 // distinct uids the benchmarks cycle through

type benchEnv struct {
	s    *store.Redis
	c    rueidis.Client
	ns   string
	uids []string
	keys []string
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	be := redistest.Open(b, redistest.Standalone)
	e := &benchEnv{s: store.New(be.Client), c: be.Client, ns: redistest.Namespace(b)}
	ctx := redistest.Ctx(b)
	for i := range benchPool {
		uid := "bench-user-" + strconv.Itoa(i)
		e.uids = append(e.uids, uid)
		e.keys = append(e.keys, store.LinkKey(e.ns, uid, svc))
		if _, err := e.s.SetLinkedPod(ctx, e.ns, uid, svc, i%16, store.Persistent); err != nil {
			b.Fatal(err)
		}
	}
	for pod := range 16 {
		if _, err := e.s.SetServiceState(ctx, e.ns, svc, pod, pod*3, store.Ready); err != nil {
			b.Fatal(err)
		}
	}
	return e
}

// linkOps are the operations measured one by one; i picks the uid.
func linkOps(e *benchEnv) []struct {
	name string
	fn   func(ctx context.Context, i int) error
} {
	return []struct {
		name string
		fn   func(ctx context.Context, i int) error
	}{
		{"GetLinkedPod", func(ctx context.Context, i int) error {
			_, err := e.s.GetLinkedPod(ctx, e.ns, e.uids[i%benchPool], svc)
			return err
		}},
		{"GetLinkedPodIfPersist", func(ctx context.Context, i int) error {
			_, err := e.s.GetLinkedPodIfPersist(ctx, e.ns, e.uids[i%benchPool], svc)
			return err
		}},
		{"SetLinkedPod", func(ctx context.Context, i int) error {
			_, err := e.s.SetLinkedPod(ctx, e.ns, e.uids[i%benchPool], svc, i%16, store.Persistent)
			return err
		}},
		{"TrySetLinkedPod", func(ctx context.Context, i int) error {
			_, err := e.s.TrySetLinkedPod(ctx, e.ns, e.uids[i%benchPool], svc, i%16, store.Persistent)
			return err
		}},
		{"SetLinkedPodIfAbsent/temporary", func(ctx context.Context, i int) error {
			_, err := e.s.SetLinkedPodIfAbsent(ctx, e.ns, e.uids[i%benchPool], svc, 1, 60)
			return err
		}},
		{"SetLinkedPodIfAbsent/persistent", func(ctx context.Context, i int) error {
			_, err := e.s.SetLinkedPodIfAbsent(ctx, e.ns, e.uids[i%benchPool], svc, 1, store.Persistent)
			return err
		}},
		{"ReplaceLinkedPod", func(ctx context.Context, i int) error {
			_, _, err := e.s.ReplaceLinkedPod(ctx, e.ns, e.uids[i%benchPool], svc, i%16, i%16, store.Persistent)
			return err
		}},
		{"RemoveLinkedPodWithId", func(ctx context.Context, i int) error {
			_, err := e.s.RemoveLinkedPodWithId(ctx, e.ns, e.uids[i%benchPool], svc, 99, 30)
			return err
		}},
		{"GetLinkService", func(ctx context.Context, i int) error {
			_, err := e.s.GetLinkService(ctx, e.ns, e.uids[i%benchPool])
			return err
		}},
		{"SetServiceState", func(ctx context.Context, i int) error {
			_, err := e.s.SetServiceState(ctx, e.ns, svc, i%16, i%100, store.Ready)
			return err
		}},
		{"GetServiceState", func(ctx context.Context, i int) error {
			_, err := e.s.GetServiceState(ctx, e.ns, svc)
			return err
		}},
		{"GetWorkloadState", func(ctx context.Context, i int) error {
			_, err := e.s.GetWorkloadState(ctx, e.ns, svc)
			return err
		}},
	}
}

// BenchmarkRoundTrip times each operation against a plain GET of a link key
// through the same client, one after the other in every iteration.
func BenchmarkRoundTrip(b *testing.B) {
	e := newBenchEnv(b)
	ctx := redistest.Ctx(b)
	for _, op := range linkOps(e) {
		b.Run(op.name, func(b *testing.B) {
			b.ReportAllocs()
			var getNs, opNs time.Duration
			for i := 0; b.Loop(); i++ {
				t0 := time.Now()
				if err := e.c.Do(ctx, e.c.B().Get().Key(e.keys[i%benchPool]).Build()).Error(); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := op.fn(ctx, i); err != nil {
					b.Fatal(err)
				}
				opNs += time.Since(t1)
				getNs += t1.Sub(t0)
			}
			n := float64(b.N)
			b.ReportMetric(float64(opNs.Nanoseconds())/n, "ns/call")
			b.ReportMetric(float64(getNs.Nanoseconds())/n, "ns/GET")
			b.ReportMetric(float64(opNs)/float64(getNs), "op/GET")
		})
	}
}

// BenchmarkBatch compares BatchGetLinkedPod with one raw MGET of the same
// (pre-built) keys, alternating the two in every iteration.
func BenchmarkBatch(b *testing.B) {
	e := newBenchEnv(b)
	ctx := redistest.Ctx(b)
	for _, n := range []int{1000, 10000} {
		uids := make([]string, n)
		keys := make([]string, n)
		for i := range uids {
			uids[i] = "batch-user-" + strconv.Itoa(i)
			keys[i] = store.LinkKey(e.ns, uids[i], svc)
		}
		// Link every uid, 16 pods.
		cmds := make(rueidis.Commands, 0, n)
		for i, k := range keys {
			cmds = append(cmds, e.c.B().Set().Key(k).Value(strconv.Itoa(i%16)).Build())
		}
		for _, r := range e.c.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			var mgetNs, batchNs time.Duration
			for b.Loop() {
				t0 := time.Now()
				vals, err := e.c.Do(ctx, e.c.B().Mget().Key(keys...).Build()).ToArray()
				if err != nil || len(vals) != n {
					b.Fatal(err, len(vals))
				}
				t1 := time.Now()
				groups, err := e.s.BatchGetLinkedPod(ctx, e.ns, uids, svc)
				if err != nil || len(groups) != 16 {
					b.Fatal(err, len(groups))
				}
				batchNs += time.Since(t1)
				mgetNs += t1.Sub(t0)
			}
			keysDone := float64(n) * float64(b.N)
			b.ReportMetric(keysDone/batchNs.Seconds(), "keys/s")
			b.ReportMetric(keysDone/mgetNs.Seconds(), "MGET-keys/s")
			b.ReportMetric(float64(mgetNs)/float64(batchNs), "batch/MGET")
		})
	}
}

// rawTwin is the same work as one of our operations written directly on
// rueidis: the same script (or command) with keys and arguments built in
// advance. Comparing with it isolates what the store adds on the client.
func rawTwin(b *testing.B, e *benchEnv, name string) func(ctx context.Context, i int) error {
	b.Helper()
	lua := func(file string, readOnly bool) *rueidis.Lua {
		prelude, err1 := os.ReadFile("scripts/prelude.lua")
		body, err2 := os.ReadFile("scripts/" + file + ".lua")
		if err1 != nil || err2 != nil {
			b.Fatal(err1, err2)
		}
		if readOnly {
			return rueidis.NewLuaScriptReadOnly(string(prelude) + string(body))
		}
		return rueidis.NewLuaScript(string(prelude) + string(body))
	}
	dirs := make([]string, benchPool)
	pods := make([]string, 16)
	for i := range dirs {
		dirs[i] = store.DirKey(e.ns, e.uids[i])
	}
	for i := range pods {
		pods[i] = strconv.Itoa(i)
	}
	script := func(l *rueidis.Lua, args func(i int) []string) func(ctx context.Context, i int) error {
		return func(ctx context.Context, i int) error {
			return l.Exec(ctx, e.c, []string{e.keys[i%benchPool], dirs[i%benchPool]}, args(i)).Error()
		}
	}
	persistent := func(i int) []string { return []string{svc, pods[i%16], "-1"} }
	switch name {
	case "GetLinkedPod":
		return func(ctx context.Context, i int) error {
			return e.c.Do(ctx, e.c.B().Get().Key(e.keys[i%benchPool]).Build()).Error()
		}
	case "SetLinkedPodIfAbsent/temporary":
		return func(ctx context.Context, i int) error {
			err := e.c.Do(ctx, e.c.B().Set().Key(e.keys[i%benchPool]).Value("1").Nx().Get().ExSeconds(60).Build()).Error()
			if rueidis.IsRedisNil(err) {
				return nil
			}
			return err
		}
	case "GetLinkedPodIfPersist":
		return script(lua("getpersist", true), func(int) []string { return nil })
	case "SetLinkedPod":
		return script(lua("set", false), persistent)
	case "TrySetLinkedPod":
		return script(lua("tryset", false), persistent)
	case "SetLinkedPodIfAbsent/persistent":
		return script(lua("ifabsent", false), func(int) []string { return []string{svc, "1"} })
	case "ReplaceLinkedPod":
		return script(lua("replace", false), func(i int) []string { return []string{svc, pods[i%16], "-1", pods[i%16]} })
	case "RemoveLinkedPodWithId":
		return script(lua("removeid", false), func(int) []string { return []string{svc, "99", "30"} })
	}
	b.Fatalf("no raw twin for %s", name)
	return nil
}

// BenchmarkConcurrent50 runs each link operation from 50 goroutines and
// compares its throughput, in alternating rounds at the same concurrency, with
//   - raw EVALSHA of a trivial script ("return 1"): op/EVALSHA, the goal;
//   - the same script or command sent raw on rueidis: op/raw, what the store
//     itself costs on top of the Redis work the operation needs.
func BenchmarkConcurrent50(b *testing.B) {
	const workers = 50
	e := newBenchEnv(b)
	ctx := redistest.Ctx(b)
	trivial := rueidis.NewLuaScript("return 1")
	baseline := func(ctx context.Context, i int) error {
		return trivial.Exec(ctx, e.c, []string{e.keys[i%benchPool]}, nil).Error()
	}
	// run does n calls of fn spread over the workers and returns the wall time.
	run := func(b *testing.B, n int, fn func(context.Context, int) error) time.Duration {
		d, err := testkit.Spread(workers, n, func(i int) error { return fn(ctx, i) })
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	for _, op := range linkOps(e) {
		switch op.name {
		case "GetLinkService", "SetServiceState", "GetServiceState", "GetWorkloadState":
			continue // not link operations
		}
		raw := rawTwin(b, e, op.name)
		b.Run(op.name, func(b *testing.B) {
			b.ReportAllocs()
			const rounds = 8
			per := max(b.N/rounds, workers)
			var baseNs, rawNs, opNs time.Duration
			for range rounds {
				baseNs += run(b, per, baseline)
				rawNs += run(b, per, raw)
				opNs += run(b, per, op.fn)
			}
			calls := float64(per * rounds)
			b.ReportMetric(calls/opNs.Seconds(), "ops/s")
			b.ReportMetric(calls/baseNs.Seconds(), "EVALSHA-ops/s")
			b.ReportMetric(float64(baseNs)/float64(opNs), "op/EVALSHA")
			b.ReportMetric(float64(rawNs)/float64(opNs), "op/raw")
		})
	}
}
