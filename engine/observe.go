package engine

import (
	"context"
	"sync"
	"time"
)

// Observer is told what the engine does, for metrics and tracing. The engine
// declares it and imports no metrics or tracing library; package obs
// implements it with VictoriaMetrics metrics and OpenTelemetry spans, and an
// application may plug in its own.
//
// The engine calls Begin and End around every operation that reaches Redis
// (and around each Redis round trip, refresh and heartbeat inside it), and
// Note for what is not an operation. Cache hits are not observed unless
// ClientConfig.ObserveHits is set: a hit costs about 100 ns and the cache
// counts them itself (Client.CacheStats).
//
// Methods are called on the caller's goroutine, some of them from the Redis
// client's reading goroutine: they must be safe for concurrent use, fast, and
// must not block or call back into the engine.
type Observer interface {
	// Begin is called when op starts; op.Kind, Name, Namespace, Service and
	// Start are set. It returns the context op continues with: a tracer
	// returns ctx with op's span in it, so that the round trips op makes
	// become its children. End receives that context.
	Begin(ctx context.Context, op *Op) context.Context
	// End is called when op has ended, with the results filled in
	// (Duration, Err and whatever the kind of op reports). op is not used by
	// the engine after End returns, and must not be kept by the observer.
	End(ctx context.Context, op *Op)
	// Note reports an event that is not an operation (see NoteKind).
	Note(ctx context.Context, n Note)
}

// OpKind is what an Op is.
type OpKind uint8

const (
	// OpCall is a Client method: Name is the method's name, such as
	// "ComputeLinkedPod".
	OpCall OpKind = iota + 1
	// OpRoundTrip is one call of the store inside another operation: Name is
	// the store method, Command the Redis command it sends and Script the
	// name of the Lua script when Command runs one.
	OpRoundTrip
	// OpRefresh is a client's reload of one service's pod states (its health
	// check of the pods). Name is "refresh".
	OpRefresh
	// OpHeartbeat is one heartbeat round of a Server: publishing the pod's
	// state. Name is "heartbeat"; Pod is the server's pod.
	OpHeartbeat
	// OpWorkload is one workload round of a Server, every heartbeat period
	// apart from the publishes: reading the service's pod states and, on
	// the writer pod, writing the workload state. Name is "workload"; Pod
	// is the server's pod.
	OpWorkload
)

// String returns the kind's name.
func (k OpKind) String() string {
	switch k {
	case OpCall:
		return "call"
	case OpRoundTrip:
		return "round_trip"
	case OpRefresh:
		return "refresh"
	case OpHeartbeat:
		return "heartbeat"
	case OpWorkload:
		return "workload"
	}
	return "unknown"
}

// CacheResult says what the link cache answered for an operation.
type CacheResult uint8

const (
	// CacheNone means the operation did not consult the cache.
	CacheNone CacheResult = iota
	// CacheHit means the cache held a usable link: no Redis call was needed.
	CacheHit
	// CacheMiss means the cache held no link for the user.
	CacheMiss
	// CacheStale means the cache held a link to a pod that is no longer
	// routable, so Redis was asked.
	CacheStale
)

// String returns the result's name.
func (r CacheResult) String() string {
	switch r {
	case CacheHit:
		return "hit"
	case CacheMiss:
		return "miss"
	case CacheStale:
		return "stale"
	}
	return "none"
}

// LinkKind is the kind of link an operation found or wrote.
type LinkKind uint8

const (
	// LinkNone means no link was involved, or none exists.
	LinkNone LinkKind = iota
	// LinkTemporary is a link with a TTL (a client's placement).
	LinkTemporary
	// LinkPersistent is a link without a TTL (a server's claim).
	LinkPersistent
)

// String returns the kind's name.
func (k LinkKind) String() string {
	switch k {
	case LinkTemporary:
		return "temporary"
	case LinkPersistent:
		return "persistent"
	}
	return "none"
}

// Op describes one observed operation. The engine fills the fields that
// apply to the operation's Kind; the others stay zero.
type Op struct {
	Kind OpKind
	// Name names the operation (see OpKind).
	Name string
	// Namespace and Service name the service, when the operation has one.
	Namespace, Service string
	// Command and Script are, for an OpRoundTrip, the Redis command sent
	// ("GET", "SET", "HGETALL", "EVALSHA", "EVALSHA_RO") and the Lua script's
	// name when the command runs one.
	Command, Script string
	// Keys is the number of uids or keys the operation handles, when it
	// handles more than one (BatchGetLinkedPod, a pipelined round trip).
	// Set before End; the round trip of a batch learns it only then (its
	// chunks go out while its lookups are still finding cache misses).
	Keys int
	// Start is when the operation began; Duration is set before End.
	Start    time.Time
	Duration time.Duration
	// Pod is the operation's answer (the routed pod, or the server's pod),
	// NoPod when it has none.
	Pod int
	// Cache is what the link cache answered, for a Client operation.
	Cache CacheResult
	// Link is the kind of link the answer came from: found in Redis, or
	// written by this operation.
	Link LinkKind
	// Placed is true when the operation placed a new user (or moved one off
	// a pod that is no longer routable) with the client's strategy.
	Placed bool
	// Strategy names the placement strategy of the client.
	Strategy string
	// Err is the operation's error, nil on success. A user without a link
	// is not an error: Pod is NoPod and Err nil.
	Err error
}

// NoteKind says what a Note reports.
type NoteKind uint8

