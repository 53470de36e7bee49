package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stickyroute/stickyroute/store"
)

// errStartPanicked marks, inside Start, a first publish that has not
// returned (it panicked).
var errStartPanicked = errors.New("engine: Start's publish panicked")

// stopPublishTimeout bounds each publish Stop makes on its own: the
// DenyNewCall at the start (within the caller's ctx) and the Shutdown at the
// end (detached from it, so that a cancelled ctx still withdraws the pod).
const stopPublishTimeout = time.Second

// lifecycle is where a Server is between NewServer and the end of Stop.
type lifecycle uint8

const (
	idle     lifecycle = iota // made, not started: nothing published
	starting                  // Start is making the first publish
	running                   // the heartbeat loop runs
	stopping                  // Stop is draining or withdrawing the pod
	closed                    // everything stopped; Start answers ErrClosed
)

// Server is one pod's side of a service (SPEC §5.4): it keeps the pod's load
// and routing state in memory, publishes them at once when they change and on
// every heartbeat, publishes the service's workload state when it is the
// lowest alive pod, and writes the links of the users the pod holds.
//
// Each publish also reads the operator's request for the pod (K5, SPEC §7:
// store.Redis.RequestRoutingState, stickyctl drain) in the same round trip
// and publishes the more restrictive of the pod's own routing state and the
// request; the own state is unchanged (GetRoutingState) and the request
// applied is RequestedRoutingState.
//
// Start begins publishing; Stop drains the pod (DenyNewCall for the drain
// window, then Shutdown) and ends every goroutine the Server started.
//
// A Server is safe for concurrent use by many goroutines, including
// concurrent calls of Start and Stop.
type Server struct {
	st          *store.Redis
	ns, svc     string
	pod         int
	timing      Timing
	drain       time.Duration
	workloadTTL int // seconds
	// loadEvery is ServerConfig.LoadInterval.
	loadEvery time.Duration
	// loadPublished is when SetLoadState's latest publish began (Unix ns);
	// soon asks the heartbeat loop for a publish at the end of the load
	// interval. Heartbeats do not count: a load set right after one is
	// published at once.
	loadPublished atomic.Int64
	soon          chan struct{}

	// load and routing are the pod's state in memory: read without a lock,
	// written by the setters (routing only under mu, see below).
	load    atomic.Int64
	routing atomic.Uint32 // a RoutingState
	// requested is the operator's request (a RoutingState) the latest
	// successful publish applied, RoutingUnknown when there was none.
	requested atomic.Uint32

	// pub is a one-slot semaphore held around each publish, from reading the
	// in-memory state to the Redis reply. Publishes are therefore applied in
	// the order they read the state, so the last one written always carries
	// the latest state (a heartbeat cannot overwrite Stop's Shutdown with the
	// Ready it read a moment before). A channel rather than a mutex, so a
	// caller waits no longer than its ctx.
	pub chan struct{}

	// mu guards the lifecycle fields below and every write of routing, so that
	// SetRoutingState cannot undo the DenyNewCall that Stop has just set.
	mu    sync.Mutex
	phase lifecycle
	// trans is closed when the current starting or stopping phase ends.
	trans chan struct{}
	// startCancel aborts the first publish of a Start in progress; stopReq
	// tells that Start a Stop is waiting, so it closes instead of idling.
	startCancel context.CancelFunc
	stopReq     bool
	// withdrawn is set when Stop is about to publish Shutdown (or a Server
	// never started is stopped): no link write is made from then on.
	withdrawn bool
	// loopCancel and loopDone stop the heartbeat loop and wait for its end.
	loopCancel context.CancelFunc
	loopDone   chan struct{}

	obs observer

	heartbeats     atomic.Uint64
	failures       atomic.Uint64
	workloadWrites atomic.Uint64
	// errMu guards lastErr and ignored.
	errMu   sync.Mutex
	lastErr error
	// ignored is the operator's request value the latest successful publish
	// found unusable and ignored; nil when it found a usable one or none.
	ignored error
}

