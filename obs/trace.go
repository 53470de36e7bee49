package obs

import (
	"context"
	"net"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/stickyroute/stickyroute/engine"
)

// TracerName is the instrumentation scope of the spans this package starts.
const TracerName = "github.com/stickyroute/stickyroute/obs"

// The attributes of the spans. Redis round trips follow the OpenTelemetry
// database semantic conventions; the routing attributes are this library's.
const (
	AttrDBSystem        = attribute.Key("db.system.name")
	AttrDBOperation     = attribute.Key("db.operation.name")
	AttrDBProcedure     = attribute.Key("db.stored_procedure.name")
	AttrDBBatchSize     = attribute.Key("db.operation.batch.size")
	AttrServerAddress   = attribute.Key("server.address")
	AttrServerPort      = attribute.Key("server.port")
	AttrErrorType       = attribute.Key("error.type")
	AttrNamespace       = attribute.Key("stickyroute.namespace")
	AttrService         = attribute.Key("stickyroute.service")
	AttrPod             = attribute.Key("stickyroute.pod")
	AttrFromPod         = attribute.Key("stickyroute.from_pod")
	AttrCache           = attribute.Key("stickyroute.cache")
	AttrStrategy        = attribute.Key("stickyroute.strategy")
	AttrLink            = attribute.Key("stickyroute.link")
	AttrPlaced          = attribute.Key("stickyroute.placed")
	AttrKeys            = attribute.Key("stickyroute.keys")
	AttrStoreOp         = attribute.Key("stickyroute.store.op")
	AttrOutcome         = attribute.Key("stickyroute.outcome")
	AttrCount           = attribute.Key("stickyroute.count")
	AttrDelay           = attribute.Key("stickyroute.delay_seconds")
	AttrPodCount        = attribute.Key("stickyroute.pod_count")
	AttrCacheKey        = attribute.Key("stickyroute.cache.key")
	AttrHealthCheckPass = attribute.Key("stickyroute.health_check.success")
)

// Tracer starts OpenTelemetry spans for the engine (it is an
// engine.Observer): one span "stickyroute.<Op>" per engine operation that
// reaches Redis, following the database semantic conventions for Redis
// (db.system.name, db.operation.name and db.stored_procedure.name of its
// last round trip, server.address) with the routing attributes (namespace,
// service, chosen pod, cache result, strategy, link kind). Cache hits make
// no span. With TracerConfig.RoundTripSpans each Redis round trip gets a
// client span of its own under the operation's, named after the command
// ("GET", "EVALSHA replace"). Placements, relinks, claim conflicts and
// invalidations are events on the operation's span.
//
// A user without a link is not an error, nor is a cancelled context, nor a
// claim refused because another pod holds the user: only real failures set
// the span's status to Error.
type Tracer struct {
	tracer     trace.Tracer
	server     []attribute.KeyValue
	roundTrips bool
	background bool
}

// TracerConfig tunes a Tracer.
type TracerConfig struct {
	// ServerAddress, when not empty, is the host:port of the Redis server
	// recorded as server.address and server.port; on a Redis Cluster give
	// the address the client was configured with.
	ServerAddress string
	// RoundTripSpans adds a client span per Redis round trip under the
	// operation's span (round trips outside a traced operation, such as the
	// publish of SetLoadState, make none). Off by default: a span costs a few microseconds, a
	// sizeable share of a loopback round trip, and the operation's span
	// already carries the database attributes.
	RoundTripSpans bool
	// Background traces the clients' refreshes of pod states and the
	// servers' heartbeats, each a root span. Off by default: they run every
	// period for every service and pod, whether or not anyone routes.
	Background bool
}

// spanKey is the context key under which a Tracer keeps the operation in
// progress, so that several tracers can observe one engine.
type spanKey struct{ t *Tracer }

// opSpan is a traced operation in progress: its span, and the command of its
// latest round trip, recorded on the span when it ends.
type opSpan struct {
	span          trace.Span
	command, proc string
	keys          int
}

// NewTracer returns a tracer on tp (the application's TracerProvider).
func NewTracer(tp trace.TracerProvider, cfg TracerConfig) *Tracer {
	t := &Tracer{tracer: tp.Tracer(TracerName), roundTrips: cfg.RoundTripSpans, background: cfg.Background}
	if cfg.ServerAddress != "" {
		host, port, err := net.SplitHostPort(cfg.ServerAddress)
		if err != nil {
			host = cfg.ServerAddress
		}
		t.server = append(t.server, AttrServerAddress.String(host))
		if p, err := strconv.Atoi(port); err == nil {
			t.server = append(t.server, AttrServerPort.Int(p))
		}
	}
	return t
}

