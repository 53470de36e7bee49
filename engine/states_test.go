package engine

import (
	"context"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/internal/clock"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/lb"
	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

// A pod's end of life is translated from Redis's clock at every refresh, and
// the reply is read later than Redis read its clock. Reading the same
// heartbeat again, later, must not move the end further out: a pod found
// stale would turn routable again (CI saw a client route a user to a pod it
// had just found stale). Redis's clock stands still here while the local one
// moves on, which is a reply that waited as long as the local clock moved.
func TestSameHeartbeatNeverLivesLonger(t *testing.T) {
	srv, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	m := srv.Miniredis()
	at := time.Now()
	m.SetTime(at)
	st, err := store.Dial(store.DialConfig{Embedded: srv})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := st.SetServiceState(ctx, "ns", "svc", 0, 0, store.Ready); err != nil {
		t.Fatal(err)
	}

	timing, err := Timing{Heartbeat: time.Hour, Refresh: time.Hour}.withDefaults() // no background refresh
	if err != nil {
		t.Fatal(err)
	}
	deg, err := DegradedConfig{}.withDefaults(timing.Refresh)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.New(0)
	defer clk.Stop()
	s := newStates(st, timing, deg.DetectAfter, clk, func() (*lb.Balancer, error) { return lb.New(lb.Config{}) }, observer{}, newDegraded(deg, timing.Staleness))
	defer s.close()
	sv, err := s.service(ctx, "ns", "svc")
	if err != nil {
		t.Fatal(err)
	}
	until := func() int64 { return sv.view.snap.Load().aliveUntil[0] }
	first := until()

	later := clk.Exact() + 20
	redistest.Poll(t, 5*time.Second, "the local clock moves on", func() bool { return clk.Exact() >= later })
	if err := s.load(ctx, sv.view); err != nil {
		t.Fatal(err)
	}
	if got := until(); got != first {
		t.Fatalf("the same heartbeat read 20 ms later lives until %d, want %d as first read (%+d ms)", got, first, got-first)
	}

	// A new heartbeat does move it: 50 ms of Redis's time later.
	m.SetTime(at.Add(50 * time.Millisecond))
	if _, err := st.SetServiceState(ctx, "ns", "svc", 0, 0, store.Ready); err != nil {
		t.Fatal(err)
	}
	if err := s.load(ctx, sv.view); err != nil {
		t.Fatal(err)
	}
	if got := until(); got <= first {
		t.Fatalf("a heartbeat 50 ms later lives until %d, want after %d", got, first)
	}
}
