package stickykratos

import (
	"context"
	"errors"
	"strconv"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/middleware"
	"github.com/go-kratos/kratos/v2/selector"
	"github.com/go-kratos/kratos/v2/transport"
	"google.golang.org/grpc/metadata"

	"github.com/stickyroute/stickyroute/adapter"
	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/store"
)

// MetadataKey is the service instance metadata key holding a pod's index.
const MetadataKey = "stickyroute-pod"

// DefaultUIDKey is the key read for the uid, in the call's outgoing gRPC
// metadata or its Kratos request header, when Config.UID is nil.
const DefaultUIDKey = adapter.DefaultUIDKey

// Reasons of the Kratos errors the middleware returns.
const (
	// ReasonPodNotRoutable: the user is persistently linked to a pod that
	// is not routable (engine.ErrPodNotRoutable); its metadata names the pod.
	ReasonPodNotRoutable = "STICKYROUTE_POD_NOT_ROUTABLE"
	// ReasonNoAvailablePod: no pod takes new users (engine.ErrNoAvailablePod).
	ReasonNoAvailablePod = "STICKYROUTE_NO_AVAILABLE_POD"
	// ReasonPodUnreachable: the user's pod has no READY connection in this
	// client; its metadata names the pod.
	ReasonPodUnreachable = "STICKYROUTE_POD_UNREACHABLE"
	// ReasonUnavailable: the engine could not read the link (Redis).
	ReasonUnavailable = "STICKYROUTE_UNAVAILABLE"
	// ReasonInvalidUID: the uid is not a valid uid (empty or too long).
	ReasonInvalidUID = "STICKYROUTE_INVALID_UID"
)

// Config configures a Router.
type Config struct {
	// Client answers which pod serves a user; required.
	Client *engine.Client
	// Namespace and Service name the stateful service the client reaches.
	Namespace, Service string
	// UID reads the uid of a call; ok false means the call has no user and
	// goes to any pod that takes new users. Nil means: ContextWithUID, else
	// UIDKey in the outgoing gRPC metadata, else in the Kratos request
	// header. ContextWithUID always wins.
	UID func(ctx context.Context, req any) (uid string, ok bool)
	// UIDKey is the key UID reads when nil. Empty means DefaultUIDKey.
	UIDKey string
	// PodOf returns a node's pod. Nil means NodePod (MetadataKey).
	PodOf func(n selector.Node) (pod int, ok bool)
}

// Router steers Kratos client calls to the pods of one stateful service: its
// Middleware finds the pod of a call's user and its Filter keeps that pod's
// node. Safe for concurrent use; one Router may serve many clients.
type Router struct {
	cfg    Config
	states *engine.States
}

// New returns a Router for cfg, or an error naming a bad setting.
func New(cfg Config) (*Router, error) {
	if err := adapter.CheckConfig("stickykratos", cfg.Client, cfg.Namespace, cfg.Service); err != nil {
		return nil, err
	}
	if cfg.UIDKey == "" {
		cfg.UIDKey = DefaultUIDKey
	}
	if cfg.PodOf == nil {
		cfg.PodOf = NodePod
	}
	return &Router{cfg: cfg, states: cfg.Client.States()}, nil
}

// NodePod reads a node's pod from its metadata (MetadataKey). It is the
// default Config.PodOf.
func NodePod(n selector.Node) (pod int, ok bool) {
	v, ok := n.Metadata()[MetadataKey]
	if !ok {
		return 0, false
	}
	pod, err := strconv.Atoi(v)
	return pod, err == nil && pod >= 0
}

// uidKey is the context key of ContextWithUID.
type uidKey struct{}

// ContextWithUID names the user of the calls made with ctx; it wins over
// Config.UID and the metadata key, and is not sent to the server.
func ContextWithUID(ctx context.Context, uid string) context.Context {
	return context.WithValue(ctx, uidKey{}, uid)
}

// ContextWithPod steers the calls made with ctx to pod, as the middleware
// does for a call's user. Use it to reach one pod on purpose. It is
// adapter.ContextWithPod, shared with the gRPC adapter.
func ContextWithPod(ctx context.Context, pod int) context.Context {
	return adapter.ContextWithPod(ctx, pod)
}

// PodFromContext returns the pod the calls made with ctx are steered to, or
// engine.NoPod and false. It is adapter.PodFromContext.
func PodFromContext(ctx context.Context) (pod int, ok bool) {
	return adapter.PodFromContext(ctx)
}

// Route returns ctx steered to uid's pod, as the middleware does for a call.
// Use it for streams (Kratos runs client middleware per message, after the
// stream has chosen its pod) and wherever the middleware is not installed.
func (r *Router) Route(ctx context.Context, uid string) (context.Context, error) {
	ctx, _, err := r.route(ctx, uid)
	return ctx, err
}

