package stickygrpc_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	stickygrpc "github.com/stickyroute/stickyroute/contrib/grpc"
	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
)

// TestRoutesByUID: every call of a user reaches the pod its link names,
// whichever way the uid is given, for unary calls and streams.
func TestRoutesByUID(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *redistest.Backend) {
		ctx := redistest.Ctx(t)
		f := startFleet(t, b, 3)
		c := f.client(t)
		_, tc := f.dial(t, c, stickygrpc.Config{})
		_, byFunc := f.dial(t, c, stickygrpc.Config{UID: func(ctx context.Context, method string) (string, bool) {
			if method != "/grpc.testing.TestService/UnaryCall" {
				t.Errorf("UID got method %q", method)
			}
			md, _ := metadata.FromOutgoingContext(ctx)
			if u := md.Get("user"); len(u) == 1 {
				return u[0], true
			}
			return "", false
		}})

		seen := map[int]int{}
		for i := range 60 {
			uid := "u" + strconv.Itoa(i)
			var got []int
			p, err := call(ctx, tc, stickygrpc.UID(uid))
			got = append(got, p)
			if err == nil {
				p, err = call(metadata.AppendToOutgoingContext(ctx, stickygrpc.DefaultUIDKey, uid), tc)
				got = append(got, p)
			}
			if err == nil {
				p, err = call(metadata.AppendToOutgoingContext(ctx, "user", uid), byFunc)
				got = append(got, p)
			}
			if err != nil {
				t.Fatalf("%s: %v", uid, err)
			}
			link, err := c.GetLinkedPodNotCache(ctx, f.ns, uid, svc)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range got {
				if p != link {
					t.Fatalf("%s: calls reached pods %v, its link is %d", uid, got, link)
				}
			}
			seen[link]++
		}
		if len(seen) != 3 {
			t.Fatalf("60 users landed on pods %v, want all 3", seen)
		}

		// A stream goes to the user's pod for its whole life.
		uid := "u7"
		link, _ := c.GetLinkedPodNotCache(ctx, f.ns, uid, svc)
		stream, err := tc.FullDuplexCall(ctx, stickygrpc.UID(uid))
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
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err == nil {
			t.Fatal("stream did not end after CloseSend")
		}
	})
}

// TestFallbackWithoutUID: calls without a user spread over the pods, and
// avoid a pod that takes no new users once the client sees it.
func TestFallbackWithoutUID(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *redistest.Backend) {
		ctx := redistest.Ctx(t)
		f := startFleet(t, b, 3)
		c := f.client(t)
		_, tc := f.dial(t, c, stickygrpc.Config{})

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
		if links, _ := b.Client.Do(ctx, b.Client.B().Keys().Pattern("*"+f.ns+":lk:*").Build()).AsStrSlice(); len(links) != 0 {
			t.Fatalf("calls without a uid wrote links %v", links)
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
		// A pod chosen on purpose is reached all the same.
		if p, err := call(stickygrpc.ContextWithPod(ctx, 1), tc); err != nil || p != 1 {
			t.Fatalf("call steered to pod 1 = (%d, %v)", p, err)
		}
	})
}

// TestDrain: while a pod drains, new users avoid it and its users stay; after
// it shuts down, its temporary users move and a persistent user gets the
// engine's typed error.
func TestDrain(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *redistest.Backend) {
		ctx := redistest.Ctx(t)
		f := startFleet(t, b, 3)
		c := f.client(t)
		_, tc := f.dial(t, c, stickygrpc.Config{})

		var onTwo []string
		for i := 0; len(onTwo) < 4; i++ {
			if i == 300 {
				t.Fatalf("only %d of 300 users on pod 2", len(onTwo))
			}
			uid := "u" + strconv.Itoa(i)
			p, err := call(ctx, tc, stickygrpc.UID(uid))
			if err != nil {
				t.Fatal(err)
			}
			if p == 2 {
				onTwo = append(onTwo, uid)
			}
		}
		owned := onTwo[0] // pod 2 claims it: a persistent link
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
			p, err := call(ctx, tc, stickygrpc.UID("new"+strconv.Itoa(n)))
			if err != nil || p == 2 {
				t.Fatalf("new user during the drain = (%d, %v), want a pod other than 2", p, err)
			}
			for _, uid := range onTwo {
				if p, err := call(ctx, tc, stickygrpc.UID(uid)); err != nil || p != 2 {
					t.Fatalf("%s during the drain = (%d, %v), want its pod 2", uid, p, err)
				}
			}
		}
		<-stopped
		redistest.Poll(t, 2*time.Second, "the client sees pod 2 shut down", func() bool {
			return !c.States().IsPodRoutable(f.ns, svc, 2)
		})
		for _, uid := range onTwo[1:] {
			p, err := call(ctx, tc, stickygrpc.UID(uid))
			if err != nil || p == 2 {
				t.Fatalf("%s after the drain = (%d, %v), want moved off pod 2", uid, p, err)
			}
			if again, err := call(ctx, tc, stickygrpc.UID(uid)); err != nil || again != p {
				t.Fatalf("%s moved to %d, then = (%d, %v)", uid, p, again, err)
			}
		}
		_, err := call(ctx, tc, stickygrpc.UID(owned))
		var re *stickygrpc.RouteError
		if !errors.As(err, &re) || re.Pod != 2 || re.UID != owned || !errors.Is(err, engine.ErrPodNotRoutable) || status.Code(err) != codes.Unavailable {
			t.Fatalf("persistent user of the shut-down pod: %v, want a *RouteError{Pod: 2} matching engine.ErrPodNotRoutable, code Unavailable", err)
		}
		t.Logf("%d new users placed during the drain, none on pod 2", n)
	})
}

