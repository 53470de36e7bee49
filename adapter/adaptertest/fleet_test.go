package adaptertest_test

import (
	"net"
	"slices"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/adapter/adaptertest"
	"github.com/stickyroute/stickyroute/internal/redistest"
)

func TestMain(m *testing.M) { redistest.VerifyTestMain(m) }

// serve accepts and closes connections on lis until stopped.
func serve(_ int, lis net.Listener) (stop func()) {
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return func() { _ = lis.Close() }
}

// TestFleet: the pods are routable and listening once Start returns, a
// killed pod goes stale and stops listening, a stopped one shuts down, and
// Start refuses a config without Serve.
func TestFleet(t *testing.T) {
	ctx := redistest.Ctx(t)
	if _, err := adaptertest.Start(ctx, adaptertest.Config{}); err == nil {
		t.Fatal("a config without Serve was accepted")
	}
	f := adaptertest.New(t, adaptertest.Config{Pods: 3, Serve: serve})
	c := f.Client
	if f.Addr(7) == f.Addr(0) || f.Addr(-1) != f.Addr(7) {
		t.Errorf("addresses: pod 0 %s, pod 7 %s, pod -1 %s", f.Addr(0), f.Addr(7), f.Addr(-1))
	}
	pods, err := c.States().RoutablePods(ctx, f.Namespace, adaptertest.Service)
	if err != nil || !slices.Equal(pods, []int{0, 1, 2}) {
		t.Fatalf("routable pods (%v, %v), want 0, 1, 2", pods, err)
	}
	for _, p := range f.Pods {
		conn, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err != nil {
			t.Fatalf("pod %d: %v", p.Index, err)
		}
		conn.Close()
	}
	f.Pods[1].Kill()
	f.Pods[2].Stop()
	redistest.Poll(t, 3*time.Second, "the client sees pods 1 and 2 gone", func() bool {
		return c.States().IsPodRoutable(f.Namespace, adaptertest.Service, 0) &&
			!c.States().IsPodRoutable(f.Namespace, adaptertest.Service, 1) &&
			!c.States().IsPodRoutable(f.Namespace, adaptertest.Service, 2)
	})
	if conn, err := net.DialTimeout("tcp", f.Pods[1].Addr, time.Second); err == nil {
		conn.Close()
		t.Error("a killed pod still listens")
	}
}