// ServerStats are a Server's counters since NewServer. Only the periodic
// heartbeats are counted: Start, SetLoadState, SetRoutingState and Stop
// return their publish errors to the caller instead.
type ServerStats struct {
	// Heartbeats counts the periodic state publishes that succeeded.
	Heartbeats uint64
	// HeartbeatFailures counts the heartbeat rounds that failed: the state
	// publishes, the workload rounds (reading the states and, on the pod
	// that writes it, writing the workload state; every heartbeat period
	// too, apart from the publishes), and the publishes of a load
	// SetLoadState deferred to the end of ServerConfig.LoadInterval. A
	// failed round is retried after a quarter of the heartbeat period.
	// Rounds cut short by Stop are not counted.
	HeartbeatFailures uint64
	// LastError is the error of the latest failed round; nil again once a
	// round succeeds, so a non-nil value means the pod is failing right now.
	LastError error
	// WorkloadWrites counts the workload states (K4) this pod wrote as the
	// lowest alive pod of its service.
	WorkloadWrites uint64
	// IgnoredRequest, when not nil, is a *store.CorruptError naming the
	// operator's request (K5) the latest publish found and ignored because
	// it is not a routing state a request may hold: the pod published its
	// own state, as with no request. Nil again once a publish finds a valid
	// request or none. An operator's bad value never fails a publish.
	IgnoredRequest error
}

// NewServer checks cfg, fills its defaults (see ServerConfig and Timing) and
// returns a Server that publishes nothing until Start. Errors start with
// "engine: " and name the field at fault; an invalid name also matches
// store.ErrInvalidArgument.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Store == nil {
		return nil, configErr("ServerConfig.Store", "is nil")
	}
	if err := store.ValidateName("namespace", cfg.Namespace); err != nil {
		return nil, configErr("ServerConfig.Namespace", err.Error())
	}
	if err := store.ValidateName("service", cfg.Service); err != nil {
		return nil, configErr("ServerConfig.Service", err.Error())
	}
	if cfg.Pod < 0 || cfg.Pod > store.MaxPod {
		return nil, configErr("ServerConfig.Pod", fmt.Sprintf("%d is outside 0..%d", cfg.Pod, store.MaxPod))
	}
	timing, err := cfg.Timing.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.MaxRequest < 0 {
		return nil, configErr("ServerConfig.MaxRequest", fmt.Sprintf("%v is negative", cfg.MaxRequest))
	}
	if cfg.MaxRequest == 0 {
		cfg.MaxRequest = 5 * time.Second
	}
	minDrain := timing.Refresh + cfg.MaxRequest
	switch {
	case cfg.Drain < 0:
		return nil, configErr("ServerConfig.Drain", fmt.Sprintf("%v is negative", cfg.Drain))
	case cfg.Drain == 0:
		cfg.Drain = minDrain
	case cfg.Drain < minDrain:
		return nil, configErr("ServerConfig.Drain", fmt.Sprintf("%v is below Refresh + MaxRequest (%v)", cfg.Drain, minDrain))
	}
	if cfg.Load < 0 {
		return nil, configErr("ServerConfig.Load", fmt.Sprintf("%d is negative", cfg.Load))
	}
	switch {
	case cfg.LoadInterval < 0 || cfg.LoadInterval > timing.Heartbeat:
		return nil, configErr("ServerConfig.LoadInterval", fmt.Sprintf("%v is outside 0..Heartbeat (%v)", cfg.LoadInterval, timing.Heartbeat))
	case cfg.LoadInterval == 0:
		cfg.LoadInterval = max(timing.Heartbeat/20, 10*time.Millisecond)
	}
	switch cfg.Routing {
	case RoutingUnknown:
		cfg.Routing = Ready
	case Ready, DenyNewCall, Shutdown:
	default:
		return nil, configErr("ServerConfig.Routing", fmt.Sprintf("%d is not Ready, DenyNewCall or Shutdown", cfg.Routing))
	}

	// The workload state outlives its writer by the time the next pod needs
	// to take over: the staleness window (until the writer counts as dead)
	// plus two heartbeats (until that pod's next round), in whole seconds as
	// Redis counts them.
	ttl := (timing.Staleness + 2*timing.Heartbeat + time.Second - 1) / time.Second
	s := &Server{
		st:          cfg.Store,
		ns:          cfg.Namespace,
		svc:         cfg.Service,
		pod:         cfg.Pod,
		timing:      timing,
		drain:       cfg.Drain,
		workloadTTL: int(min(max(ttl, 1), store.MaxTTL)),
		pub:         make(chan struct{}, 1),
		loadEvery:   cfg.LoadInterval,
		soon:        make(chan struct{}, 1),
		obs:         observer{cfg.Observer},
	}
	s.load.Store(cfg.Load)
	s.routing.Store(uint32(cfg.Routing))
	return s, nil
}

