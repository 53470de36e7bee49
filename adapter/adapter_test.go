package adapter_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stickyroute/stickyroute/adapter"
)

func TestTemplate(t *testing.T) {
	addr, err := adapter.Template("{svc}-{pod}.{svc}.{ns}.svc:9000", "game", "room")
	if err != nil {
		t.Fatal(err)
	}
	for pod, want := range map[int]string{0: "room-0.room.game.svc:9000", 12: "room-12.room.game.svc:9000"} {
		if got := addr(pod); got != want {
			t.Errorf("pod %d: %q, want %q", pod, got, want)
		}
	}
	twice, _ := adapter.Template("h{pod}:90{pod}", "ns", "svc")
	if got := twice(3); got != "h3:903" {
		t.Errorf("template with {pod} twice: %q", got)
	}
	_, err = adapter.Template("room.game.svc:9000", "game", "room")
	if !errors.Is(err, adapter.ErrNoPod) || !strings.Contains(err.Error(), `"room.game.svc:9000"`) {
		t.Errorf("template without {pod}: %v, want ErrNoPod quoting the template", err)
	}
}

func TestStatefulSetPod(t *testing.T) {
	for addr, want := range map[string]int{
		"room-0.room.game.svc:9000": 0, "room-17.room.game.svc.cluster.local:9000": 17,
		"my-room-3:80": 3, "room-4": 4,
		"room.game.svc:9000": -1, "room-:80": -1, "room-x:80": -1, "10.0.0.7:9000": -1,
		"-3:80": -1, "room-03:80": -1, "[::1]:80": -1, "": -1,
	} {
		got, ok := adapter.StatefulSetPod(addr)
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("StatefulSetPod(%q) = %d, want %d", addr, got, want)
		}
	}
}
