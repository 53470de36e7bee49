package adapter

import (
	"context"
	"sync/atomic"

	"github.com/stickyroute/stickyroute/engine"
)

// Route is the pod a call is steered to, recorded in the call's context by
// ContextWithPod (or an adapter's interceptor or middleware) and read by the
// adapter's balancer or node filter. Safe for concurrent use.
type Route struct {
	// Pod is the pod the call goes to.
	Pod int
	// missed is set by Miss, from the balancer's goroutine, and read by the
	// code that made the call once it returns.
	missed atomic.Bool
}

// Miss records that the balancer found no connection to the route's pod for
// the call: the call fails for want of a connection in this client, not
// because the engine refused it, and the adapter can say so in its error.
func (r *Route) Miss() { r.missed.Store(true) }

// Missed reports whether Miss was called.
func (r *Route) Missed() bool { return r.missed.Load() }

// routeCtx is a context carrying a Route. It stands in for
// context.WithValue, which would box the Route in a second allocation:
// a routed call allocates one context, as before, and reading the Route
// back allocates nothing.
type routeCtx struct {
	context.Context
	route Route
}

// routeKey is the context key of the Route.
type routeKey struct{}

func (c *routeCtx) Value(key any) any {
	if key == (routeKey{}) {
		return &c.route
	}
	return c.Context.Value(key)
}

// WithRoute returns ctx steered to pod, and its Route.
func WithRoute(ctx context.Context, pod int) (context.Context, *Route) {
	c := &routeCtx{Context: ctx, route: Route{Pod: pod}}
	return c, &c.route
}

// RouteFromContext returns the Route of ctx, nil when its calls are not
// steered.
func RouteFromContext(ctx context.Context) *Route {
	r, _ := ctx.Value(routeKey{}).(*Route)
	return r
}

// ContextWithPod steers the calls made with ctx to pod: the adapters do it
// for a call's user; call it to reach one pod on purpose.
func ContextWithPod(ctx context.Context, pod int) context.Context {
	ctx, _ = WithRoute(ctx, pod)
	return ctx
}

// PodFromContext returns the pod the calls made with ctx are steered to, or
// engine.NoPod and false.
func PodFromContext(ctx context.Context) (pod int, ok bool) {
	if r := RouteFromContext(ctx); r != nil {
		return r.Pod, true
	}
	return engine.NoPod, false
}