// SetLoadState sets the pod's load (≥ 0; lower is better, in the
// application's unit) and publishes it at once, or, when the pod published
// less than ServerConfig.LoadInterval ago, at the end of that interval
// (returning nil without waiting; many calls within an interval make one
// publish of the latest load). Before Start it is only kept in memory, and
// Start publishes it. After Stop it returns ErrClosed. The load stays set
// when the publish fails; the next heartbeat publishes it again.
func (s *Server) SetLoadState(ctx context.Context, load int64) error {
	if ctx == nil {
		return errNilContext
	}
	if load < 0 {
		return &store.InvalidArgumentError{Arg: "load", Reason: strconv.FormatInt(load, 10) + " is negative"}
	}
	s.mu.Lock()
	phase := s.phase
	if phase != closed {
		s.load.Store(load)
	}
	s.mu.Unlock()
	switch phase {
	case idle:
		return nil
	case closed:
		return ErrClosed
	}
	if time.Since(time.Unix(0, s.loadPublished.Load())) < s.loadEvery {
		select {
		case s.soon <- struct{}{}:
		default: // a publish is due already; it will carry this load
		}
		return nil
	}
	s.loadPublished.Store(time.Now().UnixNano())
	return s.publish(ctx)
}

// GetLoadState returns the pod's load as last set. It does not block.
func (s *Server) GetLoadState() int64 { return s.load.Load() }

// SetRoutingState sets whether the pod takes users (Ready, DenyNewCall or
// Shutdown) and publishes it at once. Before Start it is only kept in memory,
// and Start publishes it. Once Stop has begun the routing state belongs to
// Stop and SetRoutingState returns ErrClosed. The state stays set when the
// publish fails; the next heartbeat publishes it again.
func (s *Server) SetRoutingState(ctx context.Context, st RoutingState) error {
	if ctx == nil {
		return errNilContext
	}
	switch st {
	case Ready, DenyNewCall, Shutdown:
	default:
		return &store.InvalidArgumentError{Arg: "routing", Reason: st.String() + " is not Ready, DenyNewCall or Shutdown"}
	}
	s.mu.Lock()
	phase := s.phase
	if phase < stopping {
		s.routing.Store(uint32(st))
	}
	s.mu.Unlock()
	switch phase {
	case idle:
		return nil
	case stopping, closed:
		return ErrClosed
	}
	return s.publish(ctx)
}

// GetRoutingState returns the pod's routing state as last set (by the
// application, or by Stop). An operator's request does not change it: the
// pod publishes the more restrictive of the two (see RequestedRoutingState).
// It does not block.
func (s *Server) GetRoutingState() RoutingState { return RoutingState(s.routing.Load()) }

// RequestedRoutingState returns the operator's request (DenyNewCall or
// Shutdown, SPEC §7) that the latest successful publish read and applied, and
// true; or RoutingUnknown and false when that publish found no request (or
// ignored an unusable one, see ServerStats.IgnoredRequest), or before the
// first publish. The pod published the more restrictive of GetRoutingState
// and the request. It does not block.
func (s *Server) RequestedRoutingState() (RoutingState, bool) {
	r := RoutingState(s.requested.Load())
	return r, r != RoutingUnknown
}

