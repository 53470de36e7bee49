package stickykratos_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	stickykratos "github.com/stickyroute/stickyroute/contrib/kratos"
	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
)

// TestRoutesByUID: every call of a user reaches the pod its link names,
// with the uid in the context or in metadata, and a stream steered by Route.
func TestRoutesByUID(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := redistest.Ctx(t)
		f := startFleet(t, b, 3)
		c := f.client(t)
		r, tc := f.dial(t, c)

		seen := map[int]int{}
		for i := range 60 {
			uid := "u" + strconv.Itoa(i)
			p1, err := call(stickykratos.ContextWithUID(ctx, uid), tc)
			if err != nil {
				t.Fatalf("%s: %v", uid, err)
			}
			p2, err := call(metadata.AppendToOutgoingContext(ctx, stickykratos.DefaultUIDKey, uid), tc)
			if err != nil {
				t.Fatalf("%s: %v", uid, err)
			}
			link, err := c.GetLinkedPodNotCache(ctx, f.ns, uid, svc)
			if err != nil {
				t.Fatal(err)
			}
			if p1 != link || p2 != link {
				t.Fatalf("%s: calls reached pods %d and %d, its link is %d", uid, p1, p2, link)
			}
			seen[link]++
		}
		if len(seen) != 3 {
			t.Fatalf("60 users landed on pods %v, want all 3", seen)
		}

		uid := "u7"
		link, _ := c.GetLinkedPodNotCache(ctx, f.ns, uid, svc)
		sctx, err := r.Route(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		stream, err := tc.FullDuplexCall(sctx)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := stream.Send(&testpb.StreamingOutputCallRequest{}); err != nil {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if got := string(resp.Payload.Body); got != strconv.Itoa(link) {
				t.Fatalf("stream of %s answered by pod %s, its link is %d", uid, got, link)
			}
		}
		_ = stream.CloseSend()
		if _, err := stream.Recv(); err == nil {
			t.Fatal("stream did not end after CloseSend")
		}
	})
}

// TestFallbackWithoutUID: calls without a user spread over the pods, and
// avoid a pod that takes no new users once the client sees it.
func TestFallbackWithoutUID(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := redistest.Ctx(t)
		f := startFleet(t, b, 3)
		c := f.client(t)
		_, tc := f.dial(t, c)

		count := map[int]int{}
		for range 90 {
			p, err := call(ctx, tc)
			if err != nil {
				t.Fatal(err)
			}
			count[p]++
		}
		if len(count) != 3 {
			t.Fatalf("90 calls without a uid reached pods %v, want all 3", count)
		}
		if err := f.pods[1].srv.SetRoutingState(ctx, engine.DenyNewCall); err != nil {
			t.Fatal(err)
		}
		redistest.Poll(t, 2*time.Second, "the client sees pod 1 deny new calls", func() bool {
			return !c.States().IsPodAvailable(f.ns, svc, 1) && c.States().IsPodRoutable(f.ns, svc, 1)
		})
		clear(count)
		for range 60 {
			p, err := call(ctx, tc)
			if err != nil {
				t.Fatal(err)
			}
			count[p]++
		}
		if count[1] != 0 || count[0] == 0 || count[2] == 0 {
			t.Fatalf("with pod 1 denying new calls, calls without a uid reached pods %v", count)
		}
	})
}

