package stickykratos_test

import (
	"context"
	"fmt"
	"net"
	"time"

	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	stickykratos "github.com/stickyroute/stickyroute/contrib/kratos"
	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

// A Kratos client reaches user u42's pod on every call. The pods here run in
// this process on loopback; Router.Discovery lists them from the engine (in
// a fleet, a template such as "{svc}-{pod}.{svc}.{ns}.svc:9000" gives their
// addresses, or a registry whose instances carry MetadataKey).
func ExampleRouter() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := embedded.Dial(store.DialConfig{}) // embedded Redis
	if err != nil {
		panic(err)
	}
	defer st.Close()
	addrs := map[int]string{}
	for pod := range 2 {
		lis, _ := net.Listen("tcp", "127.0.0.1:0")
		gs := grpc.NewServer()
		testpb.RegisterTestServiceServer(gs, &testService{pod: pod})
		go func() { _ = gs.Serve(lis) }()
		defer gs.Stop()
		addrs[pod] = lis.Addr().String()
		srv, _ := engine.NewServer(engine.ServerConfig{Store: st, Namespace: "game", Service: "room", Pod: pod,
			MaxRequest: 100 * time.Millisecond}) // a short drain on Stop, for the example
		_ = srv.Start(ctx)
		defer func() { _ = srv.Stop(ctx) }()
	}

	client, _ := engine.NewClient(engine.ClientConfig{Store: st})
	defer client.Close()
	r, err := stickykratos.New(stickykratos.Config{Client: client, Namespace: "game", Service: "room"})
	if err != nil {
		panic(err)
	}
	conn, err := kgrpc.DialInsecure(ctx,
		kgrpc.WithEndpoint("discovery:///room"),
		kgrpc.WithDiscovery(r.Discovery(func(pod int) string { return addrs[pod] })),
		kgrpc.WithMiddleware(r.Middleware()),
		kgrpc.WithNodeFilter(r.Filter()),
		kgrpc.WithSubset(0),          // every pod is a node
		kgrpc.WithHealthCheck(false), // the engine's routing state decides
		kgrpc.WithPrintDiscoveryDebugLog(false),
	)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	tc := testpb.NewTestServiceClient(conn)

	uctx := stickykratos.ContextWithUID(ctx, "u42")
	// The Kratos balancer lists a pod once its connection is up: the first
	// call may find u42's pod not connected yet, and fail ServiceUnavailable.
	for range 100 {
		if _, err := tc.UnaryCall(uctx, &testpb.SimpleRequest{}); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	served := map[string]bool{}
	for range 5 {
		resp, err := tc.UnaryCall(uctx, &testpb.SimpleRequest{})
		if err != nil {
			panic(err)
		}
		served[resp.ServerId] = true
	}
	linked, _ := client.GetLinkedPodNotCache(ctx, "game", "u42", "room")
	fmt.Println("pods that served u42:", len(served))
	fmt.Println("the pod its link names:", served[fmt.Sprint(linked)])
	// Output:
	// pods that served u42: 1
	// the pod its link names: true
}
