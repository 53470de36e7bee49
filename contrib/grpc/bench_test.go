package stickygrpc_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/stickyroute/stickyroute/adapter/adaptertest"
	stickygrpc "github.com/stickyroute/stickyroute/contrib/grpc"
	"github.com/stickyroute/stickyroute/internal/redistest"
)

// benchSetup is one pod on the embedded Redis, a plain connection to it and
// a connection through a router, with the user's link already cached.
func benchSetup(b *testing.B) (ctx context.Context, plain, sticky testpb.TestServiceClient) {
	b.Helper()
	ctx = redistest.Ctx(b)
	f := adaptertest.New(b, fleet(1))
	c := f.Client
	_, sticky = dial(b, f, stickygrpc.Config{})
	conn, err := grpc.NewClient("passthrough:///"+f.Pods[0].Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	plain = testpb.NewTestServiceClient(conn)
	if _, err := call(ctx, plain); err != nil {
		b.Fatal(err)
	}
	// Place the user, then read its link into the cache.
	redistest.Poll(b, 5*time.Second, "u1's link is cached", func() bool {
		_, err := call(ctx, sticky, stickygrpc.UID("u1"))
		return err == nil && c.GetLinkedInCache(f.Namespace, "u1", svc) == 0
	})
	return ctx, plain, sticky
}

// BenchmarkCallOverhead measures a unary call over loopback through the
// router (uid given as a call option or in metadata, link cached) against the
// same call on a plain connection to the same server, in one run: the calls
// alternate in short rounds (in ABBA order, against drift), and the added cost
// is the median over the rounds of the per-call difference, so a burst of
// load from elsewhere on the machine spoils a few rounds, not the figure. The
// goal is at most 2µs added per call (added-ns/call).
func BenchmarkCallOverhead(b *testing.B) {
	ctx, plain, sticky := benchSetup(b)
	mdCtx := metadata.AppendToOutgoingContext(ctx, stickygrpc.DefaultUIDKey, "u1")
	req := &testpb.SimpleRequest{}
	uid := stickygrpc.UID("u1")
	adaptertest.Compare(b,
		adaptertest.Call{Name: "plain", Do: func() error { _, err := plain.UnaryCall(ctx, req); return err }},
		adaptertest.Call{Name: "sticky", Added: "added", Do: func() error { _, err := sticky.UnaryCall(ctx, req, uid); return err }},
		adaptertest.Call{Name: "sticky-md", Added: "added-md", Do: func() error { _, err := sticky.UnaryCall(mdCtx, req); return err }},
	)
}

// BenchmarkRoute is the interceptor alone (cached link, no network): what a
// routed call adds before grpc-go sends it.
func BenchmarkRoute(b *testing.B) {
	ctx := redistest.Ctx(b)
	f := adaptertest.New(b, fleet(1))
	c := f.Client
	r, err := stickygrpc.New(stickygrpc.Config{Client: c, Namespace: f.Namespace, Service: svc, Addr: f.Addr})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	if _, err := c.ComputeLinkedPod(ctx, f.Namespace, "u1", svc); err != nil {
		b.Fatal(err)
	}
	if _, err := c.ComputeLinkedPod(ctx, f.Namespace, "u1", svc); err != nil {
		b.Fatal(err)
	}
	in := r.UnaryInterceptor()
	invoke := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		if p, ok := stickygrpc.PodFromContext(ctx); !ok || p != 0 {
			b.Fatalf("pod in the call context = (%d, %v)", p, ok)
		}
		return nil
	}
	uid := stickygrpc.UID("u1")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := in(ctx, "/m", nil, nil, nil, invoke, uid); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
