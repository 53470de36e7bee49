package stickygrpc_test

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/stickyroute/stickyroute/adapter/adaptertest"
	stickygrpc "github.com/stickyroute/stickyroute/contrib/grpc"
)

// Two pods serve a service; every call of user u42 reaches the same one. In
// a fleet each pod is a process of its own running an engine.Server, and
// Template gives the pods' addresses; here adaptertest runs both in this
// process on loopback, on an embedded Redis.
func ExampleRouter() {
	// serve starts a pod's gRPC server, answering with the pod's index.
	pods := adaptertest.MustStart(adaptertest.Config{Pods: 2, Serve: serve})
	defer pods.Close()

	r, err := stickygrpc.New(stickygrpc.Config{
		Client:    pods.Client, // an *engine.Client
		Namespace: pods.Namespace, Service: adaptertest.Service,
		Addr: pods.Addr, // or Template: "{svc}-{pod}.{svc}.{ns}.svc:9000"
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	served := map[string]bool{}
	for range 5 {
		resp, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{}, stickygrpc.UID("u42"))
		if err != nil {
			panic(err)
		}
		served[resp.ServerId] = true
	}
	linked, _ := pods.Client.GetLinkedPodNotCache(ctx, pods.Namespace, "u42", adaptertest.Service)
	fmt.Println("pods that served u42:", len(served))
	fmt.Println("the pod its link names:", served[strconv.Itoa(linked)])
	// Output:
	// pods that served u42: 1
	// the pod its link names: true
}
