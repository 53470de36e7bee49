package stickygrpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/lb"
)

func init() { balancer.Register(builder{}) }

// lbConfig is the balancer's JSON config: the id of its Router.
type lbConfig struct {
	serviceconfig.LoadBalancingConfig `json:"-"`
	Router                            string `json:"router"`
}

// builder builds the balancer named Name.
type builder struct{}

var (
	_ balancer.Builder      = builder{}
	_ balancer.ConfigParser = builder{}
	_ balancer.Balancer     = (*podBalancer)(nil)
	_ balancer.ClientConn   = (*podCC)(nil)
	_ balancer.Picker       = (*picker)(nil)
)

// Name implements balancer.Builder.
func (builder) Name() string { return Name }

// Build implements balancer.Builder.
func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &podBalancer{cc: cc}
	b.Balancer = endpointsharding.NewBalancer(&podCC{ClientConn: cc, b: b}, opts,
		balancer.Get(pickfirst.Name).Build, endpointsharding.Options{})
	return b
}

// ParseConfig implements balancer.ConfigParser.
func (builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	var c lbConfig
	if err := json.Unmarshal(js, &c); err != nil {
		return nil, fmt.Errorf("stickygrpc: balancer config: %w", err)
	}
	return &c, nil
}

// podBalancer keeps one pick-first child per pod (through grpc-go's
// endpointsharding, which reconnects a child that goes idle: a linked user may
// need any pod at any time) and publishes its own picker over the children's
// whenever one changes.
type podBalancer struct {
	balancer.Balancer // the endpointsharding balancer below
	cc                balancer.ClientConn
	// mu guards r and fallback: set by UpdateClientConnState, read when a
	// child's state changes.
	mu       sync.Mutex
	r        *Router
	fallback *lb.Balancer // picks for calls without a user
}

// podCC is the ClientConn the children see: their state updates come back
// to the podBalancer.
type podCC struct {
	balancer.ClientConn
	b *podBalancer
}

// UpdateState implements balancer.ClientConn.
func (c *podCC) UpdateState(s balancer.State) { c.b.updateState(s) }

// UpdateClientConnState implements balancer.Balancer: the resolver's
// endpoints, grouped by pod, one child each.
func (b *podBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	r, err := b.attach(s.BalancerConfig)
	if err != nil {
		b.fail(err)
		return balancer.ErrBadResolverState
	}
	eps := s.ResolverState.Endpoints
	if len(eps) == 0 {
		for _, a := range s.ResolverState.Addresses {
			eps = append(eps, resolver.Endpoint{Addresses: []resolver.Address{a}})
		}
	}
	byPod := map[int]*resolver.Endpoint{}
	var pods []int
	for _, ep := range eps {
		pod, ok := r.cfg.PodOf(ep)
		if !ok || pod < 0 || len(ep.Addresses) == 0 {
			continue
		}
		if e, ok := byPod[pod]; ok {
			e.Addresses = append(e.Addresses, ep.Addresses...)
			continue
		}
		e := WithPod(resolver.Endpoint{Addresses: slices.Clone(ep.Addresses)}, pod)
		byPod[pod] = &e
		pods = append(pods, pod)
	}
	if len(pods) == 0 && len(eps) > 0 {
		b.fail(errors.New("stickygrpc: no resolved address carries a pod index (see Config.PodOf)"))
		return balancer.ErrBadResolverState
	}
	slices.Sort(pods)
	out := make([]resolver.Endpoint, len(pods))
	for i, pod := range pods {
		out[i] = *byPod[pod]
	}
	return b.Balancer.UpdateClientConnState(balancer.ClientConnState{
		ResolverState: resolver.State{Endpoints: out, Attributes: s.ResolverState.Attributes},
	})
}