// beginLink starts name, a link write to pod (store.NoPod for a removal),
// with the check every link write makes first, and then begins its Op; on an
// error no Op is begun. A nil context is an invalid argument, and once Stop
// withdraws the pod (or the Server was stopped without starting) every write
// returns ErrClosed. While Stop drains the pod, drain is true for a write
// that links a user to this pod: it is made only for a user already linked
// to it.
func (s *Server) beginLink(ctx context.Context, name, ns, svc string, pod int) (_ context.Context, op *Op, drain bool, err error) {
	if ctx == nil {
		return nil, nil, false, errNilContext
	}
	s.mu.Lock()
	withdrawn := s.withdrawn
	drain = s.phase == stopping && pod == s.pod
	s.mu.Unlock()
	if withdrawn {
		return ctx, nil, false, ErrClosed
	}
	ctx, op = s.obs.call(ctx, name, ns, svc, "")
	return ctx, op, drain, nil
}

// drainClaim links uid to this draining pod persistently only when its link
// points at the pod already (a compare-and-set): a pod that stops taking
// users still keeps the ones it has. A user linked elsewhere, or not at all,
// is refused with ErrDraining and owner the pod linked, or store.NoPod.
func (s *Server) drainClaim(ctx context.Context, ns, uid, svc string) (owner int, err error) {
	rctx, rt := s.obs.rt(ctx, rtReplace, ns, svc, 1)
	replaced, actual, err := s.st.ReplaceLinkedPod(rctx, ns, uid, svc, s.pod, s.pod, store.Persistent)
	s.obs.end(rctx, rt, err)
	switch {
	case err != nil:
		return store.NoPod, err
	case !replaced:
		return actual, ErrDraining
	}
	return s.pod, nil
}

// SetLinkedPod links uid to pod for svc in namespace ns with a persistent
// link, whoever held the user before (a forced write), and returns the pod
// linked before, or store.NoPod. It does not need Start. While Stop drains
// this pod, a link to it is written only for a user linked to it already
// (else ErrDraining); after Stop, SetLinkedPod returns ErrClosed.
func (s *Server) SetLinkedPod(ctx context.Context, ns, uid, svc string, pod int) (previous int, err error) {
	ctx, op, drain, err := s.beginLink(ctx, "SetLinkedPod", ns, svc, pod)
	if err != nil {
		return store.NoPod, err
	}
	if drain {
		previous, err = s.drainClaim(ctx, ns, uid, svc)
	} else {
		rctx, rt := s.obs.rt(ctx, rtSet, ns, svc, 1)
		previous, err = s.st.SetLinkedPod(rctx, ns, uid, svc, pod, store.Persistent)
		s.obs.end(rctx, rt, err)
	}
	s.endLinkOp(ctx, op, pod, LinkPersistent, err)
	return previous, err
}

// endLinkOp ends op, a link operation of the server that answered pod.
func (s *Server) endLinkOp(ctx context.Context, op *Op, pod int, link LinkKind, err error) {
	if op != nil {
		op.Pod, op.Link = pod, link
		s.obs.end(ctx, op, err)
	}
}

// TrySetLinkedPod claims uid for pod with a persistent link unless another
// pod already holds a persistent link to the user. It returns the owner
// afterwards: pod when claimed; on a refusal the owner and a *ClaimedError
// naming it (errors.Is(err, ErrClaimed)), with nothing changed. A temporary
// link (a client's reservation) does not stop the claim. While Stop drains
// this pod, it claims for it only a user linked to it already (else
// ErrDraining, with the pod linked or store.NoPod); after Stop it returns
// ErrClosed.
func (s *Server) TrySetLinkedPod(ctx context.Context, ns, uid, svc string, pod int) (owner int, err error) {
	ctx, op, drain, err := s.beginLink(ctx, "TrySetLinkedPod", ns, svc, pod)
	if err != nil {
		return store.NoPod, err
	}
	if drain {
		owner, err = s.drainClaim(ctx, ns, uid, svc)
		s.endLinkOp(ctx, op, owner, LinkPersistent, err)
		return owner, err
	}
	rctx, rt := s.obs.rt(ctx, rtTrySet, ns, svc, 1)
	c, err := s.st.TrySetLinkedPod(rctx, ns, uid, svc, pod, store.Persistent)
	s.obs.end(rctx, rt, err)
	switch {
	case err != nil:
		c.Owner = store.NoPod
	case !c.Claimed:
		s.obs.note(ctx, Note{Kind: NoteClaimConflict, Namespace: ns, Service: svc, Pod: pod, From: c.Owner})
		err = &ClaimedError{Owner: c.Owner}
	}
	s.endLinkOp(ctx, op, c.Owner, LinkPersistent, err)
	return c.Owner, err
}

