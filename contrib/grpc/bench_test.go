package stickygrpc_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	stickygrpc "github.com/stickyroute/stickyroute/contrib/grpc"
	"github.com/stickyroute/stickyroute/internal/redistest"
)

// benchSetup is one pod on the embedded Redis, a plain connection to it and
// a connection through a router, with the user's link already cached.
func benchSetup(b *testing.B) (ctx context.Context, plain, sticky testpb.TestServiceClient) {
	b.Helper()
	be := redistest.Open(b, redistest.Embedded)
	ctx = redistest.Ctx(b)
	f := startFleet(b, be, 1)
	c := f.client(b)
	_, sticky = f.dial(b, c, stickygrpc.Config{})
	conn, err := grpc.NewClient("passthrough:///"+f.pods[0].addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
		return err == nil && c.GetLinkedInCache(f.ns, "u1", svc) == 0
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
	const chunk = 16
	run := func(f func() error) float64 {
		start := time.Now()
		for range chunk {
			if err := f(); err != nil {
				b.Fatal(err)
			}
		}
		return float64(time.Since(start).Nanoseconds()) / chunk
	}
	callPlain := func() error { _, err := plain.UnaryCall(ctx, req); return err }
	callOpt := func() error { _, err := sticky.UnaryCall(ctx, req, uid); return err }
	callMD := func() error { _, err := sticky.UnaryCall(mdCtx, req); return err }
	var plains, opts, mds, addOpt, addMD []float64
	b.ReportAllocs()
	b.ResetTimer()
	for calls := 0; calls < b.N; calls += 3 * chunk {
		var p, o, m float64
		if len(plains)%2 == 0 {
			p, o, m = run(callPlain), run(callOpt), run(callMD)
		} else {
			m, o, p = run(callMD), run(callOpt), run(callPlain)
		}
		plains, opts, mds = append(plains, p), append(opts, o), append(mds, m)
		addOpt, addMD = append(addOpt, o-p), append(addMD, m-p)
	}
	b.ReportMetric(median(plains), "plain-ns/call")
	b.ReportMetric(median(opts), "sticky-ns/call")
	b.ReportMetric(median(mds), "sticky-md-ns/call")
	b.ReportMetric(median(addOpt), "added-ns/call")
	b.ReportMetric(median(addMD), "added-md-ns/call")
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkRoute is the interceptor alone (cached link, no network): what a
// routed call adds before grpc-go sends it.
func BenchmarkRoute(b *testing.B) {
	be := redistest.Open(b, redistest.Embedded)
	ctx := redistest.Ctx(b)
	f := startFleet(b, be, 1)
	c := f.client(b)
	r, err := stickygrpc.New(stickygrpc.Config{Client: c, Namespace: f.ns, Service: svc, Addr: f.addr})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	if _, err := c.ComputeLinkedPod(ctx, f.ns, "u1", svc); err != nil {
		b.Fatal(err)
	}
	if _, err := c.ComputeLinkedPod(ctx, f.ns, "u1", svc); err != nil {
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
