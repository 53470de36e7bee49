package stickykratos_test

import (
	"context"
	"slices"
	"testing"
	"time"

	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	stickykratos "github.com/stickyroute/stickyroute/contrib/kratos"
	"github.com/stickyroute/stickyroute/internal/redistest"
)

// BenchmarkCallOverhead measures a unary Kratos call over loopback through
// the router (middleware and filter, uid in the context, link cached) against
// the same call on a Kratos connection without it, to the same server, in one
// run: short alternating rounds in ABBA order, the added cost the median over
// the rounds of the per-call difference (added-ns/call).
func BenchmarkCallOverhead(b *testing.B) {
	be := redistest.Open(b, redistest.Embedded)
	ctx := redistest.Ctx(b)
	f := startFleet(b, be, 1)
	c := f.client(b)
	_, sticky := f.dial(b, c)
	conn, err := kgrpc.DialInsecure(ctx, kgrpc.WithEndpoint("direct:///"+f.pods[0].addr),
		kgrpc.WithHealthCheck(false), kgrpc.WithTimeout(5*time.Second))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	plain := testpb.NewTestServiceClient(conn)
	uctx := stickykratos.ContextWithUID(ctx, "u1")
	// Place the user, then read its link into the cache.
	redistest.Poll(b, 5*time.Second, "u1's link is cached", func() bool {
		_, err := call(uctx, sticky)
		return err == nil && c.GetLinkedInCache(f.ns, "u1", svc) == 0
	})
	req := &testpb.SimpleRequest{}
	const chunk = 16
	run := func(ctx context.Context, tc testpb.TestServiceClient) float64 {
		start := time.Now()
		for range chunk {
			if _, err := tc.UnaryCall(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
		return float64(time.Since(start).Nanoseconds()) / chunk
	}
	var plains, stickies, added []float64
	b.ReportAllocs()
	b.ResetTimer()
	for calls := 0; calls < b.N; calls += 2 * chunk {
		var p, s float64
		if len(plains)%2 == 0 {
			p, s = run(ctx, plain), run(uctx, sticky)
		} else {
			s, p = run(uctx, sticky), run(ctx, plain)
		}
		plains, stickies, added = append(plains, p), append(stickies, s), append(added, s-p)
	}
	b.ReportMetric(median(plains), "plain-ns/call")
	b.ReportMetric(median(stickies), "sticky-ns/call")
	b.ReportMetric(median(added), "added-ns/call")
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
