package stickykratos_test

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	"github.com/redis/rueidis"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	stickykratos "github.com/stickyroute/stickyroute/contrib/kratos"
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
	index   int
	addr    string
	srv     *engine.Server
	grpc    *grpc.Server
	rdb     rueidis.Client // the pod's own Redis connection
	stopped sync.Once
}

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

type fleet struct {
	ns   string
	b    *redistest.Backend
	pods []*pod
}

func newRedis(t testing.TB, b *redistest.Backend) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: b.Addrs, DisableCache: true, ForceSingleClient: b.Name == redistest.Embedded})
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

// kill loses the pod: no answers, no heartbeats, no word.
func (p *pod) kill() {
	p.grpc.Stop()
	p.rdb.Close()
}

func (f *fleet) client(t testing.TB) *engine.Client {
	t.Helper()
	c, err := engine.NewClient(engine.ClientConfig{Store: store.New(newRedis(t, f.b)), Timing: timing, TempLinkTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func (f *fleet) addr(pod int) string { return f.pods[pod].addr }

// dial returns a router over c and a Kratos client connection through it,
// with the settings the package documents.
func (f *fleet) dial(t testing.TB, c *engine.Client) (*stickykratos.Router, testpb.TestServiceClient) {
	t.Helper()
	r, err := stickykratos.New(stickykratos.Config{Client: c, Namespace: f.ns, Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := kgrpc.DialInsecure(redistest.Ctx(t),
		kgrpc.WithEndpoint("discovery:///"+svc),
		kgrpc.WithDiscovery(r.Discovery(f.addr)),
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
		for i := range f.pods {
			if p, err := call(stickykratos.ContextWithPod(ctx, i), tc); err != nil || p != i {
				return false
			}
		}
		return true
	})
	return r, tc
}

func call(ctx context.Context, tc testpb.TestServiceClient) (int, error) {
	resp, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{})
	if err != nil {
		return engine.NoPod, err
	}
	return strconv.Atoi(resp.ServerId)
}