// TestPodLoss: a pod that dies without a word fails its users' calls with
// Unavailable until the engine sees it stale; then its temporary users move
// for good and its persistent user gets the typed error. Other users never
// notice.
func TestPodLoss(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *redistest.Backend) {
		ctx := redistest.Ctx(t)
		f := startFleet(t, b, 3)
		c := f.client(t)
		_, tc := f.dial(t, c, stickygrpc.Config{})

		home := map[string]int{}
		var onOne []string
		for i := 0; len(onOne) < 4; i++ {
			if i == 300 {
				t.Fatalf("only %d of 300 users on pod 1", len(onOne))
			}
			uid := "u" + strconv.Itoa(i)
			p, err := call(ctx, tc, stickygrpc.UID(uid))
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
		// Fail fast while the engine still counts the pod alive.
		if _, err := call(ctx, tc, stickygrpc.UID(onOne[1])); status.Code(err) != codes.Unavailable {
			t.Fatalf("user of the lost pod right after the loss: %v, want Unavailable", err)
		}
		redistest.Poll(t, 3*time.Second, "the client sees pod 1 stale", func() bool {
			return !c.States().IsPodRoutable(f.ns, svc, 1)
		})
		for uid, was := range home {
			p, err := call(ctx, tc, stickygrpc.UID(uid))
			switch {
			case uid == owned:
				var re *stickygrpc.RouteError
				if !errors.As(err, &re) || re.Pod != 1 || !errors.Is(err, engine.ErrPodNotRoutable) {
					t.Fatalf("persistent user of the lost pod: %v, want *RouteError{Pod: 1}", err)
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

// TestAnyResolver: addresses from another resolver, their pods given by WithPod
// or by PodOf, route users the same way.
func TestAnyResolver(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *redistest.Backend) {
		ctx := redistest.Ctx(t)
		f := startFleet(t, b, 3)
		c := f.client(t)

		for _, tc := range []struct {
			name  string
			podOf func(resolver.Endpoint) (int, bool)
			state func(addrs ...string) resolver.State
		}{
			{"WithPod", nil, func(addrs ...string) resolver.State {
				var s resolver.State
				for pod, a := range addrs {
					s.Endpoints = append(s.Endpoints, stickygrpc.WithPod(resolver.Endpoint{Addresses: []resolver.Address{{Addr: a}}}, pod))
				}
				return s
			}},
			{"PodOf", func(ep resolver.Endpoint) (int, bool) {
				for _, p := range f.pods {
					if p.addr == ep.Addresses[0].Addr {
						return p.index, true
					}
				}
				return 0, false
			}, func(addrs ...string) resolver.State {
				var s resolver.State // bare addresses, as the DNS resolver gives
				for _, a := range addrs {
					s.Addresses = append(s.Addresses, resolver.Address{Addr: a})
				}
				return s
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r, err := stickygrpc.New(stickygrpc.Config{Client: c, Namespace: f.ns, Service: svc, PodOf: tc.podOf})
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				mr := manual.NewBuilderWithScheme("static")
				mr.InitialState(tc.state(f.pods[0].addr, f.pods[1].addr, f.pods[2].addr))
				conn, err := grpc.NewClient("static:///room", append(r.DialOptions(), grpc.WithResolvers(mr),
					grpc.WithTransportCredentials(insecure.NewCredentials()))...)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				client := testpb.NewTestServiceClient(conn)
				for i := range 30 {
					uid := "u" + strconv.Itoa(i)
					p, err := call(ctx, client, stickygrpc.UID(uid))
					if err != nil {
						t.Fatal(err)
					}
					if link, _ := c.GetLinkedPodNotCache(ctx, f.ns, uid, svc); p != link {
						t.Fatalf("%s reached pod %d, its link is %d", uid, p, link)
					}
				}
			})
		}
	})
}

// TestAddressesWithoutPod: a resolver whose addresses carry no pod fails the
// calls with a message that says so.
func TestAddressesWithoutPod(t *testing.T) {
	b := redistest.Open(t, redistest.Embedded)
	f := startFleet(t, b, 1)
	c := f.client(t)
	r, err := stickygrpc.New(stickygrpc.Config{Client: c, Namespace: f.ns, Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	mr := manual.NewBuilderWithScheme("static")
	mr.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: f.pods[0].addr}}})
	conn, err := grpc.NewClient("static:///room", append(r.DialOptions(), grpc.WithResolvers(mr),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = call(redistest.Ctx(t), testpb.NewTestServiceClient(conn))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "carries a pod index") {
		t.Fatalf("call over addresses without pods: %v", err)
	}
}
