package adapter_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stickyroute/stickyroute/adapter"
	"github.com/stickyroute/stickyroute/engine"
)

// TestRoute: a pod set on a context reads back, a nested one wins, a Miss
// shows on the Route the steering returned, and other values and the
// deadline pass through.
func TestRoute(t *testing.T) {
	type key struct{}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	if pod, ok := adapter.PodFromContext(ctx); ok || pod != engine.NoPod {
		t.Errorf("no pod set: (%d, %v), want (NoPod, false)", pod, ok)
	}
	if adapter.RouteFromContext(ctx) != nil {
		t.Error("no pod set: a Route")
	}
	steered, rt := adapter.WithRoute(ctx, 2)
	if pod, ok := adapter.PodFromContext(steered); !ok || pod != 2 {
		t.Errorf("steered to 2: (%d, %v)", pod, ok)
	}
	if pod, _ := adapter.PodFromContext(adapter.ContextWithPod(steered, 0)); pod != 0 {
		t.Errorf("steered to 2 then 0: pod %d", pod)
	}
	if rt.Missed() {
		t.Error("a new Route is missed")
	}
	adapter.RouteFromContext(steered).Miss()
	if !rt.Missed() {
		t.Error("Miss on the context's Route does not show on the one WithRoute returned")
	}
	if steered.Value(key{}) != "v" {
		t.Error("the parent's value is lost")
	}
	cancel()
	if steered.Err() == nil {
		t.Error("cancelling the parent does not end the steered context")
	}
}

func TestCheckConfig(t *testing.T) {
	c := new(engine.Client) // only compared with nil
	for name, args := range map[string][2]string{
		"Config.Namespace": {"a b", "room"},
		"Config.Service":   {"game", ""},
	} {
		if err := adapter.CheckConfig("pkg", c, args[0], args[1]); err == nil || !strings.HasPrefix(err.Error(), "pkg: "+name) {
			t.Errorf("bad %s: %v", name, err)
		}
	}
	if err := adapter.CheckConfig("pkg", nil, "game", "room"); err == nil || err.Error() != "pkg: Config.Client is required" {
		t.Errorf("no client: %v", err)
	}
	if err := adapter.CheckConfig("pkg", c, "game", "room"); err != nil {
		t.Errorf("good config: %v", err)
	}
}