// RemoveLinkedPod deletes uid's link to svc now, whichever pod it points at,
// and reports whether there was one. After Stop it returns ErrClosed.
func (s *Server) RemoveLinkedPod(ctx context.Context, ns, uid, svc string) (existed bool, err error) {
	ctx, op, _, err := s.beginLink(ctx, "RemoveLinkedPod", ns, svc, store.NoPod)
	if err != nil {
		return false, err
	}
	rctx, rt := s.obs.rt(ctx, rtRemove, ns, svc, 1)
	existed, err = s.st.RemoveLinkedPod(rctx, ns, uid, svc, store.Persistent)
	s.obs.end(rctx, rt, err)
	s.endLinkOp(ctx, op, store.NoPod, LinkNone, err)
	return existed, err
}

// RemoveLinkedPodWithId removes uid's link to svc only while it still points
// at pod (compare-and-delete), and reports whether it did. persistSeconds -1
// deletes the link now; persistSeconds > 0 keeps it readable that many
// seconds as a temporary link (a grace period during which clients still send
// the user to pod), and drops it from the uid's persistent links at once. Any
// other value is an error matching store.ErrInvalidArgument. After Stop it
// returns ErrClosed.
func (s *Server) RemoveLinkedPodWithId(ctx context.Context, ns, uid, svc string, pod, persistSeconds int) (removed bool, err error) {
	if persistSeconds != store.Persistent && (persistSeconds <= 0 || persistSeconds > store.MaxTTL) {
		return false, &store.InvalidArgumentError{Arg: "persistSeconds",
			Reason: strconv.Itoa(persistSeconds) + " is neither -1 (delete now) nor 1.." + strconv.Itoa(store.MaxTTL) + " seconds"}
	}
	ctx, op, _, err := s.beginLink(ctx, "RemoveLinkedPodWithId", ns, svc, store.NoPod)
	if err != nil {
		return false, err
	}
	rctx, rt := s.obs.rt(ctx, rtRemoveID, ns, svc, 1)
	removed, err = s.st.RemoveLinkedPodWithId(rctx, ns, uid, svc, pod, persistSeconds)
	s.obs.end(rctx, rt, err)
	link := LinkNone
	if persistSeconds > 0 {
		link = LinkTemporary
	}
	s.endLinkOp(ctx, op, pod, link, err)
	return removed, err
}

