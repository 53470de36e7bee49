package obs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/obs"
	"github.com/stickyroute/stickyroute/store"
)

// recorder is a TracerProvider recording every span in memory.
func recorder(t *testing.T, sampler sdktrace.Sampler) (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr), sdktrace.WithSampler(sampler))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return sr, tp
}

// attrs returns a span's attributes by key.
func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// ended returns the spans ended since mark (a count of spans), by name.
func ended(sr *tracetest.SpanRecorder, mark int) map[string][]sdktrace.ReadOnlySpan {
	out := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range sr.Ended()[mark:] {
		out[s.Name()] = append(out[s.Name()], s)
	}
	return out
}

// one returns the single span named name, failing otherwise.
func one(t *testing.T, spans map[string][]sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	if len(spans[name]) != 1 {
		t.Fatalf("%d spans %q, want 1 (all: %v)", len(spans[name]), name, names(spans))
	}
	return spans[name][0]
}

func names(spans map[string][]sdktrace.ReadOnlySpan) map[string]int {
	m := map[string]int{}
	for k, v := range spans {
		m[k] = len(v)
	}
	return m
}

// newClient is a client on the embedded Redis with pods 0..pods-1 of svc
// Ready, configured further by configure.
func newClient(t *testing.T, pods int, configure func(*engine.ClientConfig)) (*engine.Client, *store.Redis, string) {
	b := redistest.Open(t, redistest.Embedded)
	st := store.New(b.Client)
	ns := redistest.Namespace(t)
	ctx := redistest.Ctx(t)
	for pod := range pods {
		if _, err := st.SetServiceState(ctx, ns, svc, pod, 0, store.Ready); err != nil {
			t.Fatal(err)
		}
	}
	cfg := engine.ClientConfig{Store: st, Timing: engine.Timing{Heartbeat: time.Minute}}
	configure(&cfg)
	c, err := engine.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, st, ns
}

// tracedClient is a client on the embedded Redis with pods 0 and 1 Ready,
// traced by a Tracer on tp.
func tracedClient(t *testing.T, tp trace.TracerProvider, cfg obs.TracerConfig) (*engine.Client, *store.Redis, string) {
	return newClient(t, 2, func(c *engine.ClientConfig) { c.Observer = obs.NewTracer(tp, cfg) })
}