// attach finds the balancer's Router from its config.
func (b *podBalancer) attach(cfg serviceconfig.LoadBalancingConfig) (*Router, error) {
	c, ok := cfg.(*lbConfig)
	if !ok {
		return nil, errors.New("stickygrpc: the balancer has no router config: dial with Router.DialOptions")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.r != nil && b.r.id == c.Router {
		return b.r, nil
	}
	v, ok := routers.Load(c.Router)
	if !ok {
		return nil, errors.New("stickygrpc: router " + c.Router + " is closed or unknown")
	}
	r := v.(*Router)
	fb, err := lb.New(lb.Config{Strategy: r.cfg.Strategy})
	if err != nil {
		return nil, err
	}
	if b.fallback != nil {
		b.fallback.Close()
	}
	b.r, b.fallback = r, fb
	return r, nil
}

// fail publishes a picker that fails every call with err.
func (b *podBalancer) fail(err error) {
	b.cc.UpdateState(balancer.State{ConnectivityState: connectivity.TransientFailure, Picker: errPicker{err}})
}

// Close implements balancer.Balancer.
func (b *podBalancer) Close() {
	b.Balancer.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fallback != nil {
		b.fallback.Close()
	}
}

// updateState turns the children's states into a picker: pod → the pod's
// child picker, plus the fallback's members, the pods that are READY.
func (b *podBalancer) updateState(s balancer.State) {
	b.mu.Lock()
	r, fb := b.r, b.fallback
	b.mu.Unlock()
	if r == nil {
		b.cc.UpdateState(s)
		return
	}
	children := endpointsharding.ChildStatesFromPicker(s.Picker)
	p := &picker{
		pods:   make(map[int]entry, len(children)),
		states: r.states, ns: r.cfg.Namespace, svc: r.cfg.Service,
		fallback: fb, all: s.Picker,
	}
	var ready []lb.Pod
	for _, ch := range children {
		pod, ok := EndpointPod(ch.Endpoint)
		if !ok {
			continue
		}
		e := entry{picker: ch.State.Picker, ready: ch.State.ConnectivityState == connectivity.Ready}
		if e.ready {
			ready = append(ready, lb.Pod{Index: pod})
		}
		p.pods[pod] = e
	}
	slices.SortFunc(ready, func(a, b lb.Pod) int { return a.Index - b.Index })
	_ = fb.Update(ready)
	p.ready = len(ready)
	b.cc.UpdateState(balancer.State{ConnectivityState: s.ConnectivityState, Picker: p})
}

// entry is one pod in a picker: the picker of its pick-first child, which
// returns its connection when READY, waits while it connects and fails while
// it is down.
type entry struct {
	picker balancer.Picker
	ready  bool
}

// picker is an immutable pod → child picker table; grpc-go swaps it whole
// for the next one. Pick never blocks, takes no lock and calls no Redis.
type picker struct {
	pods     map[int]entry
	states   *engine.States
	ns, svc  string
	fallback *lb.Balancer
	ready    int
	// all is endpointsharding's picker over every child, for calls without
	// a user while no pod is READY: it waits or fails as the children do.
	all balancer.Picker
}

// Pick implements balancer.Picker. A call steered to a pod (by the
// interceptors or ContextWithPod) goes to that pod's connection, waits while
// it connects, and fails with Unavailable (or waits, for a wait-for-ready
// call) while it is down. Other calls go to a pod picked by the fallback
// strategy, preferring pods that take new users.
func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	pod, ok := PodFromContext(info.Ctx)
	if !ok {
		return p.pickAny(info)
	}
	if e, ok := p.pods[pod]; ok {
		return e.picker.Pick(info)
	}
	if p.states.IsPodRoutable(p.ns, p.svc, pod) {
		// The engine knows the pod before the resolver lists it: wait for
		// the picker that has it.
		return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
	}
	return balancer.PickResult{}, status.Errorf(codes.Unavailable, "stickygrpc: pod %d has no address and is not routable", pod)
}

// pickAny picks a connected pod for a call without a user: one that takes
// new users when the strategy finds one in a few tries, else any connected.
func (p *picker) pickAny(info balancer.PickInfo) (balancer.PickResult, error) {
	if p.ready == 0 {
		return p.all.Pick(info)
	}
	var spare lb.PickResult
	spare.Pod = engine.NoPod
	for range 3 {
		r, err := p.fallback.Pick()
		if err != nil {
			break
		}
		if !p.pods[r.Pod].ready {
			r.Done(lb.DoneInfo{}) // the balancer moved on since this picker
			continue
		}
		if p.states.IsPodAvailable(p.ns, p.svc, r.Pod) {
			if spare.Pod != engine.NoPod {
				spare.Done(lb.DoneInfo{})
			}
			return p.result(r, info)
		}
		if spare.Pod == engine.NoPod {
			spare = r
		} else {
			r.Done(lb.DoneInfo{})
		}
	}
	if spare.Pod != engine.NoPod {
		return p.result(spare, info)
	}
	return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
}

// result turns a fallback pick into grpc-go's, reporting the call's end to
// the strategy: a connection failure counts against the pod, an application
// error does not.
func (p *picker) result(r lb.PickResult, info balancer.PickInfo) (balancer.PickResult, error) {
	res, err := p.pods[r.Pod].picker.Pick(info)
	if err != nil {
		r.Done(lb.DoneInfo{})
		return res, err
	}
	done := res.Done
	res.Done = func(di balancer.DoneInfo) {
		if done != nil {
			done(di)
		}
		var err error
		if status.Code(di.Err) == codes.Unavailable {
			err = di.Err
		}
		r.Done(lb.DoneInfo{Err: err})
	}
	return res, nil
}

// errPicker fails every pick with err (nil: waits for the next picker).
type errPicker struct{ err error }

func (p errPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	if p.err == nil {
		return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
	}
	return balancer.PickResult{}, p.err
}