// Start publishes the pod's state at once and then every heartbeat period,
// until Stop. ctx bounds only the first publish: when it fails, Start returns
// its error and the Server stays unstarted, so Start may be called again.
// Start on a started Server returns nil; after Stop it returns ErrClosed.
func (s *Server) Start(ctx context.Context) error {
	// Another Start in progress is publishing; its outcome is ours.
	if err := s.settle(ctx, false); err != nil {
		return err
	}
	switch s.phase {
	case running:
		s.mu.Unlock()
		return nil
	case stopping, closed:
		s.mu.Unlock()
		return ErrClosed
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.phase, s.trans, s.startCancel = starting, make(chan struct{}), cancel
	s.mu.Unlock()

	// Deferred, so that a panic in the publish (an Observer's) leaves the
	// Server unstarted rather than starting forever.
	err := errStartPanicked
	defer func() {
		if err != errStartPanicked {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.startCancel = nil
		s.phase = idle
		if s.stopReq {
			s.phase, s.withdrawn = closed, true
		}
		close(s.trans)
	}()
	err = s.publish(pctx)

	s.mu.Lock()
	defer s.mu.Unlock()
	defer close(s.trans)
	s.startCancel = nil
	switch {
	case err == nil:
		// Even when a Stop is waiting: the pod is visible now, so it must be
		// drained and withdrawn like any started pod.
		s.phase = running
		lctx, lcancel := context.WithCancel(context.Background())
		s.loopCancel, s.loopDone = lcancel, make(chan struct{})
		go s.loop(lctx, s.loopDone)
		return nil
	case s.stopReq:
		// Stop cut the first publish short. The command may still reach
		// Redis (it was sent before it was abandoned): withdraw the pod
		// after it, on the same connection, so that a Ready landing late
		// is overwritten rather than left alive until it goes stale.
		s.phase, s.withdrawn = closed, true
		s.routing.Store(uint32(Shutdown))
		_ = s.publishWithin(context.WithoutCancel(ctx))
		return ErrClosed
	default:
		s.phase = idle
		return err
	}
}

// Stop takes the pod out of service and ends every goroutine of the Server:
// it publishes DenyNewCall at once (existing users stay, no new ones come;
// a pod the application had set to Shutdown stays Shutdown), keeps
// heartbeating for the drain window so clients see it, then stops the
// heartbeats and publishes Shutdown. When ctx ends before the drain window,
// Stop skips the rest of the wait, still publishes Shutdown (with a short
// context of its own) and stops, and returns ctx.Err(). A failed Shutdown
// publish is returned too; the pod then disappears when its state goes stale.
//
// Stop on a Server never started publishes nothing. Stop is idempotent: a
// call during another Stop waits for it (or for its own ctx), and later calls
// return nil.
func (s *Server) Stop(ctx context.Context) error {
	if err := s.settle(ctx, true); err != nil {
		return err
	}
	switch s.phase {
	case closed:
		s.mu.Unlock()
		return nil
	case idle:
		s.phase, s.withdrawn = closed, true
		s.routing.Store(uint32(Shutdown))
		s.mu.Unlock()
		return nil
	case stopping:
		return s.awaitTransition(ctx)
	}
	s.phase, s.trans = stopping, make(chan struct{})
	if s.GetRoutingState() != Shutdown {
		s.routing.Store(uint32(DenyNewCall))
	}
	s.mu.Unlock()
	// Deferred, so that the Server ends closed with every goroutine stopped
	// even when a publish panics (an Observer's).
	finished := false
	defer func() {
		if !finished {
			s.loopCancel()
			<-s.loopDone
			s.mu.Lock()
			s.withdrawn, s.phase = true, closed
			close(s.trans)
			s.mu.Unlock()
		}
	}()

	// The heartbeats keep publishing DenyNewCall through the drain, so a
	// failure here is retried by them.
	_ = s.publishWithin(ctx)

	var drainErr error
	t := time.NewTimer(s.drain)
	select {
	case <-t.C:
	case <-ctx.Done():
		drainErr = ctx.Err()
	}
	t.Stop()

	s.loopCancel()
	<-s.loopDone

	// From here on no write names this pod: the Shutdown below withdraws it.
	s.mu.Lock()
	s.withdrawn = true
	s.routing.Store(uint32(Shutdown))
	s.mu.Unlock()
	pubErr := s.publishWithin(context.WithoutCancel(ctx))

	s.mu.Lock()
	s.phase = closed
	close(s.trans)
	s.mu.Unlock()
	finished = true
	if pubErr != nil {
		pubErr = fmt.Errorf("engine: publishing Shutdown: %w", pubErr)
	}
	return errors.Join(drainErr, pubErr)
}

// settle locks s.mu and waits out a Start in progress, for Start and Stop,
// which act on the phase it ends in. With abort (Stop) it cuts that Start's
// first publish short, whose wait is short once cancelled, and waits for it
// regardless of ctx; else it waits for the publish, or for ctx. It returns
// with s.mu held, or with an error and s.mu released.
func (s *Server) settle(ctx context.Context, abort bool) error {
	if ctx == nil {
		return errNilContext
	}
	s.mu.Lock()
	for s.phase == starting {
		wait := ctx
		if abort {
			s.stopReq = true
			s.startCancel()
			wait = context.Background()
		}
		if err := s.awaitTransition(wait); err != nil {
			return err
		}
		s.mu.Lock()
	}
	return nil
}

// awaitTransition waits for the starting or stopping phase in progress to
// end, or for ctx to, and returns ctx.Err() in the latter case. It is called
// with s.mu held and returns with it released.
func (s *Server) awaitTransition(ctx context.Context) error {
	trans := s.trans
	s.mu.Unlock()
	select {
	case <-trans:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns the Server's counters. It does not block on Redis.
func (s *Server) Stats() ServerStats {
	s.errMu.Lock()
	last, ignored := s.lastErr, s.ignored
	s.errMu.Unlock()
	return ServerStats{
		Heartbeats:        s.heartbeats.Load(),
		HeartbeatFailures: s.failures.Load(),
		LastError:         last,
		WorkloadWrites:    s.workloadWrites.Load(),
		IgnoredRequest:    ignored,
	}
}

// publish writes the pod's in-memory state to K3 (see pub for the ordering),
// made more restrictive by the operator's request in K5 when there is one,
// and records the request applied.
func (s *Server) publish(ctx context.Context) error {
	select {
	case s.pub <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.pub }()
	// A load beyond int only exists on 32-bit platforms; it publishes as the largest.
	load := int(min(s.load.Load(), math.MaxInt))
	rctx, rt := s.obs.rt(ctx, rtPublishState, s.ns, s.svc, 1)
	p, err := s.st.PublishServiceState(rctx, s.ns, s.svc, s.pod, load, s.GetRoutingState())
	s.obs.end(rctx, rt, err)
	if err != nil {
		return err
	}
	s.requested.Store(uint32(p.Requested))
	var ignored error
	if p.Ignored != nil {
		ignored = p.Ignored
	}
	s.errMu.Lock()
	s.ignored = ignored
	s.errMu.Unlock()
	return nil
}

// publishWithin publishes with stopPublishTimeout at the most (less when ctx
// ends sooner): the publishes of a Start cut short and of Stop.
func (s *Server) publishWithin(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, stopPublishTimeout)
	defer cancel()
	return s.publish(ctx)
}

// loop runs the heartbeats and the workload duty until ctx ends, then
// closes done. The two run apart, so that a slow Redis delays the state
// publishes by one round trip at most, never by the workload's two.
func (s *Server) loop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.rounds(ctx, nil, s.workload) })
	s.rounds(ctx, s.soon, s.beat)
}