// TestDrain: while a pod drains, new users avoid it and its users stay; after
// it shuts down, its temporary users move and a persistent user gets
// ReasonPodNotRoutable.
func TestDrain(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := redistest.Ctx(t)
		f := startFleet(t, b, 3)
		c := f.client(t)
		_, tc := f.dial(t, c)
		user := func(uid string) context.Context { return stickykratos.ContextWithUID(ctx, uid) }

		var onTwo []string
		for i := 0; len(onTwo) < 4; i++ {
			if i == 300 {
				t.Fatalf("only %d of 300 users on pod 2", len(onTwo))
			}
			uid := "u" + strconv.Itoa(i)
			p, err := call(user(uid), tc)
			if err != nil {
				t.Fatal(err)
			}
			if p == 2 {
				onTwo = append(onTwo, uid)
			}
		}
		owned := onTwo[0]
		if _, err := f.pods[2].srv.TrySetLinkedPod(ctx, f.ns, owned, svc, 2); err != nil {
			t.Fatal(err)
		}

		stopped := make(chan struct{})
		go func() { f.pods[2].stop(); close(stopped) }()
		redistest.Poll(t, 2*time.Second, "the client sees pod 2 drain", func() bool {
			return !c.States().IsPodAvailable(f.ns, svc, 2)
		})
		begin, n := time.Now(), 0
		for ; time.Since(begin) < drain/3; n++ {
			p, err := call(user("new"+strconv.Itoa(n)), tc)
			if err != nil || p == 2 {
				t.Fatalf("new user during the drain = (%d, %v), want a pod other than 2", p, err)
			}
			for _, uid := range onTwo {
				if p, err := call(user(uid), tc); err != nil || p != 2 {
					t.Fatalf("%s during the drain = (%d, %v), want its pod 2", uid, p, err)
				}
			}
		}
		<-stopped
		redistest.Poll(t, 2*time.Second, "the client sees pod 2 shut down", func() bool {
			return !c.States().IsPodRoutable(f.ns, svc, 2)
		})
		for _, uid := range onTwo[1:] {
			p, err := call(user(uid), tc)
			if err != nil || p == 2 {
				t.Fatalf("%s after the drain = (%d, %v), want moved off pod 2", uid, p, err)
			}
			if again, err := call(user(uid), tc); err != nil || again != p {
				t.Fatalf("%s moved to %d, then = (%d, %v)", uid, p, again, err)
			}
		}
		_, err := call(user(owned), tc)
		ke := kerrors.FromError(err)
		if ke.Reason != stickykratos.ReasonPodNotRoutable || ke.Code != 503 || ke.Metadata["pod"] != "2" || !errors.Is(err, engine.ErrPodNotRoutable) {
			t.Fatalf("persistent user of the shut-down pod: %v, want reason %s, code 503, pod 2, matching engine.ErrPodNotRoutable",
				err, stickykratos.ReasonPodNotRoutable)
		}
		t.Logf("%d new users placed during the drain, none on pod 2", n)
	})
}

// TestPodLoss: a pod that dies without a word fails its users' calls with
// ServiceUnavailable until the engine sees it stale; then its temporary users
// move for good and its persistent user gets ReasonPodNotRoutable.
func TestPodLoss(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := redistest.Ctx(t)
		f := startFleet(t, b, 3)
		c := f.client(t)
		_, tc := f.dial(t, c)
		user := func(uid string) context.Context { return stickykratos.ContextWithUID(ctx, uid) }

		home := map[string]int{}
		var onOne []string
		for i := 0; len(onOne) < 4; i++ {
			if i == 300 {
				t.Fatalf("only %d of 300 users on pod 1", len(onOne))
			}
			uid := "u" + strconv.Itoa(i)
			p, err := call(user(uid), tc)
			if err != nil {
				t.Fatal(err)
			}
			home[uid] = p
			if p == 1 {
				onOne = append(onOne, uid)
			}
		}
		owned := onOne[0]
		if _, err := f.pods[1].srv.TrySetLinkedPod(ctx, f.ns, owned, svc, 1); err != nil {
			t.Fatal(err)
		}

		f.pods[1].kill()
		if _, err := call(user(onOne[1]), tc); kerrors.FromError(err).Code != 503 {
			t.Fatalf("user of the lost pod right after the loss: %v, want ServiceUnavailable", err)
		}
		redistest.Poll(t, 3*time.Second, "the client sees pod 1 stale", func() bool {
			return !c.States().IsPodRoutable(f.ns, svc, 1)
		})
		for uid, was := range home {
			p, err := call(user(uid), tc)
			switch {
			case uid == owned:
				if ke := kerrors.FromError(err); ke.Reason != stickykratos.ReasonPodNotRoutable || !errors.Is(err, engine.ErrPodNotRoutable) {
					t.Fatalf("persistent user of the lost pod: %v, want reason %s", err, stickykratos.ReasonPodNotRoutable)
				}
			case err != nil:
				t.Fatalf("%s (was on %d) after the loss: %v", uid, was, err)
			case was != 1 && p != was:
				t.Fatalf("%s moved from live pod %d to %d", uid, was, p)
			case was == 1 && p == 1:
				t.Fatalf("%s still routed to the lost pod", uid)
			}
		}
	})
}
