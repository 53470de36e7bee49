package stickygrpc_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	stickygrpc "github.com/stickyroute/stickyroute/contrib/grpc"
	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

// Two pods serve a service; every call of user u42 reaches the same one. In
// a fleet each pod is a process of its own and Template gives the pods'
// addresses; here both run in this process on loopback.
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
	r, err := stickygrpc.New(stickygrpc.Config{
		Client: client, Namespace: "game", Service: "room",
		Addr: func(pod int) string { return addrs[pod] }, // or Template: "{svc}-{pod}.{svc}.{ns}.svc:9000"
	})
	if err != nil {
		panic(err)
	}
	defer r.Close()
	conn, err := grpc.NewClient(r.Target(), append(r.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	tc := testpb.NewTestServiceClient(conn)

	served := map[string]bool{}
	for range 5 {
		resp, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{}, stickygrpc.UID("u42"))
		if err != nil {
			panic(err)
		}
		served[resp.ServerId] = true
	}
	linked, _ := client.GetLinkedPodNotCache(ctx, "game", "u42", "room")
	fmt.Println("pods that served u42:", len(served))
	fmt.Println("the pod its link names:", served[strconv.Itoa(linked)])
	// Output:
	// pods that served u42: 1
	// the pod its link names: true
}
