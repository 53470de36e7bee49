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

	stickygrpc "github.com/stickyroute/stickyroute/contrib/grpc"
	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

func TestTemplate(t *testing.T) {
	addr, err := stickygrpc.Template("{svc}-{pod}.{svc}.{ns}.svc:9000", "game", "room")
	if err != nil {
		t.Fatal(err)
	}
	for pod, want := range map[int]string{0: "room-0.room.game.svc:9000", 12: "room-12.room.game.svc:9000"} {
		if got := addr(pod); got != want {
			t.Errorf("pod %d: %q, want %q", pod, got, want)
		}
	}
	twice, _ := stickygrpc.Template("h{pod}:90{pod}", "ns", "svc")
	if got := twice(3); got != "h3:903" {
		t.Errorf("template with {pod} twice: %q", got)
	}
	if _, err := stickygrpc.Template("room.game.svc:9000", "game", "room"); err == nil || !strings.Contains(err.Error(), "{pod}") {
		t.Errorf("template without {pod}: %v", err)
	}
}

func TestStatefulSetPod(t *testing.T) {
	for addr, want := range map[string]int{
		"room-0.room.game.svc:9000": 0, "room-17.room.game.svc.cluster.local:9000": 17,
		"my-room-3:80": 3, "room-4": 4,
		"room.game.svc:9000": -1, "room-:80": -1, "room-x:80": -1, "10.0.0.7:9000": -1,
		"-3:80": -1, "room-03:80": -1, "[::1]:80": -1,
	} {
		got, ok := stickygrpc.StatefulSetPod(resolver.Endpoint{Addresses: []resolver.Address{{Addr: addr}}})
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("StatefulSetPod(%q) = %d, want %d", addr, got, want)
		}
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
	b := redistest.Open(t, redistest.Embedded)
	c, err := engine.NewClient(engine.ClientConfig{Store: store.New(b.Client)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name, cfg := range map[string]stickygrpc.Config{
		"Client":    {Namespace: "g", Service: "s"},
		"Namespace": {Client: c, Namespace: "a b", Service: "s"},
		"Service":   {Client: c, Namespace: "g"},
		"not both":  {Client: c, Namespace: "g", Service: "s", Template: "h{pod}:1", Addr: func(int) string { return "" }},
		"{pod}":     {Client: c, Namespace: "g", Service: "s", Template: "h:1"},
	} {
		if _, err := stickygrpc.New(cfg); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("config missing %s: %v", name, err)
		}
	}
}
