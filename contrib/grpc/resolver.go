package stickygrpc

import (
	"context"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/resolver"

	"github.com/stickyroute/stickyroute/adapter"
	"github.com/stickyroute/stickyroute/engine"
)

// podAttr is the attribute key holding an address's pod index.
type podAttr struct{}

// WithPod returns ep marked as an endpoint of pod, for the balancer. A
// resolver of your own sets it on the endpoints it produces.
func WithPod(ep resolver.Endpoint, pod int) resolver.Endpoint {
	ep.Attributes = ep.Attributes.WithValue(podAttr{}, pod)
	return ep
}

// EndpointPod returns the pod WithPod set on ep. It is the default
// Config.PodOf.
func EndpointPod(ep resolver.Endpoint) (pod int, ok bool) {
	pod, ok = ep.Attributes.Value(podAttr{}).(int)
	return pod, ok
}

// StatefulSetPod reads the pod index from the host name of ep's first
// address, a StatefulSet pod's "<name>-<index>[.<more labels>][:port]", for
// Config.PodOf with a resolver that yields such names (bare IPs carry no pod).
// It is adapter.StatefulSetPod of the endpoint's first address.
func StatefulSetPod(ep resolver.Endpoint) (pod int, ok bool) {
	if len(ep.Addresses) == 0 {
		return 0, false
	}
	return adapter.StatefulSetPod(ep.Addresses[0].Addr)
}

// Template returns the address function of a template: {ns}, {svc} and
// {pod} are replaced by ns, svc and the pod index. The template must contain
// {pod}. It is adapter.Template, shared with the Kratos adapter.
func Template(tmpl, ns, svc string) (func(pod int) string, error) {
	return adapter.Template(tmpl, ns, svc)
}

// podResolverBuilder builds the router's resolver for Target.
type podResolverBuilder struct{ r *Router }

// Scheme implements resolver.Builder.
func (b *podResolverBuilder) Scheme() string { return Name }

// Build implements resolver.Builder. The target's path is ignored: the
// router names the service.
func (b *podResolverBuilder) Build(_ resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	pr := &podResolver{r: b.r, cc: cc, kick: make(chan struct{}, 1), done: make(chan struct{})}
	ns, svc := b.r.cfg.Namespace, b.r.cfg.Service
	pr.unsubscribe = b.r.states.Subscribe(func(e engine.Event) {
		if e.Namespace == ns && e.Service == svc {
			pr.ResolveNow(resolver.ResolveNowOptions{})
		}
	})
	pr.wg.Go(pr.run)
	return pr, nil
}

// podResolver lists the pods the engine sees as routable, each at the
// router's address for it, and lists them again on every routing change the
// engine reports (and every second, as a backstop).
type podResolver struct {
	r           *Router
	cc          resolver.ClientConn
	unsubscribe func()
	kick        chan struct{}
	done        chan struct{}
	wg          sync.WaitGroup
}

// resolvePeriod is the backstop period of the resolver; retryPeriod its
// period while the engine cannot read the pod states.
const (
	resolvePeriod = time.Second
	retryPeriod   = 200 * time.Millisecond
)

func (pr *podResolver) run() {
	var last []int
	first := true
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-pr.done:
			return
		case <-pr.kick:
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		pods, err := pr.r.states.RoutablePods(ctx, pr.r.cfg.Namespace, pr.r.cfg.Service)
		cancel()
		next := resolvePeriod
		switch {
		case err != nil:
			pr.cc.ReportError(err)
			next = retryPeriod
		case first || !slices.Equal(pods, last):
			first, last = false, pods
			eps := make([]resolver.Endpoint, len(pods))
			for i, pod := range pods {
				eps[i] = WithPod(resolver.Endpoint{Addresses: []resolver.Address{{Addr: pr.r.cfg.Addr(pod)}}}, pod)
			}
			_ = pr.cc.UpdateState(resolver.State{Endpoints: eps})
		}
		t.Reset(next)
	}
}

// ResolveNow implements resolver.Resolver.
func (pr *podResolver) ResolveNow(resolver.ResolveNowOptions) {
	select {
	case pr.kick <- struct{}{}:
	default:
	}
}

// Close implements resolver.Resolver.
func (pr *podResolver) Close() {
	pr.unsubscribe()
	close(pr.done)
	pr.wg.Wait()
}
