package obs_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/obs"
	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

// The overhead benchmarks compare, in the same run, one engine call through
// clients that differ only in their observer (targets from the obs issue):
// metrics add ≤ 15 ns/op and 0 allocs/op to a cache hit; a traced Redis-bound
// call takes ≤ 1.10 × the unobserved one.

const hotUsers = 1024

// variant is a client with one kind of observer.
type variant struct {
	name string
	c    *engine.Client
}

// variants builds four clients on st: no observer, metrics, metrics and a
// tracer that samples nothing, metrics and a tracer that samples every span
// into a batch processor (exporting nowhere, as a collector would receive
// them off the caller's path).
func variants(tb testing.TB, st *store.Redis) []variant {
	off := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	on := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	inline := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(dropProcessor{}))
	tb.Cleanup(func() {
		_ = off.Shutdown(context.Background())
		_ = on.Shutdown(context.Background())
		_ = inline.Shutdown(context.Background())
	})
	obsv := []struct {
		name string
		o    engine.Observer
	}{
		{"none", nil},
		{"metrics", obs.NewMetrics(nil)},
		{"metrics+trace_off", obs.Join(obs.NewMetrics(nil), obs.NewTracer(off, obs.TracerConfig{}))},
		{"metrics+trace_on", obs.Join(obs.NewMetrics(nil), obs.NewTracer(on, obs.TracerConfig{}))},
		{"metrics+trace_on_inline", obs.Join(obs.NewMetrics(nil), obs.NewTracer(inline, obs.TracerConfig{}))},
	}
	out := make([]variant, len(obsv))
	for i, v := range obsv {
		c, err := engine.NewClient(engine.ClientConfig{Store: st, Timing: engine.Timing{Heartbeat: time.Minute},
			TempLinkTTL: time.Hour, Cache: engine.CacheConfig{TTL: 30 * time.Minute}, Observer: v.o})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(c.Close)
		out[i] = variant{v.name, c}
	}
	return out
}

// dropProcessor ends every span on the caller's goroutine and keeps nothing:
// the cost of recording spans without the batch processor's hand-off to its
// own goroutine.
type dropProcessor struct{}

