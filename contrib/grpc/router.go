package stickygrpc

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"

	"github.com/stickyroute/stickyroute/adapter"
	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/lb"
)

// Name is the name of the balancer this package registers with grpc-go and
// the scheme of the router's resolver.
const Name = "stickyroute"

// DefaultUIDKey is the outgoing metadata key read for the uid when
// Config.UIDKey is empty.
const DefaultUIDKey = adapter.DefaultUIDKey

// Config configures a Router: the service it routes to and where a call's
// uid and the pods' addresses come from.
type Config struct {
	// Client answers which pod serves a user; required. Several routers may
	// share one.
	Client *engine.Client
	// Namespace and Service name the stateful service the connection reaches.
	Namespace, Service string

	// UID reads the uid of a call; ok false means the call has no user and
	// goes to any pod (see Strategy). Nil means: the UID call option, else the
	// outgoing metadata key UIDKey. The UID call option always wins.
	UID func(ctx context.Context, method string) (uid string, ok bool)
	// UIDKey is the outgoing metadata key holding the uid when UID is nil.
	// Empty means DefaultUIDKey.
	UIDKey string

	// Template makes the router's resolver (dial Target) list one address per
	// pod the engine sees as routable: {ns}, {svc} and {pod} are replaced by
	// the namespace, the service and the pod index, as in the StatefulSet
	// address "{svc}-{pod}.{svc}.{ns}.svc:9000".
	Template string
	// Addr, instead of Template, gives the address of a pod.
	Addr func(pod int) string
	// PodOf tells the balancer the pod of an endpoint that another resolver
	// produced (a resolver that lists bare addresses yields one endpoint per
	// address). Nil means EndpointPod (the pod set with WithPod), which is
	// what the router's own resolver sets. Endpoints without a pod are left
	// out. A call for a user linked to a routable pod that no endpoint names
	// waits for the resolver to list it, up to the call's deadline.
	PodOf func(ep resolver.Endpoint) (pod int, ok bool)

	// Strategy picks the pod of a call without a uid among the connected pods
	// that take new users (or, when none does, among all connected ones). Nil
	// means lb.P2C{}, which balances the calls in flight.
	Strategy lb.Strategy
}

// Router steers the calls of gRPC client connections to the pods of one
// stateful service: its interceptors find the pod of a call's user, and the
// balancer named Name (selected by DialOptions) sends the call there. One
// Router may serve many connections. Safe for concurrent use.
type Router struct {
	cfg    Config
	id     string
	states *engine.States
	closed atomic.Bool
}

// routers are the live routers by id: a balancer, built by grpc-go from a
// JSON service config, finds its router here.
var (
	routers sync.Map // string → *Router
	nextID  atomic.Uint64
)

// New returns a Router for cfg, or an error naming a bad setting.
func New(cfg Config) (*Router, error) {
	if err := adapter.CheckConfig("stickygrpc", cfg.Client, cfg.Namespace, cfg.Service); err != nil {
		return nil, err
	}
	if cfg.Template != "" && cfg.Addr != nil {
		return nil, errors.New("stickygrpc: set Config.Template or Config.Addr, not both")
	}
	if cfg.Template != "" {
		addr, err := Template(cfg.Template, cfg.Namespace, cfg.Service)
		if err != nil {
			return nil, err
		}
		cfg.Addr = addr
	}
	if cfg.UIDKey == "" {
		cfg.UIDKey = DefaultUIDKey
	}
	if cfg.PodOf == nil {
		cfg.PodOf = EndpointPod
	}
	if cfg.Strategy == nil {
		cfg.Strategy = lb.P2C{}
	}
	if _, err := lb.New(lb.Config{Strategy: cfg.Strategy}); err != nil {
		return nil, errors.New("stickygrpc: Config.Strategy: " + err.Error())
	}
	r := &Router{cfg: cfg, id: "r" + strconv.FormatUint(nextID.Add(1), 10), states: cfg.Client.States()}
	routers.Store(r.id, r)
	return r, nil
}