// rounds runs round until ctx ends: a heartbeat period from start to start
// after a round that succeeded, so that its own latency does not push the
// pod toward the staleness limit, else a quarter of one. A signal on soon
// (nil for none) runs publishSoon between two rounds.
func (s *Server) rounds(ctx context.Context, soon <-chan struct{}, round func(context.Context) bool) {
	t := time.NewTimer(s.timing.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-soon:
			s.publishSoon(ctx)
			continue
		case <-t.C:
		}
		began := time.Now()
		if round(ctx) {
			t.Reset(max(s.timing.Heartbeat-time.Since(began), 0))
		} else {
			t.Reset(s.timing.Heartbeat / 4)
		}
	}
}

// publishSoon publishes the load SetLoadState set, at the end of the load
// interval that began with its previous publish.
func (s *Server) publishSoon(ctx context.Context) {
	at := time.Unix(0, s.loadPublished.Load()).Add(s.loadEvery)
	if wait := time.Until(at); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	s.loadPublished.Store(time.Now().UnixNano())
	rctx, cancel := context.WithTimeout(ctx, s.roundTimeout())
	defer cancel()
	if err := s.publish(rctx); err != nil && ctx.Err() == nil {
		s.failures.Add(1)
		s.setLastErr(err)
	}
}

// roundTimeout bounds each heartbeat publish and workload round: long
// enough for a slow Redis to answer (a deadline cut short also drops the
// Redis client's connection when it is idle), short enough that a pod whose
// publishes hang is retried before it goes stale. Staleness ≥ 3 × Heartbeat,
// so it is at least 2 × Heartbeat.
func (s *Server) roundTimeout() time.Duration { return s.timing.Staleness - s.timing.Heartbeat }