const (
	// NoteClientOpened reports a new Client. The note does not name it: an
	// observer that reads a client's CacheStats is handed the client by the
	// application (obs.Metrics.Watch).
	NoteClientOpened NoteKind = iota + 1
	// NoteClientClosed reports that a Client was closed; its CacheStats are
	// final.
	NoteClientClosed
	// NotePicked reports a pick of the client's balancer: Pod is the pod,
	// Duration the time the pick took, Strategy the strategy's name.
	NotePicked
	// NotePlaced reports a new user linked to Pod by this client.
	NotePlaced
	// NoteRelinked reports a user moved from pod From, which was no longer
	// routable, to Pod.
	NoteRelinked
	// NoteClaimConflict reports a race lost to another process: this client
	// wanted Pod but the user was linked to From meanwhile (or, from a
	// Server's TrySetLinkedPod, another pod From holds the user).
	NoteClaimConflict
	// NoteInvalidated reports Count cached links dropped because Redis said
	// they changed (Count is -1 when the tracking connection was lost: the
	// cache then re-reads what it holds). Delay, when not zero, is the time
	// from this client's own write of one of those keys to the invalidation
	// that followed: the lag of the tracking channel.
	NoteInvalidated
	// NoteSkippedFields reports Count pod-state fields of a service that
	// could not be parsed and were left out of a refresh (SPEC §3).
	NoteSkippedFields
)

// String returns the kind's name.
func (k NoteKind) String() string {
	switch k {
	case NoteClientOpened:
		return "client_opened"
	case NoteClientClosed:
		return "client_closed"
	case NotePicked:
		return "picked"
	case NotePlaced:
		return "placed"
	case NoteRelinked:
		return "relinked"
	case NoteClaimConflict:
		return "claim_conflict"
	case NoteInvalidated:
		return "invalidated"
	case NoteSkippedFields:
		return "skipped_fields"
	}
	return "unknown"
}

// Note is an event that is not an operation. The fields that do not apply to
// its Kind stay zero.
type Note struct {
	Kind               NoteKind
	Namespace, Service string
	Pod, From          int
	Count              int
	Strategy           string
	Duration, Delay    time.Duration
}

// observer is an Observer that may be nil: every method does nothing then,
// so call sites need no checks.
type observer struct{ o Observer }

// ops recycles the Op values handed to observers: an operation that reaches
// Redis then allocates nothing for its observation. An Op is back in the pool
// once End has returned (observers must not keep it).
var ops = sync.Pool{New: func() any { return new(Op) }}

// begin starts an operation described by op when there is an observer, and
// returns the context to go on with and the pooled Op (nil without an
// observer, which end and the callers accept).
func (x observer) begin(ctx context.Context, op Op) (context.Context, *Op) {
	if x.o == nil {
		return ctx, nil
	}
	p := ops.Get().(*Op)
	*p = op
	p.Start = time.Now()
	return x.o.Begin(ctx, p), p
}

// end ends op with err and recycles it.
func (x observer) end(ctx context.Context, op *Op, err error) {
	if op == nil {
		return
	}
	op.Duration = time.Since(op.Start)
	op.Err = err
	x.o.End(ctx, op)
	*op = Op{}
	ops.Put(op)
}

// call starts an OpCall.
func (x observer) call(ctx context.Context, name, ns, svc string, strategy string) (context.Context, *Op) {
	if x.o == nil {
		return ctx, nil
	}
	return x.begin(ctx, Op{Kind: OpCall, Name: name, Namespace: ns, Service: svc, Pod: NoPod, Strategy: strategy})
}

// rt starts an OpRoundTrip of the store call r for the service.
func (x observer) rt(ctx context.Context, r roundTrip, ns, svc string, keys int) (context.Context, *Op) {
	if x.o == nil {
		return ctx, nil
	}
	return x.begin(ctx, Op{Kind: OpRoundTrip, Name: r.name, Command: r.command, Script: r.script,
		Namespace: ns, Service: svc, Keys: keys, Pod: NoPod})
}

// note reports n.
func (x observer) note(ctx context.Context, n Note) {
	if x.o != nil {
		x.o.Note(ctx, n)
	}
}

// roundTrip names a store method and what it sends to Redis.
type roundTrip struct{ name, command, script string }

// The store calls the engine makes. Scripts run by EVALSHA (EVALSHA_RO when
// read-only); SetLinkedPodIfAbsentTracked sends CLIENT CACHING YES before
// its EVALSHA, in the same round trip.
var (
	rtGetTracked   = roundTrip{"GetLinkedPodTracked", "GET", ""}
	rtGet          = roundTrip{"GetLinkedPod", "GET", ""}
	rtBatchTracked = roundTrip{"LinkedPodsTracked", "MGET", ""}
	rtIfAbsentTemp = roundTrip{"SetLinkedPodIfAbsent", "EVALSHA", "place"}
	rtPlace        = roundTrip{"SetLinkedPodIfAbsentTracked", "EVALSHA", "place"}
	rtReplace      = roundTrip{"ReplaceLinkedPod", "EVALSHA", "replace"}
	rtLinkService  = roundTrip{"GetLinkService", "EVALSHA_RO", "linkservice"}
	rtSet          = roundTrip{"SetLinkedPod", "EVALSHA", "set"}
	rtTrySet       = roundTrip{"TrySetLinkedPod", "EVALSHA", "tryset"}
	rtRemove       = roundTrip{"RemoveLinkedPod", "EVALSHA", "remove"}
	rtRemoveID     = roundTrip{"RemoveLinkedPodWithId", "EVALSHA", "removeid"}
	rtPublishState = roundTrip{"PublishServiceState", "EVALSHA", "publishstate"}
	rtGetState     = roundTrip{"GetServiceState", "EVALSHA", "getstate"}
	rtSetWorkload  = roundTrip{"SetWorkloadState", "EVALSHA", "setworkload"}
)
