package stickygrpc_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/stickyroute/stickyroute/adapter/adaptertest"
	stickygrpc "github.com/stickyroute/stickyroute/contrib/grpc"
	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
)

// TestRoutesByUID: every call of a user reaches the pod its link names,
// whichever way the uid is given, for unary calls and streams.
func TestRoutesByUID(t *testing.T) {
	adaptertest.Each(t, fleet(3), func(t *testing.T, f *adaptertest.Fleet) {
		ctx := redistest.Ctx(t)
		_, tc := dial(t, f, stickygrpc.Config{})
		_, byFunc := dial(t, f, stickygrpc.Config{UID: func(ctx context.Context, method string) (string, bool) {
			if method != "/grpc.testing.TestService/UnaryCall" {
				t.Errorf("UID got method %q", method)
			}
			md, _ := metadata.FromOutgoingContext(ctx)
			if u := md.Get("user"); len(u) == 1 {
				return u[0], true
			}
			return "", false
		}})
		adaptertest.TestRoutes(t, f, caller(tc),
			func(ctx context.Context, uid string) (int, error) {
				return call(metadata.AppendToOutgoingContext(ctx, stickygrpc.DefaultUIDKey, uid), tc)
			},
			func(ctx context.Context, uid string) (int, error) {
				return call(metadata.AppendToOutgoingContext(ctx, "user", uid), byFunc)
			})

		// A stream goes to the user's pod for its whole life.
		link, _ := f.Client.GetLinkedPodNotCache(ctx, f.Namespace, "u7", svc)
		stream, err := tc.FullDuplexCall(ctx, stickygrpc.UID("u7"))
		if err != nil {
			t.Fatal(err)
		}
		adaptertest.TestStream(t, stream, &testpb.StreamingOutputCallRequest{}, streamPod, link)
	})
}

// streamPod reads the pod that sent a stream reply.
func streamPod(resp *testpb.StreamingOutputCallResponse) int {
	pod, err := strconv.Atoi(string(resp.Payload.Body))
	if err != nil {
		return engine.NoPod
	}
	return pod
}

// TestFallbackWithoutUID: calls without a user spread over the pods, write
// no link, and avoid a pod that takes no new users once the client sees it;
// a pod chosen on purpose is reached all the same.
func TestFallbackWithoutUID(t *testing.T) {
	adaptertest.Each(t, fleet(3), func(t *testing.T, f *adaptertest.Fleet) {
		ctx := redistest.Ctx(t)
		_, tc := dial(t, f, stickygrpc.Config{})
		adaptertest.TestFallback(t, f, caller(tc))
		if links, _ := f.Redis.Do(ctx, f.Redis.B().Keys().Pattern("*"+f.Namespace+":lk:*").Build()).AsStrSlice(); len(links) != 0 {
			t.Fatalf("calls without a uid wrote links %v", links)
		}
		if p, err := call(stickygrpc.ContextWithPod(ctx, 1), tc); err != nil || p != 1 {
			t.Fatalf("call steered to pod 1 = (%d, %v)", p, err)
		}
	})
}

// errs are the errors of this adapter: a *RouteError naming the user and the
// pod, matching engine.ErrPodNotRoutable with code Unavailable, for a user
// of a pod that is not routable; Unavailable for a pod that does not answer.
var errs = adaptertest.Errors{
	Unreachable: func(err error) bool { return status.Code(err) == codes.Unavailable },
	NotRoutable: func(err error, uid string, pod int) bool {
		var re *stickygrpc.RouteError
		return errors.As(err, &re) && re.Pod == pod && re.UID == uid &&
			errors.Is(err, engine.ErrPodNotRoutable) && status.Code(err) == codes.Unavailable
	},
}

// TestDrain: while a pod drains, new users avoid it and its users stay; after
// it shuts down, its temporary users move and a persistent user gets the
// engine's typed error.
func TestDrain(t *testing.T) {
	adaptertest.Each(t, fleet(3), func(t *testing.T, f *adaptertest.Fleet) {
		_, tc := dial(t, f, stickygrpc.Config{})
		adaptertest.TestDrain(t, f, caller(tc), errs)
	})
}

// TestPodLoss: a pod that dies without a word fails its users' calls with
// Unavailable until the engine sees it stale; then its temporary users move
// for good and its persistent user gets the typed error. Other users never
// notice.
func TestPodLoss(t *testing.T) {
	adaptertest.Each(t, fleet(3), func(t *testing.T, f *adaptertest.Fleet) {
		_, tc := dial(t, f, stickygrpc.Config{})
		adaptertest.TestPodLoss(t, f, caller(tc), errs)
	})
}

// TestAnyResolver: addresses from another resolver, their pods given by WithPod
// or by PodOf, route users the same way.
func TestAnyResolver(t *testing.T) {
	adaptertest.Each(t, fleet(3), func(t *testing.T, f *adaptertest.Fleet) {
		ctx, c := redistest.Ctx(t), f.Client

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
				for _, p := range f.Pods {
					if p.Addr == ep.Addresses[0].Addr {
						return p.Index, true
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
				r, err := stickygrpc.New(stickygrpc.Config{Client: c, Namespace: f.Namespace, Service: svc, PodOf: tc.podOf})
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				mr := manual.NewBuilderWithScheme("static")
				mr.InitialState(tc.state(f.Pods[0].Addr, f.Pods[1].Addr, f.Pods[2].Addr))
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
					if link, _ := c.GetLinkedPodNotCache(ctx, f.Namespace, uid, svc); p != link {
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
	f := adaptertest.New(t, fleet(1))
	r, err := stickygrpc.New(stickygrpc.Config{Client: f.Client, Namespace: f.Namespace, Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	mr := manual.NewBuilderWithScheme("static")
	mr.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: f.Pods[0].Addr}}})
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
