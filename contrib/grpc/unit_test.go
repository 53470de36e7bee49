package stickygrpc_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/stickyroute/stickyroute/adapter/adaptertest"
	stickygrpc "github.com/stickyroute/stickyroute/contrib/grpc"
	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/store"
)

// TestStatefulSetPod: the endpoint's first address is read (the parse
// itself is adapter's, tested there).
func TestStatefulSetPod(t *testing.T) {
	ep := resolver.Endpoint{Addresses: []resolver.Address{{Addr: "room-7.room.game.svc:9000"}, {Addr: "room-8:9000"}}}
	if got, ok := stickygrpc.StatefulSetPod(ep); !ok || got != 7 {
		t.Errorf("StatefulSetPod = (%d, %v), want pod 7 from the first address", got, ok)
	}
	if _, ok := stickygrpc.StatefulSetPod(resolver.Endpoint{Addresses: []resolver.Address{{Addr: "10.0.0.7:9000"}}}); ok {
		t.Error("a bare IP has a StatefulSet pod")
	}
}

func TestEndpointPod(t *testing.T) {
	ep := resolver.Endpoint{Addresses: []resolver.Address{{Addr: "x:1"}}}
	if _, ok := stickygrpc.EndpointPod(ep); ok {
		t.Error("an endpoint without WithPod has a pod")
	}
	if p, ok := stickygrpc.EndpointPod(stickygrpc.WithPod(ep, 0)); !ok || p != 0 {
		t.Errorf("WithPod(0) reads back as (%d, %v)", p, ok)
	}
	if _, ok := stickygrpc.StatefulSetPod(resolver.Endpoint{}); ok {
		t.Error("an endpoint without addresses has a StatefulSet pod")
	}
}

func TestRouteErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{engine.ErrNoAvailablePod, codes.Unavailable},
		{&engine.PodNotRoutableError{Pod: 3}, codes.Unavailable},
		{fmt.Errorf("x: %w", context.Canceled), codes.Canceled},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{&store.InvalidArgumentError{Arg: "uid", Reason: "empty"}, codes.InvalidArgument},
		{errors.New("store down"), codes.Unavailable},
	} {
		err := error(&stickygrpc.RouteError{UID: "u", Pod: engine.NoPod, Err: tc.err})
		if got := status.Code(err); got != tc.code {
			t.Errorf("%v: code %v, want %v", tc.err, got, tc.code)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%v: the RouteError does not unwrap to it", tc.err)
		}
	}
}

func TestNewRejects(t *testing.T) {
	adaptertest.TestRejects(t, func(c *engine.Client, ns, svc string) error {
		_, err := stickygrpc.New(stickygrpc.Config{Client: c, Namespace: ns, Service: svc})
		return err
	})
	c := new(engine.Client) // refused before use
	for name, cfg := range map[string]stickygrpc.Config{
		"not both": {Client: c, Namespace: "g", Service: "s", Template: "h{pod}:1", Addr: func(int) string { return "" }},
		"{pod}":    {Client: c, Namespace: "g", Service: "s", Template: "h:1"},
	} {
		if _, err := stickygrpc.New(cfg); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("config with %s: %v", name, err)
		}
	}
}