// beat runs one heartbeat: publish the pod's state. It reports whether the
// publish succeeded.
func (s *Server) beat(ctx context.Context) bool {
	rctx, cancel := context.WithTimeout(ctx, s.roundTimeout())
	defer cancel()
	rctx, op := s.obs.begin(rctx, Op{Kind: OpHeartbeat, Name: "heartbeat", Namespace: s.ns, Service: s.svc, Pod: s.pod})
	err := s.publish(rctx)
	if err == nil {
		s.heartbeats.Add(1)
	}
	return s.roundEnded(ctx, rctx, op, err)
}

// roundEnded ends a heartbeat or workload round with err, counting a
// failure, and reports whether the round succeeded.
func (s *Server) roundEnded(ctx, rctx context.Context, op *Op, err error) bool {
	if err == nil {
		s.obs.end(rctx, op, nil)
		s.setLastErr(nil)
		return true
	}
	if ctx.Err() != nil {
		// Stop cut the round short: not a failure of the pod or of Redis.
		s.obs.end(rctx, op, ctx.Err())
		return true
	}
	s.obs.end(rctx, op, err)
	s.failures.Add(1)
	s.setLastErr(err)
	return false
}

// workload runs one workload round: writeWorkload, whose round trips each
// get roundTimeout. It reports whether the round succeeded.
func (s *Server) workload(ctx context.Context) bool {
	rctx, op := s.obs.begin(ctx, Op{Kind: OpWorkload, Name: "workload", Namespace: s.ns, Service: s.svc, Pod: s.pod})
	return s.roundEnded(ctx, rctx, op, s.writeWorkload(rctx))
}

func (s *Server) setLastErr(err error) {
	s.errMu.Lock()
	s.lastErr = err
	s.errMu.Unlock()
}

// writeWorkload reads the service's pod states and, when this pod is the
// writer, publishes the workload state (K4). Liveness is judged on the Redis
// server's clock, read in the same round trip as the states.
//
// The writer is the lowest alive pod that is not Shutdown, or the lowest
// alive pod when all are Shutdown. Skipping Shutdown pods hands the duty over
// as soon as the writer withdraws: a stopped pod stays "alive" for the
// staleness window but no longer heartbeats, and waiting for it to go stale
// would let K4 expire meanwhile.
func (s *Server) writeWorkload(ctx context.Context) error {
	tctx, cancel := context.WithTimeout(ctx, s.roundTimeout())
	defer cancel()
	rctx, rt := s.obs.rt(tctx, rtGetState, s.ns, s.svc, 1)
	st, err := s.st.GetServiceState(rctx, s.ns, s.svc)
	s.obs.end(rctx, rt, err)
	if err != nil {
		return err
	}
	stale := s.timing.Staleness.Milliseconds()
	alive, accepting := 0, 0
	writer, lowest := store.NoPod, store.NoPod
	for _, p := range st.Pods { // sorted by pod index
		if st.Now-p.Updated > stale {
			continue
		}
		alive++
		if p.Routing == Ready {
			accepting++
		}
		if lowest == store.NoPod {
			lowest = p.Pod
		}
		if writer == store.NoPod && p.Routing != Shutdown {
			writer = p.Pod
		}
	}
	if writer == store.NoPod {
		writer = lowest
	}
	if writer != s.pod {
		return nil
	}
	tctx, cancel = context.WithTimeout(ctx, s.roundTimeout())
	defer cancel()
	rctx, rt = s.obs.rt(tctx, rtSetWorkload, s.ns, s.svc, 1)
	_, err = s.st.SetWorkloadState(rctx, s.ns, s.svc, accepting, alive, s.workloadTTL)
	s.obs.end(rctx, rt, err)
	if err != nil {
		return err
	}
	s.workloadWrites.Add(1)
	return nil
}
