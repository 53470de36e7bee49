package stickykratos_test

import (
	"testing"
	"time"

	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/stickyroute/stickyroute/adapter/adaptertest"
	stickykratos "github.com/stickyroute/stickyroute/contrib/kratos"
	"github.com/stickyroute/stickyroute/internal/redistest"
)

// BenchmarkCallOverhead measures a unary Kratos call over loopback through
// the router (middleware and filter, uid in the context, link cached) against
// the same call on a Kratos connection without it, to the same server, in one
// run: short alternating rounds in ABBA order, the added cost the median over
// the rounds of the per-call difference (added-ns/call).
func BenchmarkCallOverhead(b *testing.B) {
	ctx := redistest.Ctx(b)
	f := adaptertest.New(b, fleet(1))
	c := f.Client
	_, sticky := dial(b, f)
	conn, err := kgrpc.DialInsecure(ctx, kgrpc.WithEndpoint("direct:///"+f.Pods[0].Addr),
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
		return err == nil && c.GetLinkedInCache(f.Namespace, "u1", svc) == 0
	})
	req := &testpb.SimpleRequest{}
	adaptertest.Compare(b,
		adaptertest.Call{Name: "plain", Do: func() error { _, err := plain.UnaryCall(ctx, req); return err }},
		adaptertest.Call{Name: "sticky", Added: "added", Do: func() error { _, err := sticky.UnaryCall(uctx, req); return err }},
	)
}