func TestTracingSpans(t *testing.T) {
	sr, tp := recorder(t, sdktrace.AlwaysSample())
	c, st, ns := tracedClient(t, tp, obs.TracerConfig{ServerAddress: "127.0.0.1:6390", RoundTripSpans: true, Background: true})
	ctx := redistest.Ctx(t)

	// A new user: the operation's span, its round trips as client spans
	// under it, and the first refresh of the service.
	mark := len(sr.Ended())
	pod, err := c.ComputeLinkedPod(ctx, ns, "alice", svc)
	if err != nil {
		t.Fatal(err)
	}
	spans := ended(sr, mark)
	op := one(t, spans, "stickyroute.ComputeLinkedPod")
	a := attrs(op)
	if op.SpanKind() != trace.SpanKindInternal || op.Status().Code != codes.Unset {
		t.Errorf("op span kind %v status %v", op.SpanKind(), op.Status())
	}
	for k, want := range map[attribute.Key]any{
		obs.AttrNamespace: ns, obs.AttrService: svc, obs.AttrPod: int64(pod), obs.AttrCache: "miss",
		obs.AttrLink: "temporary", obs.AttrPlaced: true, obs.AttrStrategy: "p2c",
	} {
		if got := a[k].AsInterface(); got != want {
			t.Errorf("op span %s = %v, want %v", k, got, want)
		}
	}
	if a[obs.AttrOutcome].Type() != attribute.EMPTY {
		t.Errorf("a successful op records outcome %v", a[obs.AttrOutcome])
	}
	// One round trip places the user: the place script, after CLIENT
	// CACHING YES when the store tracks keys.
	place := one(t, spans, "EVALSHA place")
	pa := attrs(place)
	if place.SpanKind() != trace.SpanKindClient || place.Parent().SpanID() != op.SpanContext().SpanID() {
		t.Errorf("%s: kind %v parent %v, want client span under the op", place.Name(), place.SpanKind(), place.Parent().SpanID())
	}
	if pa[obs.AttrDBSystem].AsString() != "redis" || pa[obs.AttrDBOperation].AsString() != "EVALSHA" ||
		pa[obs.AttrDBProcedure].AsString() != "place" ||
		pa[obs.AttrServerAddress].AsString() != "127.0.0.1" || pa[obs.AttrServerPort].AsInt64() != 6390 {
		t.Errorf("%s attributes %v", place.Name(), pa)
	}
	refresh := one(t, spans, "stickyroute.refresh")
	script := one(t, spans, "EVALSHA getstate")
	if script.Parent().SpanID() != refresh.SpanContext().SpanID() || attrs(script)[obs.AttrDBProcedure].AsString() != "getstate" {
		t.Errorf("getstate span: parent %v, attrs %v", script.Parent().SpanID(), attrs(script))
	}
	var events []string
	for _, e := range op.Events() {
		events = append(events, e.Name)
	}
	if len(events) != 2 || events[0] != "stickyroute.picked" || events[1] != "stickyroute.placed" {
		t.Errorf("op events %v, want picked then placed", events)
	}

	// A cache hit makes no span (the user was cached when placed).
	mark = len(sr.Ended())
	if _, err := c.ComputeLinkedPod(ctx, ns, "alice", svc); err != nil {
		t.Fatal(err)
	}
	if n := len(sr.Ended()) - mark; n != 0 {
		t.Errorf("a cache hit made %d spans", n)
	}

	// Not found is not an error.
	mark = len(sr.Ended())
	if _, err := c.GetLinkedPodNotCache(ctx, ns, "nobody", svc); err != nil {
		t.Fatal(err)
	}
	nf := one(t, ended(sr, mark), "stickyroute.GetLinkedPodNotCache")
	if nf.Status().Code != codes.Unset || attrs(nf)[obs.AttrOutcome].AsString() != "not_found" {
		t.Errorf("not found: status %v outcome %v", nf.Status(), attrs(nf)[obs.AttrOutcome])
	}

	// A cancelled context is not an error.
	mark = len(sr.Ended())
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.GetLinkedPodNotCache(cctx, ns, "bob", svc); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled lookup: %v", err)
	}
	cs := one(t, ended(sr, mark), "stickyroute.GetLinkedPodNotCache")
	if cs.Status().Code != codes.Unset || attrs(cs)[obs.AttrOutcome].AsString() != "canceled" {
		t.Errorf("cancelled: status %v outcome %v", cs.Status(), attrs(cs)[obs.AttrOutcome])
	}

	// A corrupt link is an error, on the round trip and on the operation.
	if err := st.Client().Do(ctx, st.Client().B().Set().Key(store.LinkKey(ns, "carol", svc)).Value("x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	mark = len(sr.Ended())
	if _, err := c.ComputeLinkedPod(ctx, ns, "carol", svc); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("corrupt link: %v", err)
	}
	spans = ended(sr, mark)
	for _, name := range []string{"stickyroute.ComputeLinkedPod", "EVALSHA place"} {
		s := one(t, spans, name)
		if s.Status().Code != codes.Error || attrs(s)[obs.AttrErrorType].AsString() != "corrupt" || len(s.Events()) == 0 {
			t.Errorf("%s: status %v error.type %v events %d", name, s.Status(), attrs(s)[obs.AttrErrorType], len(s.Events()))
		}
	}
}

