package stickykratos_test

import (
	"context"
	"fmt"
	"time"

	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/stickyroute/stickyroute/adapter/adaptertest"
	stickykratos "github.com/stickyroute/stickyroute/contrib/kratos"
)

// A Kratos client reaches user u42's pod on every call. In a fleet each pod
// is a process of its own running an engine.Server; here adaptertest runs
// two in this process on loopback, on an embedded Redis. Router.Discovery
// lists them from the engine (in a fleet, a template such as
// "{svc}-{pod}.{svc}.{ns}.svc:9000" gives their addresses, or a registry
// whose instances carry MetadataKey).
func ExampleRouter() {
	// serve starts a pod's gRPC server, answering with the pod's index.
	pods := adaptertest.MustStart(adaptertest.Config{Pods: 2, Serve: serve})
	defer pods.Close()

	r, err := stickykratos.New(stickykratos.Config{Client: pods.Client, Namespace: pods.Namespace, Service: adaptertest.Service})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kgrpc.DialInsecure(ctx,
		kgrpc.WithEndpoint("discovery:///room"),
		kgrpc.WithDiscovery(r.Discovery(pods.Addr)),
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
	linked, _ := pods.Client.GetLinkedPodNotCache(ctx, pods.Namespace, "u42", adaptertest.Service)
	fmt.Println("pods that served u42:", len(served))
	fmt.Println("the pod its link names:", served[fmt.Sprint(linked)])
	// Output:
	// pods that served u42: 1
	// the pod its link names: true
}