// Begin implements engine.Observer: it starts op's span. The attributes are
// all set when it ends, in one call; an operation whose span does not
// record (is not sampled) leaves ctx as it was.
func (t *Tracer) Begin(ctx context.Context, op *engine.Op) context.Context {
	kind := trace.SpanKindClient // the operation reaches Redis
	name := ""
	switch op.Kind {
	case engine.OpRoundTrip:
		if !t.roundTrips || ctx.Value(spanKey{t}) == nil {
			// No span of its own, or no traced operation to hang it under.
			return ctx
		}
		name = op.Command
		if op.Script != "" {
			name += " " + op.Script
		}
	case engine.OpRefresh, engine.OpHeartbeat, engine.OpWorkload:
		if !t.background {
			// Hide it, and its round trips, from an enclosing operation.
			return context.WithValue(ctx, spanKey{t}, nil)
		}
		fallthrough
	default:
		name = "stickyroute." + op.Name
		if t.roundTrips {
			kind = trace.SpanKindInternal // its round trips are the client spans
		}
	}
	sctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(kind))
	if !span.IsRecording() {
		return ctx
	}
	return context.WithValue(sctx, spanKey{t}, &opSpan{span: span})
}

// End implements engine.Observer: it ends op's span with all its
// attributes. The outcome is recorded when it is not "ok"; a failure sets
// the Error status. Without round-trip spans, a round trip's end notes its
// command for the operation's span.
func (t *Tracer) End(ctx context.Context, op *engine.Op) {
	os, _ := ctx.Value(spanKey{t}).(*opSpan)
	if os == nil {
		return
	}
	if op.Kind == engine.OpRoundTrip && !t.roundTrips {
		// os is the operation's.
		os.command, os.proc, os.keys = op.Command, op.Script, op.Keys
		return
	}
	outcome := Outcome(op)
	failed := isFailure(outcome)
	buf := attrBufs.Get().(*[]attribute.KeyValue)
	attrs := (*buf)[:0]
	if op.Kind == engine.OpRoundTrip {
		attrs = append(attrs, AttrStoreOp.String(op.Name))
		os.command, os.proc, os.keys = op.Command, op.Script, op.Keys
	} else {
		attrs = append(attrs, AttrNamespace.String(op.Namespace))
		if op.Service != "" {
			attrs = append(attrs, AttrService.String(op.Service))
		}
		if op.Strategy != "" {
			attrs = append(attrs, AttrStrategy.String(op.Strategy))
		}
		if op.Pod != engine.NoPod {
			attrs = append(attrs, AttrPod.Int(op.Pod))
		}
		if op.Cache != engine.CacheNone {
			attrs = append(attrs, AttrCache.String(op.Cache.String()))
		}
		if op.Link != engine.LinkNone {
			attrs = append(attrs, AttrLink.String(op.Link.String()))
		}
		if op.Placed {
			attrs = append(attrs, AttrPlaced.Bool(true))
		}
		if op.Keys > 0 {
			attrs = append(attrs, AttrKeys.Int(op.Keys))
		}
	}
	if os.command != "" && (op.Kind == engine.OpRoundTrip || !t.roundTrips) {
		attrs = append(attrs, AttrDBSystem.String("redis"), AttrDBOperation.String(os.command))
		if os.proc != "" {
			attrs = append(attrs, AttrDBProcedure.String(os.proc))
		}
		if os.keys > 1 {
			attrs = append(attrs, AttrDBBatchSize.Int(os.keys))
		}
		attrs = append(attrs, t.server...)
	}
	if outcome != OutcomeOK {
		attrs = append(attrs, AttrOutcome.String(outcome))
	}
	if failed {
		attrs = append(attrs, AttrErrorType.String(outcome))
	}
	os.span.SetAttributes(attrs...) // copied into the span
	clear(attrs)
	*buf = attrs[:0]
	attrBufs.Put(buf)
	if failed {
		os.span.RecordError(op.Err)
		os.span.SetStatus(codes.Error, op.Err.Error())
	}
	os.span.End()
}