// Close detaches the router: connections dialed with its options afterwards
// fail to build their balancer. Connections already built keep working until
// they are closed. The engine client is not closed.
func (r *Router) Close() {
	if !r.closed.Swap(true) {
		routers.Delete(r.id)
	}
}

// Target is the dial target of the router's own resolver (Config.Template
// or Config.Addr): "stickyroute:///<ns>/<svc>".
func (r *Router) Target() string {
	return Name + ":///" + r.cfg.Namespace + "/" + r.cfg.Service
}

// DialOptions are the options a connection needs: the balancer, the two
// interceptors and, with a Template or Addr, the router's resolver. Add
// transport credentials and any other options of your own.
func (r *Router) DialOptions() []grpc.DialOption {
	sc, _ := json.Marshal(map[string]any{
		"loadBalancingConfig": []any{map[string]any{Name: lbConfig{Router: r.id}}},
	})
	opts := []grpc.DialOption{
		grpc.WithDefaultServiceConfig(string(sc)),
		grpc.WithChainUnaryInterceptor(r.UnaryInterceptor()),
		grpc.WithChainStreamInterceptor(r.StreamInterceptor()),
	}
	if r.cfg.Addr != nil {
		opts = append(opts, grpc.WithResolvers(&podResolverBuilder{r: r}))
	}
	return opts
}

// UnaryInterceptor routes unary calls; DialOptions includes it.
func (r *Router) UnaryInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		ctx, err := r.route(ctx, method, opts)
		if err != nil {
			return err
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// StreamInterceptor routes streams (the whole stream goes to one pod);
// DialOptions includes it.
func (r *Router) StreamInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		ctx, err := r.route(ctx, method, opts)
		if err != nil {
			return nil, err
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
}

// route finds the pod of the call's user and records it in ctx for the
// picker. A call without a user keeps ctx as it is (a pod set with
// ContextWithPod stays).
func (r *Router) route(ctx context.Context, method string, opts []grpc.CallOption) (context.Context, error) {
	uid, ok := r.uid(ctx, method, opts)
	if !ok {
		return ctx, nil
	}
	pod, err := r.cfg.Client.ComputeLinkedPod(ctx, r.cfg.Namespace, uid, r.cfg.Service)
	if err != nil {
		re := &RouteError{UID: uid, Pod: engine.NoPod, Err: err}
		var nr *engine.PodNotRoutableError
		if errors.As(err, &nr) {
			re.Pod = nr.Pod
		}
		return ctx, re
	}
	return ContextWithPod(ctx, pod), nil
}

// uid reads the call's uid: the UID call option, else Config.UID, else the
// metadata key.
func (r *Router) uid(ctx context.Context, method string, opts []grpc.CallOption) (string, bool) {
	for _, o := range opts {
		if u, ok := o.(uidOption); ok {
			return u.uid, u.uid != ""
		}
	}
	if r.cfg.UID != nil {
		return r.cfg.UID(ctx, method)
	}
	md, ok := metadata.FromOutgoingContext(ctx)
	if !ok {
		return "", false
	}
	if v := md[r.cfg.UIDKey]; len(v) > 0 && v[0] != "" {
		return v[0], true
	}
	return "", false
}

// uidOption is the UID call option.
type uidOption struct {
	grpc.EmptyCallOption
	uid string
}

// UID is a call option naming the call's user; it wins over Config.UID and
// the metadata key, and is not sent to the server.
func UID(uid string) grpc.CallOption { return uidOption{uid: uid} }

// ContextWithPod steers the calls made with ctx to pod. The interceptors set
// it for calls with a user; set it yourself to reach one pod on purpose (a
// call with a user is still steered to the user's pod). It is
// adapter.ContextWithPod, shared with the Kratos adapter.
func ContextWithPod(ctx context.Context, pod int) context.Context {
	return adapter.ContextWithPod(ctx, pod)
}

// PodFromContext returns the pod set by ContextWithPod (or the
// interceptors), or engine.NoPod and false. It is adapter.PodFromContext.
func PodFromContext(ctx context.Context) (pod int, ok bool) {
	return adapter.PodFromContext(ctx)
}
