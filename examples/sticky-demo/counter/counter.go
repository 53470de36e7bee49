// Package counter is the small stateful gRPC API of the sticky-demo: a pod
// counts each user's calls in memory. Messages travel as JSON (a codec
// registered here), so the demo needs no generated code.
package counter

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"

	stickygrpc "github.com/stickyroute/stickyroute/contrib/grpc"
	"github.com/stickyroute/stickyroute/engine"
)

func init() { encoding.RegisterCodec(jsonCodec{}) }

// Timing is shared by the demo's pods and client: short, so that a drain
// plays out in a couple of seconds.
var Timing = engine.Timing{Heartbeat: 200 * time.Millisecond, Staleness: 600 * time.Millisecond, Refresh: 100 * time.Millisecond}

// Fleet names the demo's Redis and service, as the pods and the client both
// take them on their command lines.
type Fleet struct {
	Redis, NS, Svc string
}

// FleetFlags defines the flags -redis (default $STICKYROUTE_REDIS_ADDR), -ns
// and -svc on the command line; the Fleet is filled by flag.Parse.
func FleetFlags() *Fleet {
	f := &Fleet{}
	flag.StringVar(&f.Redis, "redis", os.Getenv("STICKYROUTE_REDIS_ADDR"), "Redis host:port")
	flag.StringVar(&f.NS, "ns", "demo", "namespace")
	flag.StringVar(&f.Svc, "svc", "counter", "service")
	return f
}

// jsonCodec marshals the demo's messages as JSON.
type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
func (jsonCodec) Name() string                       { return "json" }

// IncrRequest asks a pod to count one call of a user.
type IncrRequest struct {
	UID string `json:"uid"`
}

// IncrReply is the user's count after the call, and the pod that counted it.
type IncrReply struct {
	Pod   int   `json:"pod"`
	Count int64 `json:"count"`
}

// Server is the pod's side of the API.
type Server interface {
	Incr(ctx context.Context, req *IncrRequest) (*IncrReply, error)
}

const incrMethod = "/stickydemo.Counter/Incr"

// ServiceDesc describes the API to grpc-go; register a Server with
// grpc.Server.RegisterService(&ServiceDesc, srv).
var ServiceDesc = grpc.ServiceDesc{
	ServiceName: "stickydemo.Counter",
	HandlerType: (*Server)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Incr",
		Handler: func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			req := new(IncrRequest)
			if err := dec(req); err != nil {
				return nil, err
			}
			if in == nil {
				return srv.(Server).Incr(ctx, req)
			}
			return in(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: incrMethod}, func(ctx context.Context, req any) (any, error) {
				return srv.(Server).Incr(ctx, req.(*IncrRequest))
			})
		},
	}},
	Metadata: "counter",
}

// Incr counts one call of uid on the pod that holds it: the uid rides as the
// stickygrpc.UID call option, so the router steers the call.
func Incr(ctx context.Context, cc grpc.ClientConnInterface, uid string) (*IncrReply, error) {
	out := new(IncrReply)
	err := cc.Invoke(ctx, incrMethod, &IncrRequest{UID: uid}, out, grpc.CallContentSubtype("json"), stickygrpc.UID(uid))
	return out, err
}