func (dropProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (dropProcessor) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (dropProcessor) Shutdown(context.Context) error                  { return nil }
func (dropProcessor) ForceFlush(context.Context) error                { return nil }

// hotStore is the embedded Redis with pods 0..3 of ns/game Ready.
func hotStore(tb testing.TB, ns string) *store.Redis {
	st, err := embedded.Dial(store.DialConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Close)
	publish(tb, st, ns)
	return st
}

func publish(tb testing.TB, st *store.Redis, ns string) {
	for pod := range 4 {
		if _, err := st.SetServiceState(context.Background(), ns, svc, pod, 0, store.Ready); err != nil {
			tb.Fatal(err)
		}
	}
}

// warm caches the hot users in c.
func warm(tb testing.TB, c *engine.Client, ns string, uids []string) {
	for i, u := range uids {
		if err := c.SetCache(context.Background(), ns, u, svc, i%4); err != nil {
			tb.Fatal(err)
		}
	}
}

func hotUIDs() []string {
	uids := make([]string, hotUsers)
	for i := range uids {
		uids[i] = "user-" + strconv.Itoa(i)
	}
	return uids
}

// BenchmarkObserveHit times cache-hit ComputeLinkedPod calls through each
// variant, in rounds of 4096 calls per variant so that every variant sees the
// same machine; it reports each variant's ns per hit and what metrics, and
// metrics with tracing, add to the unobserved hit.
func BenchmarkObserveHit(b *testing.B) {
	const ns, block = "bench", 4096
	st := hotStore(b, ns)
	vs := variants(b, st)
	uids := hotUIDs()
	for _, v := range vs {
		warm(b, v.c, ns, uids)
	}
	ctx := context.Background()
	spent := make([]time.Duration, len(vs))
	calls := 0
	b.ReportAllocs()
	b.ResetTimer()
	for calls < b.N {
		for i, v := range vs {
			start := time.Now()
			for k := range block {
				if _, err := v.c.ComputeLinkedPod(ctx, ns, uids[k%hotUsers], svc); err != nil {
					b.Fatal(err)
				}
			}
			spent[i] += time.Since(start)
		}
		calls += block
	}
	per := func(i int) float64 { return float64(spent[i].Nanoseconds()) / float64(calls) }
	for i, v := range vs {
		b.ReportMetric(per(i), v.name+"-ns/hit")
	}
	b.ReportMetric(per(1)-per(0), "metrics-added-ns/hit")
	b.ReportMetric(per(3)-per(0), "traced-added-ns/hit")
}

// BenchmarkObserveRoundTrip times Redis-bound calls through each variant,
// one call of each per iteration, on the real standalone Redis when it is up
// (the embedded one otherwise), and reports each variant's latency over the
// unobserved one's. Two calls: GetLinkedPodNotCache (one plain GET, the
// cheapest call there is, so the observers' share is the largest) and a
// cache-missing ComputeLinkedPod of a linked user (the routing call: one
// tracked read; the entry is dropped before each call, outside the timing).
func BenchmarkObserveRoundTrip(b *testing.B) {
	ns := "bench" + strconv.Itoa(os.Getpid())
	dial := embedded.Dial
	cfg := store.DialConfig{}
	if addr := os.Getenv(redistest.EnvStandalone); addr != "" {
		cfg.Addrs, dial = []string{addr}, store.Dial
	}
	st, err := dial(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	publish(b, st, ns)
	vs := variants(b, st)
	ctx := context.Background()
	for _, v := range vs {
		if _, err := v.c.ComputeLinkedPod(ctx, ns, "someone", svc); err != nil {
			b.Fatal(err)
		}
	}
	calls := []struct {
		name   string
		before func(c *engine.Client)
		call   func(c *engine.Client) error
	}{
		{"GetLinkedPodNotCache", func(*engine.Client) {}, func(c *engine.Client) error {
			_, err := c.GetLinkedPodNotCache(ctx, ns, "someone", svc)
			return err
		}},
		{"ComputeLinkedPodMiss", func(c *engine.Client) { c.CacheExpired(ns, "someone", svc) }, func(c *engine.Client) error {
			_, err := c.ComputeLinkedPod(ctx, ns, "someone", svc)
			return err
		}},
	}
	for _, call := range calls {
		b.Run("op="+call.name, func(b *testing.B) {
			spent := make([]time.Duration, len(vs))
			for n := range b.N {
				for k := range vs {
					i := (n + k) % len(vs) // rotate who goes first
					call.before(vs[i].c)
					start := time.Now()
					if err := call.call(vs[i].c); err != nil {
						b.Fatal(err)
					}
					spent[i] += time.Since(start)
				}
			}
			for i, v := range vs {
				b.ReportMetric(float64(spent[i].Nanoseconds())/float64(b.N), v.name+"-ns/op")
				if i > 0 {
					b.ReportMetric(float64(spent[i])/float64(spent[0]), v.name+"/none")
				}
			}
		})
	}
}

// TestObservedHitAllocs: with metrics and a sampling tracer, a cache hit
// still allocates nothing.
func TestObservedHitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	const ns = "allocs"
	vs := variants(t, hotStore(t, ns))
	uids := hotUIDs()
	ctx := redistest.Ctx(t)
	for _, v := range vs[1:] {
		warm(t, v.c, ns, uids)
		var err error
		allocs := testing.AllocsPerRun(10000, func() {
			_, err = v.c.ComputeLinkedPod(ctx, ns, uids[7], svc)
		})
		if err != nil {
			t.Fatal(err)
		}
		if allocs != 0 {
			t.Errorf("%s: %v allocs per cache hit, want 0", v.name, allocs)
		}
	}
}
