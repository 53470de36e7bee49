package stickykratos_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/stickyroute/stickyroute/adapter/adaptertest"
	stickykratos "github.com/stickyroute/stickyroute/contrib/kratos"
	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
)

func TestMain(m *testing.M) { redistest.VerifyTestMain(m) }

const svc = adaptertest.Service

// testService answers UnaryCall and FullDuplexCall with the pod's index.
type testService struct {
	testpb.UnimplementedTestServiceServer
	pod int
}

func (s *testService) UnaryCall(context.Context, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{ServerId: strconv.Itoa(s.pod)}, nil
}

func (s *testService) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	for {
		if _, err := stream.Recv(); err != nil {
			return nil
		}
		body := []byte(strconv.Itoa(s.pod))
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
}

// serve is the pods' server: a gRPC server with the testService.
func serve(pod int, lis net.Listener) (stop func()) {
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, &testService{pod: pod})
	go func() { _ = gs.Serve(lis) }()
	return gs.Stop
}

// fleet is the config of a test fleet of n pods serving the testService.
func fleet(n int) adaptertest.Config { return adaptertest.Config{Pods: n, Serve: serve} }

// dial returns a router over f's client and a Kratos client connection through it,
// with the settings the package documents.
func dial(t testing.TB, f *adaptertest.Fleet) (*stickykratos.Router, testpb.TestServiceClient) {
	t.Helper()
	r, err := stickykratos.New(stickykratos.Config{Client: f.Client, Namespace: f.Namespace, Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := kgrpc.DialInsecure(redistest.Ctx(t),
		kgrpc.WithEndpoint("discovery:///"+svc),
		kgrpc.WithDiscovery(r.Discovery(f.Addr)),
		kgrpc.WithMiddleware(r.Middleware()),
		kgrpc.WithNodeFilter(r.Filter()),
		kgrpc.WithSubset(0),
		kgrpc.WithHealthCheck(false),
		kgrpc.WithTimeout(5*time.Second),
		kgrpc.WithPrintDiscoveryDebugLog(false),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	tc := testpb.NewTestServiceClient(conn)
	// The Kratos balancer lists only connected pods: wait until all are.
	ctx := redistest.Ctx(t)
	redistest.Poll(t, 5*time.Second, "the client reaches every pod", func() bool {
		for i := range f.Pods {
			if p, err := call(stickykratos.ContextWithPod(ctx, i), tc); err != nil || p != i {
				return false
			}
		}
		return true
	})
	return r, tc
}

// call makes one unary call and returns the index of the pod that answered.
func call(ctx context.Context, tc testpb.TestServiceClient) (int, error) {
	resp, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{})
	if err != nil {
		return engine.NoPod, err
	}
	return strconv.Atoi(resp.ServerId)
}

// caller calls through tc with the uid in the context (none for no user).
func caller(tc testpb.TestServiceClient) adaptertest.Caller {
	return func(ctx context.Context, uid string) (int, error) {
		return call(stickykratos.ContextWithUID(ctx, uid), tc)
	}
}