// route steers ctx to uid's pod. The Filter marks the returned Route missed
// when the pod has no node, for the middleware's error.
func (r *Router) route(ctx context.Context, uid string) (context.Context, *adapter.Route, error) {
	pod, err := r.cfg.Client.ComputeLinkedPod(ctx, r.cfg.Namespace, uid, r.cfg.Service)
	if err != nil {
		return ctx, nil, routeError(err)
	}
	ctx, rt := adapter.WithRoute(ctx, pod)
	return ctx, rt, nil
}

// Middleware is the client middleware: it finds the pod of the call's user
// and steers the call there (through Filter, which the client must have
// too). A call without a user passes through unchanged.
func (r *Router) Middleware() middleware.Middleware {
	return func(next middleware.Handler) middleware.Handler {
		return func(ctx context.Context, req any) (any, error) {
			uid, ok := r.uid(ctx, req)
			if !ok {
				return next(ctx, req)
			}
			ctx, rt, err := r.route(ctx, uid)
			if err != nil {
				return nil, err
			}
			reply, err := next(ctx, req)
			if err != nil && rt.Missed() {
				return reply, kerrors.ServiceUnavailable(ReasonPodUnreachable, "stickykratos: pod "+strconv.Itoa(rt.Pod)+" has no ready connection").
					WithMetadata(map[string]string{"pod": strconv.Itoa(rt.Pod)}).WithCause(err)
			}
			return reply, err
		}
	}
}

// uid reads the call's uid: ContextWithUID, else Config.UID, else the key in
// the outgoing gRPC metadata or the Kratos request header.
func (r *Router) uid(ctx context.Context, req any) (string, bool) {
	if uid, ok := ctx.Value(uidKey{}).(string); ok {
		return uid, uid != ""
	}
	if r.cfg.UID != nil {
		return r.cfg.UID(ctx, req)
	}
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		if v := md[r.cfg.UIDKey]; len(v) > 0 && v[0] != "" {
			return v[0], true
		}
	}
	if tr, ok := transport.FromClientContext(ctx); ok {
		if v := tr.RequestHeader().Get(r.cfg.UIDKey); v != "" {
			return v, true
		}
	}
	return "", false
}

// Filter is the node filter for the client (WithNodeFilter). A call steered
// to a pod keeps only that pod's node (none when it is not connected: the
// call then fails with ReasonPodUnreachable). Other calls keep the nodes of
// the pods that take new users, or, when none does, of the routable ones, or
// all nodes when the engine knows none of them. It never blocks, takes no
// lock and calls no Redis.
func (r *Router) Filter() selector.NodeFilter {
	return func(ctx context.Context, nodes []selector.Node) []selector.Node {
		if rt := adapter.RouteFromContext(ctx); rt != nil {
			for i, n := range nodes {
				if pod, ok := r.cfg.PodOf(n); ok && pod == rt.Pod {
					return nodes[i : i+1]
				}
			}
			rt.Miss()
			return nil
		}
		if kept := r.keep(nodes, r.states.IsPodAvailable); len(kept) > 0 {
			return kept
		}
		if kept := r.keep(nodes, r.states.IsPodRoutable); len(kept) > 0 {
			return kept
		}
		return nodes
	}
}

// keep returns the nodes whose pod passes ok: nodes itself when all do,
// else a new slice (the selector's slice is never written).
func (r *Router) keep(nodes []selector.Node, ok func(ns, svc string, pod int) bool) []selector.Node {
	pass := func(n selector.Node) bool {
		pod, known := r.cfg.PodOf(n)
		return known && ok(r.cfg.Namespace, r.cfg.Service, pod)
	}
	all := true
	for _, n := range nodes {
		if !pass(n) {
			all = false
			break
		}
	}
	if all {
		return nodes
	}
	var kept []selector.Node
	for _, n := range nodes {
		if pass(n) {
			kept = append(kept, n)
		}
	}
	return kept
}

// routeError turns an engine error into the Kratos error of the call,
// keeping the engine's error as its cause (errors.Is still matches it).
func routeError(err error) error {
	var nr *engine.PodNotRoutableError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.As(err, &nr):
		return kerrors.ServiceUnavailable(ReasonPodNotRoutable, "stickykratos: the user's pod "+strconv.Itoa(nr.Pod)+" is not routable").
			WithMetadata(map[string]string{"pod": strconv.Itoa(nr.Pod)}).WithCause(err)
	case errors.Is(err, engine.ErrNoAvailablePod):
		return kerrors.ServiceUnavailable(ReasonNoAvailablePod, "stickykratos: no pod takes new users").WithCause(err)
	case errors.Is(err, store.ErrInvalidArgument):
		return kerrors.BadRequest(ReasonInvalidUID, "stickykratos: "+err.Error()).WithCause(err)
	}
	return kerrors.ServiceUnavailable(ReasonUnavailable, "stickykratos: cannot route the call: "+err.Error()).WithCause(err)
}
