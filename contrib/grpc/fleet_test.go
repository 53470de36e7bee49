package stickygrpc_test

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	stickygrpc "github.com/stickyroute/stickyroute/contrib/grpc"
	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, redistest.LeakOptions()...) }

const svc = "room"

// timing is short so that drains and pod losses play out in a second.
var timing = engine.Timing{Heartbeat: 100 * time.Millisecond, Staleness: 300 * time.Millisecond, Refresh: 50 * time.Millisecond}

// drain is the pods' drain window: long enough to check calls during it.
const drain = 800 * time.Millisecond

// pod is one pod of the test service: an engine.Server publishing its state
// and a gRPC server on loopback answering with its index.
type pod struct {
	index int
	addr  string
	srv   *engine.Server
	grpc  *grpc.Server
	// rdb is the pod's own Redis connection: closing it stops its heartbeats.
	rdb     rueidis.Client
	stopped sync.Once
}

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

// fleet is n pods of one service in a fresh namespace.
type fleet struct {
	ns   string
	b    *redistest.Backend
	pods []*pod
}

// newRedis connects a client of its own to the backend, like another process.
func newRedis(t testing.TB, b *redistest.Backend) rueidis.Client {
	t.Helper()
	opt := rueidis.ClientOption{InitAddress: b.Addrs, DisableCache: true, ForceSingleClient: b.Name == redistest.Embedded}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func startFleet(t testing.TB, b *redistest.Backend, n int) *fleet {
	t.Helper()
	ctx := redistest.Ctx(t)
	f := &fleet{ns: redistest.Namespace(t), b: b}
	for i := range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := &pod{index: i, addr: lis.Addr().String(), grpc: grpc.NewServer(), rdb: newRedis(t, b)}
		testpb.RegisterTestServiceServer(p.grpc, &testService{pod: i})
		go func() { _ = p.grpc.Serve(lis) }()
		p.srv, err = engine.NewServer(engine.ServerConfig{
			Store: store.New(p.rdb), Namespace: f.ns, Service: svc, Pod: i, Timing: timing,
			MaxRequest: 100 * time.Millisecond, Drain: drain,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.srv.Start(ctx); err != nil {
			t.Fatal(err)
		}
		f.pods = append(f.pods, p)
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, p := range f.pods {
			wg.Go(p.stop)
		}
		wg.Wait()
	})
	return f
}

// stop drains the pod (engine.Server.Stop), then stops its gRPC server.
func (p *pod) stop() {
	p.stopped.Do(func() {
		_ = p.srv.Stop(context.Background())
		p.grpc.Stop()
	})
}

// kill loses the pod: its gRPC server and its Redis connection close at once,
// so it answers nothing and stops heartbeating without a word.
func (p *pod) kill() {
	p.grpc.Stop()
	p.rdb.Close()
}

// client returns an engine client of its own (another process's view).
func (f *fleet) client(t testing.TB) *engine.Client {
	t.Helper()
	c, err := engine.NewClient(engine.ClientConfig{Store: store.New(newRedis(t, f.b)), Timing: timing, TempLinkTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// addr is the fleet's pod address function.
func (f *fleet) addr(pod int) string {
	if pod < len(f.pods) {
		return f.pods[pod].addr
	}
	return "127.0.0.1:1" // no such pod: nothing listens there
}

// dial returns a router over c and a connection through it.
func (f *fleet) dial(t testing.TB, c *engine.Client, cfg stickygrpc.Config) (*stickygrpc.Router, testpb.TestServiceClient) {
	t.Helper()
	cfg.Client, cfg.Namespace, cfg.Service = c, f.ns, svc
	if cfg.Addr == nil && cfg.Template == "" {
		cfg.Addr = f.addr
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

// backends are the Redis backends the adapter tests run on.
func eachBackend(t *testing.T, fn func(t *testing.T, b *redistest.Backend)) {
	redistest.Each(t, fn)
}
