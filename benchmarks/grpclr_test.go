package benchmarks

import (
	"context"
	"encoding/json"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	_ "google.golang.org/grpc/balancer/leastrequest" // registers least_request_experimental
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/serviceconfig"

	"github.com/stickyroute/stickyroute/internal/redistest"
)

// grpc-go's least_request balancer is the lock-free peer of our P2C: it
// draws two ready connections at random and takes the one with fewer calls
// in flight, counted atomically, with no mutex on the pick. Its picker is
// not exported, so the benchmark builds the real thing: a grpc.ClientConn
// over pickPods loopback gRPC servers whose balancer is least_request behind
// a thin wrapper that keeps the newest picker grpc hands the channel. A pick
// is then the picker's Pick and the Done of its result, exactly what the
// channel runs for every RPC (without the RPC).

// lrName is the wrapper's registered name; lrParent the balancer it wraps.
const (
	lrName   = "stickyroute_bench_least_request"
	lrParent = "least_request_experimental"
)

func init() { balancer.Register(lrBuilder{}) }

// lrBuilder builds least_request with a capturing ClientConn.
type lrBuilder struct{}

func (lrBuilder) Name() string { return lrName }

func (lrBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	w, ok := lrWatch.Load().(*lrCapture)
	if !ok {
		panic("benchmarks: least_request wrapper built outside newGRPCLeastRequest")
	}
	w.ClientConn = cc
	return balancer.Get(lrParent).Build(w, opts)
}

func (lrBuilder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	return balancer.Get(lrParent).(balancer.ConfigParser).ParseConfig(js)
}

// lrWatch hands Build the capture of the channel being dialled (one at a
// time: newGRPCLeastRequest holds lrDial).
var (
	lrWatch atomic.Value
	lrDial  sync.Mutex
)

// lrCapture is the ClientConn least_request talks to: it passes everything
// on, keeps the newest Ready picker and the address of every SubConn.
type lrCapture struct {
	balancer.ClientConn
	mu     sync.Mutex
	picker balancer.Picker
	addrOf map[balancer.SubConn]string
}

func (c *lrCapture) UpdateState(s balancer.State) {
	if s.ConnectivityState == connectivity.Ready {
		c.mu.Lock()
		c.picker = s.Picker
		c.mu.Unlock()
	}
	c.ClientConn.UpdateState(s)
}

func (c *lrCapture) NewSubConn(addrs []resolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	//lint:ignore SA1019 the wrapper must forward the call least_request's children make
	sc, err := c.ClientConn.NewSubConn(addrs, opts)
	if err == nil && len(addrs) > 0 {
		c.mu.Lock()
		c.addrOf[sc] = addrs[0].Addr
		c.mu.Unlock()
	}
	return sc, err
}

// grpcLR picks through grpc-go's least_request picker over pickPods pods.
type grpcLR struct {
	p    balancer.Picker
	info balancer.PickInfo
	cap  *lrCapture
	idx  map[string]int // address → pod, for the tests
}

// pick returns 1, not the pod: finding the pod would charge grpc for a
// map lookup its channel does not make. podOf finds it, for the tests.
func (g *grpcLR) pick() int {
	r, err := g.p.Pick(g.info)
	if err != nil {
		panic(err)
	}
	r.Done(balancer.DoneInfo{})
	return 1
}

func (g *grpcLR) podOf() int {
	r, err := g.p.Pick(g.info)
	if err != nil {
		panic(err)
	}
	r.Done(balancer.DoneInfo{})
	g.cap.mu.Lock()
	defer g.cap.mu.Unlock()
	return g.idx[g.cap.addrOf[r.SubConn]]
}

// newGRPCLeastRequest starts pickPods gRPC servers on loopback, dials them
// with least_request and returns a picker once every pod is ready in it.
func newGRPCLeastRequest(tb testing.TB) *grpcLR {
	tb.Helper()
	idx := map[string]int{}
	var addrs []resolver.Address
	for i := range pickPods {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		gs := grpc.NewServer()
		go func() { _ = gs.Serve(lis) }()
		tb.Cleanup(gs.Stop)
		idx[lis.Addr().String()] = i
		addrs = append(addrs, resolver.Address{Addr: lis.Addr().String()})
	}
	r := manual.NewBuilderWithScheme("stickyroutebench")
	r.InitialState(resolver.State{Addresses: addrs})
	c := &lrCapture{addrOf: map[balancer.SubConn]string{}}

	// Build runs when the channel leaves idle, after NewClient: lrWatch
	// stays this channel's until its picker is ready.
	lrDial.Lock()
	defer lrDial.Unlock()
	lrWatch.Store(c)
	conn, err := grpc.NewClient(r.Scheme()+":///pods",
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"`+lrName+`":{}}]}`))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	conn.Connect()
	g := &grpcLR{info: balancer.PickInfo{Ctx: context.Background(), FullMethodName: "/room.Room/Call"}, cap: c, idx: idx}
	// Ready comes with the first connected pod; wait until a picker reaches
	// all of them, so that it chooses among pickPods as ours does.
	redistest.Poll(tb, 10*time.Second, "least_request reaches every pod", func() bool {
		c.mu.Lock()
		g.p = c.picker
		c.mu.Unlock()
		return g.p != nil && spread(g.podOf, 50*pickPods) == pickPods
	})
	return g
}

// spread picks n times and returns how many distinct pods it reached.
func spread(pick func() int, n int) int {
	seen := map[int]bool{}
	for range n {
		seen[pick()] = true
	}
	return len(seen)
}
