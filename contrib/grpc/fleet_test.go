package stickygrpc_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/stickyroute/stickyroute/adapter/adaptertest"
	stickygrpc "github.com/stickyroute/stickyroute/contrib/grpc"
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

// dial returns a router over f's client and a connection through it.
func dial(t testing.TB, f *adaptertest.Fleet, cfg stickygrpc.Config) (*stickygrpc.Router, testpb.TestServiceClient) {
	t.Helper()
	cfg.Client, cfg.Namespace, cfg.Service = f.Client, f.Namespace, svc
	if cfg.Addr == nil && cfg.Template == "" {
		cfg.Addr = f.Addr
	}
	r, err := stickygrpc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	conn, err := grpc.NewClient(r.Target(), append(r.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return r, testpb.NewTestServiceClient(conn)
}

// call makes one unary call and returns the index of the pod that answered.
func call(ctx context.Context, tc testpb.TestServiceClient, opts ...grpc.CallOption) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{}, opts...)
	if err != nil {
		return engine.NoPod, err
	}
	return strconv.Atoi(resp.ServerId)
}

// caller calls through tc with the UID call option (none for no user).
func caller(tc testpb.TestServiceClient) adaptertest.Caller {
	return func(ctx context.Context, uid string) (int, error) { return call(ctx, tc, stickygrpc.UID(uid)) }
}
