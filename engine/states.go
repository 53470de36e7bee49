package engine

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v4"

	"github.com/stickyroute/stickyroute/internal/clock"
	"github.com/stickyroute/stickyroute/lb"
	"github.com/stickyroute/stickyroute/store"
)

// EventKind says what changed about a pod.
type EventKind uint8

const (
	// EventUnknown is the zero value.
	EventUnknown EventKind = iota
	// EventSeen: the pod was seen for the first time.
	EventSeen
	// EventRouting: the pod published another routing state.
	EventRouting
	// EventStale: the pod stopped heartbeating (no longer alive).
	EventStale
	// EventAlive: a stale pod heartbeats again.
	EventAlive
	// EventGone: the pod's state was removed from Redis.
	EventGone
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case EventSeen:
		return "seen"
	case EventRouting:
		return "routing"
	case EventStale:
		return "stale"
	case EventAlive:
		return "alive"
	case EventGone:
		return "gone"
	}
	return "unknown"
}

// Event is a change of one pod's routing, seen at a refresh.
type Event struct {
	Kind               EventKind
	Namespace, Service string
	Pod                int
	// From and To are the routing states before and after (RoutingUnknown
	// before a first sighting, after a pod is gone).
	From, To RoutingState
}

// States is a client's view of the pod states of every service it has asked
// about (the old API's route info driver and service state cache). Each
// service's pods are an immutable snapshot behind an atomic pointer, reloaded
// every refresh period in the background and on demand on first use. Safe
// for concurrent use. Once the
// client is closed, every method returns ErrClosed (IsPodRoutable and
// IsPodAvailable false; Subscribe delivers nothing) and reads nothing.
type States struct {
	store  *store.Redis
	timing Timing
	clk    *clock.Coarse
	newBal func() (*lb.Balancer, error)
	obs    observer
	// deg is the client's degraded mode, told of every refresh (degraded.go).
	deg *degraded

	// services are the services asked about, read without a lock (a
	// routable check is a hot path); mu serializes their creation.
	services *xsync.Map[[2]string, *service]
	mu       sync.Mutex

	subsMu sync.Mutex // guards subs
	subs   []*subscriber

	// kick wakes the refresher early, to load a service seen for the first
	// time or after a call found the store failing.
	kick chan struct{}
	// early receives the views that placed earlyAfter users since their
	// last refresh (placement.go); earlyEvery is the least time between two
	// refreshes of a view it asks for, weightDecay the time constant of the
	// fleet estimate, in ms.
	early       chan *view
	earlyEvery  int64
	weightDecay int64
	// detect is how long a refresh waits for Redis before Redis counts as
	// unreachable (DegradedConfig.DetectAfter).
	detect time.Duration
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	// closed is set by close: the methods then answer ErrClosed and read
	// nothing.
	closed atomic.Bool
}

// usable is the check every method with a context makes first.
func (s *States) usable(ctx context.Context) error { return usable(ctx, &s.closed) }

// subscriber delivers events to one callback from its own goroutine, so a
// slow callback never holds up a refresh.
type subscriber struct {
	fn      func(Event)
	mu      sync.Mutex
	queue   []Event
	dropped uint64
	wake    chan struct{}
	done    chan struct{}
}

// maxQueued bounds a subscriber's backlog; older events are dropped first.
const maxQueued = 4096

func newStates(st *store.Redis, t Timing, detect time.Duration, clk *clock.Coarse, newBal func() (*lb.Balancer, error), obs observer, deg *degraded) *States {
	s := &States{
		store: st, timing: t, clk: clk, newBal: newBal, obs: obs, deg: deg,
		services:    xsync.NewMap[[2]string, *service](),
		kick:        make(chan struct{}, 1),
		early:       make(chan *view, 16),
		earlyEvery:  max(t.Refresh.Milliseconds()/10, 5),
		weightDecay: max(4*t.Refresh.Milliseconds(), 1),
		detect:      detect,
		stop:        make(chan struct{}),
	}
	s.wg.Add(1)
	go s.refresher()
	return s
}

// refresher reloads every known service each refresh period, and a view
// on its own when it asks for an early refresh.
func (s *States) refresher() {
	defer s.wg.Done()
	t := time.NewTicker(s.timing.Refresh)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case v := <-s.early:
			s.refresh(v)
			continue
		case <-t.C:
		case <-s.kick:
		}
		var wg sync.WaitGroup
		for _, sv := range s.services.All() {
			// In parallel: an unreachable Redis costs one detection window,
			// not one per service.
			wg.Go(func() { s.refresh(sv.view) })
		}
		wg.Wait()
	}
}