// attrBufs recycles the attribute lists End builds: SetAttributes copies
// them into the span.
var attrBufs = sync.Pool{New: func() any {
	b := make([]attribute.KeyValue, 0, 16)
	return &b
}}

// Note implements engine.Observer: placements, relinks, claim conflicts,
// invalidations and skipped state fields become events on the span in ctx
// (the operation's, when there is one).
func (t *Tracer) Note(ctx context.Context, n engine.Note) {
	os, _ := ctx.Value(spanKey{t}).(*opSpan)
	if os == nil {
		return
	}
	span := os.span
	switch n.Kind {
	case engine.NotePicked:
		span.AddEvent("stickyroute.picked", trace.WithAttributes(AttrPod.Int(n.Pod), AttrStrategy.String(n.Strategy)))
	case engine.NotePlaced:
		span.AddEvent("stickyroute.placed", trace.WithAttributes(AttrPod.Int(n.Pod)))
	case engine.NoteRelinked:
		span.AddEvent("stickyroute.relinked", trace.WithAttributes(AttrPod.Int(n.Pod), AttrFromPod.Int(n.From)))
	case engine.NoteClaimConflict:
		span.AddEvent("stickyroute.claim_conflict", trace.WithAttributes(AttrPod.Int(n.Pod), AttrFromPod.Int(n.From)))
	case engine.NoteInvalidated:
		span.AddEvent("stickyroute.invalidated", trace.WithAttributes(AttrCount.Int(n.Count), AttrDelay.Float64(n.Delay.Seconds())))
	case engine.NoteSkippedFields:
		span.AddEvent("stickyroute.skipped_fields", trace.WithAttributes(AttrCount.Int(n.Count)))
	}
}

// The old API's request tracer, for code that traces by hand.

// TraceRequest starts a span "stickyroute.<operation>" with attrs.
func (t *Tracer) TraceRequest(ctx context.Context, operation string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, "stickyroute."+operation, trace.WithAttributes(attrs...))
}

// TraceCacheOperation starts a span "stickyroute.cache.<operation>" recording
// the key and whether it hit. The key is recorded as given: do not pass
// personal data.
func (t *Tracer) TraceCacheOperation(ctx context.Context, operation, key string, hit bool) (context.Context, trace.Span) {
	res := engine.CacheMiss
	if hit {
		res = engine.CacheHit
	}
	return t.tracer.Start(ctx, "stickyroute.cache."+operation,
		trace.WithAttributes(AttrCacheKey.String(key), AttrCache.String(res.String())))
}

// TraceLoadBalancerOperation starts a span "stickyroute.balancer.<operation>"
// for a pick among podCount pods of service.
func (t *Tracer) TraceLoadBalancerOperation(ctx context.Context, operation, service string, podCount int) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, "stickyroute.balancer."+operation,
		trace.WithAttributes(AttrService.String(service), AttrPodCount.Int(podCount)))
}

// TraceHealthCheck starts a span "stickyroute.health_check" for a check of
// pod of service; a failed check sets the Error status.
func (t *Tracer) TraceHealthCheck(ctx context.Context, service string, pod int, success bool) (context.Context, trace.Span) {
	ctx, span := t.tracer.Start(ctx, "stickyroute.health_check",
		trace.WithAttributes(AttrService.String(service), AttrPod.Int(pod), AttrHealthCheckPass.Bool(success)))
	if !success {
		span.SetStatus(codes.Error, "health check failed")
	}
	return ctx, span
}

// AddEvent adds the event name with attrs to span.
func (t *Tracer) AddEvent(span trace.Span, name string, attrs ...attribute.KeyValue) {
	span.AddEvent(name, trace.WithAttributes(attrs...))
}

// SetStatus sets span's status: Ok when success, else Error with description.
func (t *Tracer) SetStatus(span trace.Span, success bool, description string) {
	if success {
		span.SetStatus(codes.Ok, "")
		return
	}
	span.SetStatus(codes.Error, description)
}

// RecordError records err on span and sets the Error status, unless err is
// nil or only says the caller gave up (a cancelled context), which is not a
// failure of the operation.
func (t *Tracer) RecordError(span trace.Span, err error) {
	if err == nil {
		return
	}
	class := ErrorClass(err)
	if !isFailure(class) {
		span.SetAttributes(AttrOutcome.String(class))
		return
	}
	span.SetAttributes(AttrErrorType.String(class))
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}
