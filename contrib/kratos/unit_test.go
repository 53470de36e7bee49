package stickykratos_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/registry"
	"github.com/go-kratos/kratos/v2/selector"

	"github.com/stickyroute/stickyroute/adapter/adaptertest"
	stickykratos "github.com/stickyroute/stickyroute/contrib/kratos"
	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

func node(pod string) selector.Node {
	md := map[string]string{}
	if pod != "" {
		md[stickykratos.MetadataKey] = pod
	}
	return selector.NewNode("grpc", "127.0.0.1:1"+pod, &registry.ServiceInstance{Metadata: md})
}

func TestNodePod(t *testing.T) {
	for v, want := range map[string]int{"0": 0, "17": 17, "": -1, "x": -1, "-2": -1} {
		got, ok := stickykratos.NodePod(node(v))
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("pod %q read as %d, want %d", v, got, want)
		}
	}
}

// TestFilter: a steered call keeps its pod's node only, other calls the
// accepting pods' nodes, and the selector's slice is never written.
func TestFilter(t *testing.T) {
	b := redistest.Open(t, redistest.Embedded)
	ctx := redistest.Ctx(t)
	st := store.New(b.Client)
	for pod, routing := range []store.RoutingState{store.Ready, store.DenyNewCall, store.Ready} {
		if _, err := st.SetServiceState(ctx, "g", "room", pod, 0, routing); err != nil {
			t.Fatal(err)
		}
	}
	c, err := engine.NewClient(engine.ClientConfig{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.States().Snapshot(ctx, "g", "room"); err != nil {
		t.Fatal(err)
	}
	r, err := stickykratos.New(stickykratos.Config{Client: c, Namespace: "g", Service: "room"})
	if err != nil {
		t.Fatal(err)
	}
	filter := r.Filter()
	nodes := []selector.Node{node("0"), node("1"), node("2"), node("")}
	pods := func(ns []selector.Node) string {
		var s []string
		for _, n := range ns {
			s = append(s, n.Metadata()[stickykratos.MetadataKey])
		}
		return strings.Join(s, ",")
	}
	if got := pods(filter(stickykratos.ContextWithPod(ctx, 1), nodes)); got != "1" {
		t.Errorf("steered to pod 1: nodes %s", got)
	}
	if got := pods(filter(stickykratos.ContextWithPod(ctx, 5), nodes)); got != "" {
		t.Errorf("steered to pod 5 (no node): nodes %s", got)
	}
	if got := pods(filter(ctx, nodes)); got != "0,2" {
		t.Errorf("no user: nodes %s, want the accepting pods 0,2", got)
	}
	if got := pods(nodes); got != "0,1,2," {
		t.Errorf("the filter wrote the selector's slice: %s", got)
	}
	if got := pods(filter(ctx, nodes[1:2])); got != "1" {
		t.Errorf("no user, only a draining pod: nodes %s, want it", got)
	}
	unknown := []selector.Node{node("7"), node("8")}
	if got := pods(filter(ctx, unknown)); got != "7,8" {
		t.Errorf("no user, pods the engine does not know: nodes %s, want all", got)
	}
}

func TestNewRejects(t *testing.T) {
	adaptertest.TestRejects(t, func(c *engine.Client, ns, svc string) error {
		_, err := stickykratos.New(stickykratos.Config{Client: c, Namespace: ns, Service: svc})
		return err
	})
}

// TestRouteErrors: each engine error becomes the documented Kratos error,
// and still matches the engine's error.
func TestRouteErrors(t *testing.T) {
	b := redistest.Open(t, redistest.Embedded)
	ctx := redistest.Ctx(t)
	st := store.New(b.Client)
	c, err := engine.NewClient(engine.ClientConfig{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := stickykratos.New(stickykratos.Config{Client: c, Namespace: "g", Service: "room"})
	if err != nil {
		t.Fatal(err)
	}
	// No pod at all.
	_, err = r.Route(ctx, "u1")
	if ke := kerrors.FromError(err); ke.Reason != stickykratos.ReasonNoAvailablePod || ke.Code != 503 || !errors.Is(err, engine.ErrNoAvailablePod) {
		t.Errorf("no pod: %v", err)
	}
	// A persistent link to a pod in Shutdown.
	if _, err := st.SetServiceState(ctx, "g", "room", 3, 0, store.Shutdown); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetLinkedPod(ctx, "g", "u2", "room", 3, store.Persistent); err != nil {
		t.Fatal(err)
	}
	_, err = r.Route(ctx, "u2")
	if ke := kerrors.FromError(err); ke.Reason != stickykratos.ReasonPodNotRoutable || ke.Metadata["pod"] != "3" || !errors.Is(err, engine.ErrPodNotRoutable) {
		t.Errorf("persistent link to a shut-down pod: %v", err)
	}
	// An invalid uid.
	_, err = r.Route(ctx, strings.Repeat("x", 600))
	if ke := kerrors.FromError(err); ke.Reason != stickykratos.ReasonInvalidUID || ke.Code != 400 || !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("invalid uid: %v", err)
	}
	// A cancelled call stays a context error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err = r.Route(cctx, "u9"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