// refresh loads v's pod states for the refresher and reports the outcome
// to the degraded mode. A refresh waits for Redis up to the detection
// window: a slow Redis is waited on, and only one that does not answer
// within the window (or refuses or drops the connection) is unreachable.
// During an outage too: a Redis that answers within the window is
// reachable again, however slow; and a refresh waiting on a Redis that
// comes back gets its answer as soon as it does.
func (s *States) refresh(v *view) {
	ctx, cancel := context.WithTimeout(context.Background(), s.detect)
	defer cancel()
	if v.snap.Load() != nil {
		v.waiting.Store(s.clk.Millis())
		defer v.waiting.Store(0)
	}
	// A failed refresh keeps the last snapshot: pods age out of it by their
	// aliveUntil, so a Redis outage cannot keep a dead pod routable beyond
	// the degraded mode's MaxStaleness.
	err := s.load(ctx, v)
	s.deg.loaded(v, err, ctx.Err() != nil)
}

// register returns the interned service of (ns, name), creating it (without
// loading its pod states) on first sight.
func (s *States) register(ns, name string) (*service, error) {
	key := [2]string{ns, name}
	if sv, ok := s.services.Load(key); ok {
		return sv, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv, ok := s.services.Load(key); ok {
		return sv, nil
	}
	if err := store.ValidateName("namespace", ns); err != nil {
		return nil, err
	}
	if err := store.ValidateName("service", name); err != nil {
		return nil, err
	}
	bal, err := s.newBal()
	if err != nil {
		return nil, err
	}
	sv := &service{ns: ns, name: name, hash: serviceHash(ns, name)}
	sv.view = &view{svc: sv, bal: bal}
	s.services.Store(key, sv)
	return sv, nil
}

// service returns the interned service of (ns, name), loading its pod states
// on first use.
func (s *States) service(ctx context.Context, ns, name string) (*service, error) {
	sv, err := s.register(ns, name)
	if err != nil {
		return nil, err
	}
	if sv.view.snap.Load() == nil {
		if err := s.load(ctx, sv.view); err != nil && sv.view.snap.Load() == nil {
			return nil, err
		}
	}
	return sv, nil
}

// load reads the service's pod states and publishes a new snapshot: the
// client's health check of the pods, observed as an OpRefresh.
func (s *States) load(ctx context.Context, v *view) error {
	ctx, op := s.obs.begin(ctx, Op{Kind: OpRefresh, Name: "refresh", Namespace: v.svc.ns, Service: v.svc.name, Pod: NoPod})
	err := s.reload(ctx, v, op)
	s.obs.end(ctx, op, err)
	return err
}

// reload is load; op (may be nil) learns the number of pods.
func (s *States) reload(ctx context.Context, v *view, op *Op) error {
	v.loadMu.Lock()
	defer v.loadMu.Unlock()
	rctx, rt := s.obs.rt(ctx, rtGetState, v.svc.ns, v.svc.name, 1)
	st, err := s.store.GetServiceState(rctx, v.svc.ns, v.svc.name)
	s.obs.end(rctx, rt, err)
	if err != nil {
		return err
	}
	if op != nil {
		op.Keys = len(st.Pods)
	}
	if len(st.Skipped) > 0 {
		s.obs.note(ctx, Note{Kind: NoteSkippedFields, Namespace: v.svc.ns, Service: v.svc.name, Count: len(st.Skipped)})
	}
	local := s.clk.Millis()
	// When the reply was read, exactly: a tick-old reading would end the
	// pods' lives early by as much, and a later refresh could not undo it
	// (see earliest below).
	read := s.clk.Exact()
	stale := s.timing.Staleness.Milliseconds()
	snap := &podSnapshot{ServiceSnapshot: ServiceSnapshot{
		Namespace: v.svc.ns, Service: v.svc.name, ServerTime: st.Now,
		Pods: make([]PodState, 0, len(st.Pods)), Skipped: len(st.Skipped),
	}}
	maxPod := -1
	for _, p := range st.Pods {
		maxPod = max(maxPod, p.Pod)
	}
	snap.flags = make([]uint8, maxPod+1)
	snap.aliveUntil = make([]int64, maxPod+1)
	var accepting []lb.Pod
	old := v.snap.Load()
	for _, p := range st.Pods {
		ps := PodState{Pod: p.Pod, Load: int64(p.Load), Routing: p.Routing, Updated: p.Updated}
		age := st.Now - p.Updated
		ps.Alive = age <= stale
		ps.Routable = ps.Alive && (p.Routing == Ready || p.Routing == DenyNewCall)
		ps.Accepting = ps.Alive && p.Routing == Ready
		snap.Pods = append(snap.Pods, ps)
		// The reply is read some time after Redis read its clock, so the
		// translation to local time errs late, by as much as the reply
		// waited (a busy machine: tens of ms), never early. The same
		// heartbeat read again never lives longer than the earlier reading
		// said: without that, a pod found stale could turn routable again
		// until the next refresh (CI saw a client route a user to it).
		snap.aliveUntil[p.Pod] = old.earliest(p.Pod, p.Updated, read+stale-age)
		if ps.Routable {
			snap.flags[p.Pod] |= flagRoutable
		}
		if ps.Accepting {
			snap.flags[p.Pod] |= flagAccepting
			accepting = append(accepting, lb.Pod{Index: p.Pod, Load: ps.Load})
		}
	}
	v.loadedAt.Store(local)
	accepting = s.deg.carry(v, snap, accepting, local)
	if err := v.bal.Update(accepting); err != nil {
		return err
	}
	// The placements the new states include stop counting; the load band
	// is the balancer's, judged at every pick on the corrected loads.
	s.settle(v, old, snap, local)
	// Fresh news: no grace from the refresh that brought it (a pod that went
	// stale while it waited must not look routable as of its start).
	v.waiting.Store(0)
	v.snap.Store(snap)
	s.notify(old, snap)
	return nil
}

// notify compares two snapshots and queues an event per change.
func (s *States) notify(old, cur *podSnapshot) {
	s.subsMu.Lock()
	subs := s.subs
	s.subsMu.Unlock()
	if len(subs) == 0 {
		return
	}
	var events []Event
	prev := map[int]PodState{}
	if old != nil {
		for _, p := range old.Pods {
			prev[p.Pod] = p
		}
	}
	ev := func(k EventKind, pod int, from, to RoutingState) {
		events = append(events, Event{Kind: k, Namespace: cur.Namespace, Service: cur.Service, Pod: pod, From: from, To: to})
	}
	for _, p := range cur.Pods {
		o, seen := prev[p.Pod]
		delete(prev, p.Pod)
		switch {
		case !seen:
			ev(EventSeen, p.Pod, RoutingUnknown, p.Routing)
			if !p.Alive {
				ev(EventStale, p.Pod, p.Routing, p.Routing)
			}
		case o.Routing != p.Routing:
			ev(EventRouting, p.Pod, o.Routing, p.Routing)
		}
		if seen && o.Alive && !p.Alive {
			ev(EventStale, p.Pod, o.Routing, p.Routing)
		}
		if seen && !o.Alive && p.Alive {
			ev(EventAlive, p.Pod, o.Routing, p.Routing)
		}
	}
	for pod, o := range prev {
		ev(EventGone, pod, o.Routing, RoutingUnknown)
	}
	if len(events) == 0 {
		return
	}
	for _, sub := range subs {
		sub.push(events)
	}
}

func (sub *subscriber) push(events []Event) {
	sub.mu.Lock()
	sub.queue = append(sub.queue, events...)
	if over := len(sub.queue) - maxQueued; over > 0 {
		sub.queue = sub.queue[over:]
		sub.dropped += uint64(over)
	}
	sub.mu.Unlock()
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

func (sub *subscriber) run() {
	for {
		select {
		case <-sub.done:
			return
		case <-sub.wake:
		}
		for {
			sub.mu.Lock()
			q := sub.queue
			sub.queue = nil
			sub.mu.Unlock()
			if len(q) == 0 {
				break
			}
			for _, e := range q {
				select {
				case <-sub.done:
					return
				default:
				}
				sub.fn(e)
			}
		}
	}
}

// Subscribe calls fn for every routing change seen at a refresh: a pod seen
// for the first time, another routing state, a pod going stale or coming
// back, a pod gone. fn runs on a goroutine of its own, in order; a refresh
// never waits for it (beyond 4,096 pending events the oldest are dropped).
// cancel stops the deliveries and waits for a running fn to return.
func (s *States) Subscribe(fn func(Event)) (cancel func()) {
	if s.closed.Load() {
		return func() {} // no refresh will come
	}
	sub := &subscriber{fn: fn, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.subsMu.Lock()
	s.subs = append(slices.Clone(s.subs), sub)
	s.subsMu.Unlock()
	var wg sync.WaitGroup
	wg.Go(sub.run)
	var once sync.Once
	return func() {
		once.Do(func() {
			s.subsMu.Lock()
			s.subs = slices.DeleteFunc(slices.Clone(s.subs), func(o *subscriber) bool { return o == sub })
			s.subsMu.Unlock()
			close(sub.done)
			wg.Wait()
		})
	}
}

// Snapshot returns the current snapshot of a service, loading it on first use.
func (s *States) Snapshot(ctx context.Context, ns, svc string) (ServiceSnapshot, error) {
	if err := s.usable(ctx); err != nil {
		return ServiceSnapshot{}, err
	}
	sv, err := s.service(ctx, ns, svc)
	if err != nil {
		return ServiceSnapshot{}, err
	}
	return sv.view.snap.Load().ServiceSnapshot, nil
}

// current returns the view of a service, or nil while it has no snapshot
// yet: a service seen for the first time is registered and the refresher is
// woken to load it, so the caller never waits for Redis.
func (s *States) current(ns, svc string) *view {
	sv, err := s.register(ns, svc)
	if err != nil {
		return nil
	}
	if sv.view.snap.Load() != nil {
		return sv.view
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return nil
}

// IsPodRoutable reports whether a linked user may be sent to pod now. It
// reads the current snapshot and never blocks; a service not seen before
// answers false while it loads in the background.
func (s *States) IsPodRoutable(ns, svc string, pod int) bool {
	if s.closed.Load() {
		return false
	}
	v := s.current(ns, svc)
	return v != nil && v.routable(pod, s.clk.Millis())
}

// IsPodAvailable reports whether a new user may be placed on pod now, like
// IsPodRoutable.
func (s *States) IsPodAvailable(ns, svc string, pod int) bool {
	if s.closed.Load() {
		return false
	}
	v := s.current(ns, svc)
	return v != nil && v.accepting(pod, s.clk.Millis())
}

// AlivePods returns the pods of a service alive now, in index order.
func (s *States) AlivePods(ctx context.Context, ns, svc string) ([]int, error) {
	return s.pods(ctx, ns, svc, func(p *podSnapshot, pod int, now int64) bool {
		return pod < len(p.aliveUntil) && now <= p.aliveUntil[pod]
	})
}

// RoutablePods returns the pods of a service routable now, in index order.
func (s *States) RoutablePods(ctx context.Context, ns, svc string) ([]int, error) {
	return s.pods(ctx, ns, svc, (*podSnapshot).routable)
}

func (s *States) pods(ctx context.Context, ns, svc string, keep func(p *podSnapshot, pod int, now int64) bool) ([]int, error) {
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	sv, err := s.service(ctx, ns, svc)
	if err != nil {
		return nil, err
	}
	snap, now := sv.view.snap.Load(), s.clk.Millis()
	var out []int
	for _, p := range snap.Pods {
		if keep(snap, p.Pod, now) {
			out = append(out, p.Pod)
		}
	}
	return out, nil
}

// GetServiceBestPod picks the pod a new user of the service would be placed
// on, and counts it as a placement (the old API's best-pod query).
func (s *States) GetServiceBestPod(ctx context.Context, ns, svc string) (int, error) {
	if err := s.usable(ctx); err != nil {
		return NoPod, err
	}
	sv, err := s.service(ctx, ns, svc)
	if err != nil {
		return NoPod, err
	}
	return s.place(sv.view, s.clk.Millis())
}

// GetPodLoadScore returns the corrected load of pod: the load it published,
// plus the placements this client made there since, each weighed by the
// client's estimate of the fleet's placements per own one (see ClientConfig.Strategy).
func (s *States) GetPodLoadScore(ctx context.Context, ns, svc string, pod int) (int64, error) {
	if err := s.usable(ctx); err != nil {
		return 0, err
	}
	sv, err := s.service(ctx, ns, svc)
	if err != nil {
		return 0, err
	}
	if load, ok := sv.view.correctedLoad(sv.view.snap.Load(), pod); ok {
		return load, nil
	}
	return 0, errors.New("engine: pod " + strconv.Itoa(pod) + " of " + ns + "/" + svc + " has no state")
}

// GetServiceState reads the raw pod states of a service from Redis now.
func (s *States) GetServiceState(ctx context.Context, ns, svc string) (store.ServiceState, error) {
	if err := s.usable(ctx); err != nil {
		return store.ServiceState{}, err
	}
	ctx, op := s.obs.call(ctx, "GetServiceState", ns, svc, "")
	rctx, rt := s.obs.rt(ctx, rtGetState, ns, svc, 1)
	st, err := s.store.GetServiceState(rctx, ns, svc)
	s.obs.end(rctx, rt, err)
	if op != nil {
		op.Keys = len(st.Pods)
		s.obs.end(ctx, op, err)
	}
	return st, err
}

// close stops the refresher and the balancers.
func (s *States) close() {
	s.closed.Store(true)
	s.once.Do(func() {
		close(s.stop)
		s.wg.Wait()
		for _, sv := range s.services.All() {
			sv.view.bal.Close()
		}
	})
}