// TestTracingDefault: by default an operation is one client span carrying
// the database attributes of its round trips, and background work is not
// traced.
func TestTracingDefault(t *testing.T) {
	sr, tp := recorder(t, sdktrace.AlwaysSample())
	c, _, ns := tracedClient(t, tp, obs.TracerConfig{ServerAddress: "redis.local:6379"})
	ctx := redistest.Ctx(t)
	if _, err := c.ComputeLinkedPod(ctx, ns, "alice", svc); err != nil {
		t.Fatal(err)
	}
	if _, err := c.BatchGetLinkedPod(ctx, ns, []string{"bob", "carol", "dave"}, svc); err != nil {
		t.Fatal(err)
	}
	spans := ended(sr, 0)
	if len(sr.Ended()) != 2 {
		t.Fatalf("spans %v, want the two operations only", names(spans))
	}
	op := one(t, spans, "stickyroute.ComputeLinkedPod")
	a := attrs(op)
	if op.SpanKind() != trace.SpanKindClient || a[obs.AttrDBSystem].AsString() != "redis" ||
		a[obs.AttrDBOperation].AsString() != "EVALSHA" || a[obs.AttrServerAddress].AsString() != "redis.local" ||
		a[obs.AttrServerPort].AsInt64() != 6379 || a[obs.AttrPlaced].AsBool() != true {
		t.Errorf("op span kind %v attributes %v", op.SpanKind(), a)
	}
	batch := attrs(one(t, spans, "stickyroute.BatchGetLinkedPod"))
	if batch[obs.AttrDBOperation].AsString() != "MGET" || batch[obs.AttrDBBatchSize].AsInt64() != 3 ||
		batch[obs.AttrKeys].AsInt64() != 3 || batch[obs.AttrCache].AsString() != "miss" {
		t.Errorf("batch span attributes %v", batch)
	}
}

// TestTracingHitsWhenAsked: with ClientConfig.ObserveHits, a cache hit is an
// operation too: one span with cache=hit and no database attribute.
func TestTracingHitsWhenAsked(t *testing.T) {
	sr, tp := recorder(t, sdktrace.AlwaysSample())
	c, _, ns := newClient(t, 1, func(c *engine.ClientConfig) {
		c.Observer, c.ObserveHits = obs.NewTracer(tp, obs.TracerConfig{}), true
	})
	ctx := redistest.Ctx(t)
	if err := c.SetCache(ctx, ns, "alice", svc, 0); err != nil {
		t.Fatal(err)
	}
	mark := len(sr.Ended())
	if pod, err := c.ComputeLinkedPod(ctx, ns, "alice", svc); pod != 0 || err != nil {
		t.Fatalf("hit = %d, %v", pod, err)
	}
	hit := one(t, ended(sr, mark), "stickyroute.ComputeLinkedPod")
	a := attrs(hit)
	if a[obs.AttrCache].AsString() != "hit" || a[obs.AttrPod].AsInt64() != 0 || a[obs.AttrDBOperation].Type() != attribute.EMPTY {
		t.Errorf("hit span attributes %v", a)
	}
}

// TestTracingSampledOff: with a sampler that records nothing, the engine
// works and no span is exported.
func TestTracingSampledOff(t *testing.T) {
	sr, tp := recorder(t, sdktrace.NeverSample())
	c, _, ns := tracedClient(t, tp, obs.TracerConfig{RoundTripSpans: true, Background: true})
	if _, err := c.ComputeLinkedPod(redistest.Ctx(t), ns, "alice", svc); err != nil {
		t.Fatal(err)
	}
	if n := len(sr.Ended()); n != 0 {
		t.Errorf("%d spans recorded with sampling off", n)
	}
}

// TestJoinedObservers: metrics and tracing together, each sees every op.
func TestJoinedObservers(t *testing.T) {
	sr, tp := recorder(t, sdktrace.AlwaysSample())
	m := obs.NewMetrics(nil)
	cfg := obs.TracerConfig{RoundTripSpans: true}
	inner, outer := obs.NewTracer(tp, cfg), obs.NewTracer(tp, cfg)
	c, _, ns := newClient(t, 1, func(c *engine.ClientConfig) { c.Observer = obs.Join(outer, m, nil, inner) })
	ctx := redistest.Ctx(t)
	mark := len(sr.Ended())
	if _, err := c.GetLinkedPodNotCache(ctx, ns, "x", svc); err != nil {
		t.Fatal(err)
	}
	spans := ended(sr, mark)
	ops := spans["stickyroute.GetLinkedPodNotCache"]
	gets := spans["GET"]
	if len(ops) != 2 || len(gets) != 2 {
		t.Fatalf("spans %v, want two of each (two tracers)", names(spans))
	}
	// Each tracer ends its own spans: every span ended exactly once, and
	// the inner tracer's op span is a child of the outer's.
	var outerOp, innerOp sdktrace.ReadOnlySpan
	for _, s := range ops {
		if s.Parent().IsValid() {
			innerOp = s
		} else {
			outerOp = s
		}
	}
	if outerOp == nil || innerOp == nil || innerOp.Parent().SpanID() != outerOp.SpanContext().SpanID() {
		t.Errorf("op spans not nested: %v", ops)
	}
	if got := m.GetMetrics()[`stickyroute_requests_total{namespace="`+ns+`",service="game",op="GetLinkedPodNotCache",outcome="not_found"}`]; got != 1 {
		t.Errorf("metrics saw %v lookups, want 1", got)
	}
	if obs.Join() != nil || obs.Join(nil, m) != engine.Observer(m) {
		t.Error("Join of none is not nil, or of one is not that one")
	}
}

// TestOldTracerAPI: each call of the old request tracer has a counterpart.
func TestOldTracerAPI(t *testing.T) {
	sr, tp := recorder(t, sdktrace.AlwaysSample())
	tr := obs.NewTracer(tp, obs.TracerConfig{})
	ctx := context.Background()

	_, req := tr.TraceRequest(ctx, "Login", attribute.String("region", "eu"))
	tr.AddEvent(req, "checkpoint", attribute.Int("step", 2))
	tr.SetStatus(req, true, "")
	req.End()
	_, cache := tr.TraceCacheOperation(ctx, "get", "k1", true)
	tr.RecordError(cache, context.Canceled) // not a failure
	cache.End()
	_, bal := tr.TraceLoadBalancerOperation(ctx, "select", "lobby", 3)
	tr.RecordError(bal, errors.New("boom"))
	bal.End()
	_, hc := tr.TraceHealthCheck(ctx, "lobby", 2, false)
	hc.End()
	_, failed := tr.TraceRequest(ctx, "Logout")
	tr.SetStatus(failed, false, "nope")
	failed.End()

	spans := ended(sr, 0)
	r := one(t, spans, "stickyroute.Login")
	if r.Status().Code != codes.Ok || attrs(r)["region"].AsString() != "eu" || len(r.Events()) != 1 || r.Events()[0].Name != "checkpoint" {
		t.Errorf("request span: status %v attrs %v events %v", r.Status(), attrs(r), r.Events())
	}
	c := one(t, spans, "stickyroute.cache.get")
	if c.Status().Code != codes.Unset || attrs(c)[obs.AttrCache].AsString() != "hit" || attrs(c)[obs.AttrCacheKey].AsString() != "k1" {
		t.Errorf("cache span: status %v attrs %v", c.Status(), attrs(c))
	}
	bs := one(t, spans, "stickyroute.balancer.select")
	if bs.Status().Code != codes.Error || attrs(bs)[obs.AttrPodCount].AsInt64() != 3 {
		t.Errorf("balancer span: status %v attrs %v", bs.Status(), attrs(bs))
	}
	h := one(t, spans, "stickyroute.health_check")
	if h.Status().Code != codes.Error || attrs(h)[obs.AttrPod].AsInt64() != 2 {
		t.Errorf("health span: status %v attrs %v", h.Status(), attrs(h))
	}
	if f := one(t, spans, "stickyroute.Logout"); f.Status().Code != codes.Error || f.Status().Description != "nope" {
		t.Errorf("failed span status %v", f.Status())
	}
}
