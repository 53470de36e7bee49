package engine_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

// Short real timings for the server tests: a heartbeat every 50ms, a 150ms
// staleness window and a 150ms drain (Refresh + MaxRequest).
var serverTiming = engine.Timing{Heartbeat: 50 * time.Millisecond, Refresh: 50 * time.Millisecond}

const (
	serverSvc        = "svc"
	serverMaxRequest = 100 * time.Millisecond
)

// newTestServer builds a server for pod of serverSvc in ns with serverTiming,
// after edit (if any) adjusted the config, and stops it when t ends.
func newTestServer(t *testing.T, st *store.Redis, ns string, pod int, edit func(*engine.ServerConfig)) *engine.Server {
	t.Helper()
	cfg := engine.ServerConfig{
		Store: st, Namespace: ns, Service: serverSvc, Pod: pod,
		Timing: serverTiming, MaxRequest: serverMaxRequest,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := engine.NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	t.Cleanup(func() {
		// A cancelled context skips the drain; Shutdown is still published
		// and every goroutine ends, which the package's goleak check verifies.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = s.Stop(ctx)
	})
	return s
}

// serverPodState reads pod's published state; ok is false when it has none.
func serverPodState(t *testing.T, st *store.Redis, ns string, pod int) (ps store.PodState, now int64, ok bool) {
	t.Helper()
	ss, err := st.GetServiceState(redistest.Ctx(t), ns, serverSvc)
	if err != nil {
		t.Fatalf("GetServiceState: %v", err)
	}
	for _, p := range ss.Pods {
		if p.Pod == pod {
			return p, ss.Now, true
		}
	}
	return store.PodState{}, ss.Now, false
}

// serverPodStateOf is serverPodState for a pod that must have published.
func serverPodStateOf(t *testing.T, st *store.Redis, ns string, pod int) store.PodState {
	t.Helper()
	ps, _, ok := serverPodState(t, st, ns, pod)
	if !ok {
		t.Fatalf("pod %d has published no state", pod)
	}
	return ps
}

// serverWorkload reads the workload state (K4) of serverSvc in ns.
func serverWorkload(t *testing.T, st *store.Redis, ns string) store.WorkloadState {
	t.Helper()
	w, err := st.GetWorkloadState(redistest.Ctx(t), ns, serverSvc)
	if err != nil {
		t.Fatalf("GetWorkloadState: %v", err)
	}
	return w
}

func TestServerConfigValidation(t *testing.T) {
	b := redistest.Open(t, redistest.Embedded)
	st := store.New(b.Client)
	valid := func() engine.ServerConfig {
		return engine.ServerConfig{Store: st, Namespace: "ns", Service: "svc", Pod: 0}
	}
	cases := []struct {
		name  string
		edit  func(*engine.ServerConfig)
		field string
	}{
		{"nil store", func(c *engine.ServerConfig) { c.Store = nil }, "Store"},
		{"empty namespace", func(c *engine.ServerConfig) { c.Namespace = "" }, "Namespace"},
		{"bad namespace", func(c *engine.ServerConfig) { c.Namespace = "a{b}" }, "Namespace"},
		{"long namespace", func(c *engine.ServerConfig) { c.Namespace = strings.Repeat("n", store.MaxNameLen+1) }, "Namespace"},
		{"empty service", func(c *engine.ServerConfig) { c.Service = "" }, "Service"},
		{"bad service", func(c *engine.ServerConfig) { c.Service = "a b" }, "Service"},
		{"negative pod", func(c *engine.ServerConfig) { c.Pod = -1 }, "Pod"},
		{"pod above MaxPod", func(c *engine.ServerConfig) { c.Pod = int(int64(store.MaxPod) + 1) }, "Pod"},
		{"negative heartbeat", func(c *engine.ServerConfig) { c.Heartbeat = -time.Second }, "Timing"},
		{"short staleness", func(c *engine.ServerConfig) {
			c.Heartbeat, c.Staleness = time.Second, 2*time.Second
		}, "Timing.Staleness"},
		{"refresh above heartbeat", func(c *engine.ServerConfig) {
			c.Heartbeat, c.Refresh = time.Second, 2*time.Second
		}, "Timing.Refresh"},
		{"negative max request", func(c *engine.ServerConfig) { c.MaxRequest = -1 }, "MaxRequest"},
		{"negative drain", func(c *engine.ServerConfig) { c.Drain = -1 }, "Drain"},
		{"short drain", func(c *engine.ServerConfig) {
			c.Refresh, c.MaxRequest, c.Drain = time.Second, time.Second, 1999*time.Millisecond
		}, "Drain"},
		{"negative load", func(c *engine.ServerConfig) { c.Load = -1 }, "Load"},
		{"bad routing", func(c *engine.ServerConfig) { c.Routing = store.RoutingState(9) }, "Routing"},
		{"load interval above heartbeat", func(c *engine.ServerConfig) {
			c.Heartbeat, c.LoadInterval = time.Second, 2*time.Second
		}, "LoadInterval"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.edit(&cfg)
			s, err := engine.NewServer(cfg)
			if err == nil {
				t.Fatalf("NewServer accepted the config: %+v", s)
			}
			if !strings.HasPrefix(err.Error(), "engine: ") || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q does not start with \"engine: \" and name %s", err, tc.field)
			}
			var ce *engine.ConfigError
			if !errors.Is(err, store.ErrInvalidArgument) || !errors.As(err, &ce) || !strings.Contains(ce.Field, tc.field) {
				t.Fatalf("error %v: want a *engine.ConfigError naming %s and matching store.ErrInvalidArgument", err, tc.field)
			}
			if s != nil {
				t.Fatalf("NewServer returned a server with its error")
			}
		})
	}
	t.Run("invalid names match store.ErrInvalidArgument", func(t *testing.T) {
		cfg := valid()
		cfg.Service = "a/b"
		if _, err := engine.NewServer(cfg); !errors.Is(err, store.ErrInvalidArgument) {
			t.Fatalf("err = %v, want store.ErrInvalidArgument", err)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		s, err := engine.NewServer(valid())
		if err != nil {
			t.Fatalf("NewServer(zero timings): %v", err)
		}
		if got := s.GetRoutingState(); got != engine.Ready {
			t.Fatalf("zero Routing became %v, want Ready", got)
		}
		if got := s.GetLoadState(); got != 0 {
			t.Fatalf("load = %d, want 0", got)
		}
		cfg := valid()
		cfg.Pod, cfg.Load, cfg.Routing = store.MaxPod, 7, engine.DenyNewCall
		cfg.Refresh, cfg.MaxRequest, cfg.Drain = time.Second, time.Second, 2*time.Second
		s, err = engine.NewServer(cfg)
		if err != nil {
			t.Fatalf("NewServer(pod MaxPod, Drain = Refresh + MaxRequest): %v", err)
		}
		if s.GetLoadState() != 7 || s.GetRoutingState() != engine.DenyNewCall {
			t.Fatalf("initial state %d/%v, want 7/DenyNewCall", s.GetLoadState(), s.GetRoutingState())
		}
	})
}

func TestServerStartPublishes(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		st, ns := store.New(b.Client), redistest.Namespace(t)
		s := newTestServer(t, st, ns, 0, func(c *engine.ServerConfig) { c.Load = 5 })
		if _, _, ok := serverPodState(t, st, ns, 0); ok {
			t.Fatal("a server that was not started published its state")
		}
		if err := s.Start(redistest.Ctx(t)); err != nil {
			t.Fatalf("Start: %v", err)
		}
		first := serverPodStateOf(t, st, ns, 0)
		if first.Load != 5 || first.Routing != store.Ready {
			t.Fatalf("published %+v right after Start, want load 5 Ready", first.StateValue)
		}
		// Every heartbeat publishes again, with a later server-clock stamp.
		last := first.Updated
		for i := 0; i < 3; i++ {
			redistest.Poll(t, 2*time.Second, "the state is published again", func() bool {
				ps := serverPodStateOf(t, st, ns, 0)
				if ps.Updated > last {
					last = ps.Updated
					return true
				}
				return false
			})
		}
		if got := s.Stats(); got.Heartbeats < 2 || got.HeartbeatFailures != 0 || got.LastError != nil {
			t.Fatalf("Stats = %+v, want ≥ 2 heartbeats and no failure", got)
		}
	})
}

func TestServerSetStatePublishes(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		st, ns := store.New(b.Client), redistest.Namespace(t)
		ctx := redistest.Ctx(t)
		// A long heartbeat: what is read below was published by the setters.
		s := newTestServer(t, st, ns, 3, func(c *engine.ServerConfig) {
			c.Timing = engine.Timing{Heartbeat: time.Minute}
		})

		// Before Start the state is kept in memory only; Start publishes it.
		if err := s.SetLoadState(ctx, 11); err != nil {
			t.Fatalf("SetLoadState before Start: %v", err)
		}
		if err := s.SetRoutingState(ctx, engine.DenyNewCall); err != nil {
			t.Fatalf("SetRoutingState before Start: %v", err)
		}
		if _, _, ok := serverPodState(t, st, ns, 3); ok {
			t.Fatal("a setter published before Start")
		}
		if err := s.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if ps := serverPodStateOf(t, st, ns, 3); ps.Load != 11 || ps.Routing != store.DenyNewCall {
			t.Fatalf("Start published %+v, want load 11 DenyNewCall", ps.StateValue)
		}

		if err := s.SetLoadState(ctx, 42); err != nil {
			t.Fatalf("SetLoadState: %v", err)
		}
		if ps := serverPodStateOf(t, st, ns, 3); ps.Load != 42 || s.GetLoadState() != 42 {
			t.Fatalf("after SetLoadState(42): published %d, in memory %d", ps.Load, s.GetLoadState())
		}
		for _, rs := range []engine.RoutingState{engine.Ready, engine.Shutdown, engine.DenyNewCall} {
			if err := s.SetRoutingState(ctx, rs); err != nil {
				t.Fatalf("SetRoutingState(%v): %v", rs, err)
			}
			if ps := serverPodStateOf(t, st, ns, 3); ps.Routing != rs || s.GetRoutingState() != rs {
				t.Fatalf("after SetRoutingState(%v): published %v, in memory %v", rs, ps.Routing, s.GetRoutingState())
			}
		}

		// Bad values change nothing.
		if err := s.SetRoutingState(ctx, engine.RoutingUnknown); !errors.Is(err, store.ErrInvalidArgument) {
			t.Fatalf("SetRoutingState(RoutingUnknown) = %v, want store.ErrInvalidArgument", err)
		}
		if err := s.SetLoadState(ctx, -1); !errors.Is(err, store.ErrInvalidArgument) {
			t.Fatalf("SetLoadState(-1) = %v, want store.ErrInvalidArgument", err)
		}
		if ps := serverPodStateOf(t, st, ns, 3); ps.Load != 42 || ps.Routing != store.DenyNewCall ||
			s.GetLoadState() != 42 || s.GetRoutingState() != engine.DenyNewCall {
			t.Fatalf("a rejected value changed the state: published %+v", ps.StateValue)
		}
	})
}

func TestServerStopDrains(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		st, ns := store.New(b.Client), redistest.Namespace(t)
		const drain = 400 * time.Millisecond
		s := newTestServer(t, st, ns, 0, func(c *engine.ServerConfig) { c.Drain = drain })
		if err := s.Start(redistest.Ctx(t)); err != nil {
			t.Fatalf("Start: %v", err)
		}

		began := time.Now()
		stopped := make(chan error, 1)
		go func() { stopped <- s.Stop(redistest.Ctx(t)) }()

		// DenyNewCall is published at once and stays during the drain; the
		// heartbeats go on, so the pod stays alive for its existing users.
		redistest.Poll(t, 2*time.Second, "DenyNewCall is published", func() bool {
			return serverPodStateOf(t, st, ns, 0).Routing == store.DenyNewCall
		})
		select {
		case err := <-stopped:
			t.Fatalf("Stop returned (%v) before DenyNewCall was seen", err)
		default:
		}
		seen := serverPodStateOf(t, st, ns, 0).Updated
		redistest.Poll(t, 2*time.Second, "a heartbeat during the drain", func() bool {
			ps := serverPodStateOf(t, st, ns, 0)
			return ps.Routing == store.DenyNewCall && ps.Updated > seen
		})
		if s.GetRoutingState() != engine.DenyNewCall {
			t.Fatalf("in-memory routing during the drain is %v", s.GetRoutingState())
		}
		if err := s.SetRoutingState(redistest.Ctx(t), engine.Ready); !errors.Is(err, engine.ErrClosed) {
			t.Fatalf("SetRoutingState(Ready) during the drain = %v, want ErrClosed", err)
		}

		if err := <-stopped; err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if d := time.Since(began); d < drain {
			t.Fatalf("Stop returned after %v, before the %v drain", d, drain)
		}
		if ps := serverPodStateOf(t, st, ns, 0); ps.Routing != store.Shutdown {
			t.Fatalf("after Stop the pod publishes %v, want Shutdown", ps.Routing)
		}
		if s.GetRoutingState() != engine.Shutdown {
			t.Fatalf("in-memory routing after Stop is %v", s.GetRoutingState())
		}
		if err := s.Stop(redistest.Ctx(t)); err != nil {
			t.Fatalf("second Stop: %v", err)
		}
		if err := s.Start(redistest.Ctx(t)); !errors.Is(err, engine.ErrClosed) {
			t.Fatalf("Start after Stop = %v, want ErrClosed", err)
		}
	})
}

func TestServerStopCancelledContext(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		st, ns := store.New(b.Client), redistest.Namespace(t)
		// A drain far longer than the test: Stop must not wait for it.
		s := newTestServer(t, st, ns, 1, func(c *engine.ServerConfig) { c.Drain = time.Hour })
		if err := s.Start(redistest.Ctx(t)); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if err := s.SetLoadState(redistest.Ctx(t), 9); err != nil {
			t.Fatalf("SetLoadState: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Stop(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Stop(cancelled ctx) = %v, want context.Canceled", err)
		}
		if ps := serverPodStateOf(t, st, ns, 1); ps.Routing != store.Shutdown || ps.Load != 9 {
			t.Fatalf("after Stop(cancelled ctx) the pod publishes %+v, want load 9 Shutdown", ps.StateValue)
		}
		if err := s.Stop(redistest.Ctx(t)); err != nil {
			t.Fatalf("second Stop: %v", err)
		}
		for name, err := range map[string]error{
			"Start":           s.Start(redistest.Ctx(t)),
			"SetLoadState":    s.SetLoadState(redistest.Ctx(t), 1),
			"SetRoutingState": s.SetRoutingState(redistest.Ctx(t), engine.Ready),
		} {
			if !errors.Is(err, engine.ErrClosed) {
				t.Errorf("%s after Stop = %v, want ErrClosed", name, err)
			}
		}
		if ps := serverPodStateOf(t, st, ns, 1); ps.Routing != store.Shutdown || ps.Load != 9 {
			t.Fatalf("calls after Stop changed the published state: %+v", ps.StateValue)
		}
	})
}

func TestServerLifecycle(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		st := store.New(b.Client)
		t.Run("idempotent", func(t *testing.T) {
			ns := redistest.Namespace(t)
			s := newTestServer(t, st, ns, 0, nil)
			for i := 0; i < 3; i++ {
				if err := s.Start(redistest.Ctx(t)); err != nil {
					t.Fatalf("Start #%d: %v", i+1, err)
				}
			}
			for i := 0; i < 3; i++ {
				if err := s.Stop(redistest.Ctx(t)); err != nil {
					t.Fatalf("Stop #%d: %v", i+1, err)
				}
			}
			if ps := serverPodStateOf(t, st, ns, 0); ps.Routing != store.Shutdown {
				t.Fatalf("published %v after Stop", ps.Routing)
			}
		})
		t.Run("stop before start", func(t *testing.T) {
			ns := redistest.Namespace(t)
			s := newTestServer(t, st, ns, 0, nil)
			if err := s.Stop(redistest.Ctx(t)); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if err := s.Start(redistest.Ctx(t)); !errors.Is(err, engine.ErrClosed) {
				t.Fatalf("Start after Stop = %v, want ErrClosed", err)
			}
			if _, _, ok := serverPodState(t, st, ns, 0); ok {
				t.Fatal("a server stopped before Start published a state")
			}
		})
		for _, started := range []bool{false, true} {
			t.Run(map[bool]string{false: "concurrent", true: "concurrent after start"}[started], func(t *testing.T) {
				serverConcurrentStartStop(t, st, started)
			})
		}
	})
}

// serverConcurrentStartStop races Starts against Stops (under -race), on a fresh
// server or on one started already.
func serverConcurrentStartStop(t *testing.T, st *store.Redis, started bool) {
	ns := redistest.Namespace(t)
	s := newTestServer(t, st, ns, 0, nil)
	if started {
		if err := s.Start(redistest.Ctx(t)); err != nil {
			t.Fatalf("Start: %v", err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := s.Start(redistest.Ctx(t)); err != nil && !errors.Is(err, engine.ErrClosed) {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			if err := s.Stop(redistest.Ctx(t)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Start/Stop: %v", err)
	}
	if err := s.Start(redistest.Ctx(t)); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Start after the Stops = %v, want ErrClosed", err)
	}
	// Either no Start got in (nothing published) or the pod was
	// drained and withdrawn.
	if ps, _, ok := serverPodState(t, st, ns, 0); ok && ps.Routing != store.Shutdown {
		t.Fatalf("published %v after Stop", ps.Routing)
	}
}

func TestServerWorkloadState(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		st, ns := store.New(b.Client), redistest.Namespace(t)
		// A staleness window of 40 heartbeats, so a starved scheduler (the
		// race detector beside stress-ng on two cores stalled a pod's
		// heartbeats for 500 ms, and another pod took over K4) never makes
		// a running pod look dead. The waits below follow from it.
		timing := engine.Timing{Heartbeat: 50 * time.Millisecond, Staleness: 2 * time.Second}
		wait := 2*timing.Staleness + time.Second
		servers := make([]*engine.Server, 3)
		for pod := range servers {
			servers[pod] = newTestServer(t, st, ns, pod, func(c *engine.ServerConfig) { c.Timing = timing })
			// In pod order, so pod 0 is alive before the others' first heartbeat.
			if err := servers[pod].Start(redistest.Ctx(t)); err != nil {
				t.Fatalf("Start pod %d: %v", pod, err)
			}
		}
		if err := servers[2].SetRoutingState(redistest.Ctx(t), engine.DenyNewCall); err != nil {
			t.Fatalf("SetRoutingState: %v", err)
		}

		// Three alive pods, two of them accepting, written by pod 0.
		var w store.WorkloadState
		redistest.Poll(t, wait, "K4 says 2 accepting of 3 alive", func() bool {
			w = serverWorkload(t, st, ns)
			return w.Alive == 3 && w.Accepting == 2
		})
		if w.Status != store.WorkloadReady || !w.Ready() {
			t.Fatalf("K4 = %+v, want Ready", w)
		}
		redistest.Poll(t, wait, "pod 0 writes K4 again", func() bool {
			return servers[0].Stats().WorkloadWrites >= 2 && serverWorkload(t, st, ns).Updated > w.Updated
		})
		if n := servers[1].Stats().WorkloadWrites + servers[2].Stats().WorkloadWrites; n != 0 {
			t.Fatalf("pods 1 and 2 wrote K4 %d times while pod 0 is alive", n)
		}
		// The key expires unless rewritten: ttl = ceil(Staleness + 2 × Heartbeat) = ceil(2.1s) = 3s.
		ttl, err := b.Client.Do(redistest.Ctx(t), b.Client.B().Pttl().Key(store.WorkloadKey(ns, serverSvc)).Build()).AsInt64()
		if err != nil || ttl <= 0 || ttl > 3000 {
			t.Fatalf("K4 PTTL = %d (%v), want 1..3000 ms", ttl, err)
		}

		// Pod 0 goes away; pod 1 takes the duty over, and once pod 0's state
		// is stale the counts say 2 alive.
		stopCtx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := servers[0].Stop(stopCtx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Stop pod 0: %v", err)
		}
		pod0Writes := servers[0].Stats().WorkloadWrites
		redistest.Poll(t, wait, "K4 says 1 accepting of 2 alive", func() bool {
			w = serverWorkload(t, st, ns)
			return w.Alive == 2 && w.Accepting == 1
		})
		if ps, now, _ := serverPodState(t, st, ns, 0); now-ps.Updated <= timing.Staleness.Milliseconds() {
			t.Fatalf("K4 counted pod 0 dead %d ms after its last state, within the staleness window", now-ps.Updated)
		}
		w1 := servers[1].Stats().WorkloadWrites
		redistest.Poll(t, wait, "pod 1 keeps writing K4", func() bool {
			return servers[1].Stats().WorkloadWrites > w1 && serverWorkload(t, st, ns).Updated > w.Updated
		})
		if got := servers[0].Stats().WorkloadWrites; got != pod0Writes {
			t.Fatalf("stopped pod 0 wrote K4 (%d → %d writes)", pod0Writes, got)
		}
		if n := servers[2].Stats().WorkloadWrites; n != 0 {
			t.Fatalf("pod 2 wrote K4 %d times while pod 1 is alive", n)
		}

		// Every pod withdrawn: nobody writes, and the key expires.
		for _, s := range servers[1:] {
			if err := s.Stop(stopCtx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Stop: %v", err)
			}
		}
		redistest.Poll(t, wait+3*time.Second, "K4 expires", func() bool {
			return serverWorkload(t, st, ns).Status == store.WorkloadUnknown
		})
	})
}

// TestServerHeartbeatFailure makes Redis fail every command (only the
// embedded backend can be told to) and checks that the failures are counted,
// retried sooner than the heartbeat period, and that publishing resumes.
func TestServerHeartbeatFailure(t *testing.T) {
	b := redistest.Open(t, redistest.Embedded)
	st, ns := store.New(b.Client), redistest.Namespace(t)
	const heartbeat = 500 * time.Millisecond
	s := newTestServer(t, st, ns, 0, func(c *engine.ServerConfig) {
		c.Timing = engine.Timing{Heartbeat: heartbeat}
	})
	if err := s.Start(redistest.Ctx(t)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	redistest.Poll(t, 2*time.Second, "a heartbeat succeeds", func() bool { return s.Stats().Heartbeats > 0 })

	b.Mini.SetError("LOADING Redis is loading the dataset in memory")
	var first time.Time
	redistest.Poll(t, 2*time.Second, "a heartbeat fails", func() bool { return s.Stats().HeartbeatFailures >= 1 })
	first = time.Now()
	redistest.Poll(t, 5*time.Second, "three more heartbeats fail", func() bool { return s.Stats().HeartbeatFailures >= 4 })
	// Retried every heartbeat/4: three retries take about 3/4 of a
	// heartbeat, where three plain heartbeats would take three; anything
	// below that tells them apart, however busy the machine.
	if d := time.Since(first); d >= 3*heartbeat {
		t.Fatalf("three retries took %v, want about %v (plain heartbeats: %v)", d, 3*heartbeat/4, 3*heartbeat)
	}
	failing := s.Stats()
	if !errors.Is(failing.LastError, store.ErrUnavailable) {
		t.Fatalf("LastError = %v, want store.ErrUnavailable", failing.LastError)
	}
	// The pod's own calls report the failure and the state stays in memory.
	if err := s.SetLoadState(redistest.Ctx(t), 3); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("SetLoadState while Redis fails = %v, want store.ErrUnavailable", err)
	}

	b.Mini.SetError("")
	redistest.Poll(t, 2*time.Second, "publishing resumes", func() bool {
		got := s.Stats()
		return got.Heartbeats > failing.Heartbeats && got.LastError == nil
	})
	if ps := serverPodStateOf(t, st, ns, 0); ps.Load != 3 || ps.Routing != store.Ready {
		t.Fatalf("after recovery the pod publishes %+v, want load 3 Ready", ps.StateValue)
	}

	// Stop with Redis failing neither blocks nor hides the failure.
	b.Mini.SetError("LOADING Redis is loading the dataset in memory")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	began := time.Now()
	err := s.Stop(ctx)
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Stop while Redis fails = %v, want context.Canceled and store.ErrUnavailable", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("Stop while Redis fails took %v", d)
	}
	b.Mini.SetError("")
}

func TestServerLinks(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		st, ns := store.New(b.Client), redistest.Namespace(t)
		ctx := redistest.Ctx(t)
		// Link writes need no Start.
		s0 := newTestServer(t, st, ns, 0, nil)
		s1 := newTestServer(t, st, ns, 1, nil)
		const uid = "user{42}%"

		linked := func(want int, persistent bool) {
			t.Helper()
			got, err := st.GetLinkedPod(ctx, ns, uid, serverSvc)
			if err != nil || got != want {
				t.Fatalf("GetLinkedPod = %d, %v; want %d", got, err, want)
			}
			p, err := st.GetLinkedPodIfPersist(ctx, ns, uid, serverSvc)
			if wantP := map[bool]int{true: want, false: store.NoPod}[persistent]; err != nil || p != wantP {
				t.Fatalf("GetLinkedPodIfPersist = %d, %v; want %d", p, err, wantP)
			}
		}

		// TrySetLinkedPod: a claim on a free user, then a refusal naming the owner.
		owner, err := s0.TrySetLinkedPod(ctx, ns, uid, serverSvc, 0)
		if err != nil || owner != 0 {
			t.Fatalf("TrySetLinkedPod(free) = %d, %v; want 0", owner, err)
		}
		linked(0, true)
		owner, err = s1.TrySetLinkedPod(ctx, ns, uid, serverSvc, 1)
		var claimed *engine.ClaimedError
		if !errors.As(err, &claimed) || claimed.Owner != 0 || owner != 0 || !errors.Is(err, engine.ErrClaimed) {
			t.Fatalf("TrySetLinkedPod(claimed by 0) = %d, %v; want owner 0 and *ClaimedError{0}", owner, err)
		}
		linked(0, true)
		// The owner claiming again is fine.
		if owner, err = s0.TrySetLinkedPod(ctx, ns, uid, serverSvc, 0); err != nil || owner != 0 {
			t.Fatalf("TrySetLinkedPod(own) = %d, %v", owner, err)
		}
		// A temporary link (a client's reservation) does not stop a claim.
		if _, err := st.SetLinkedPod(ctx, ns, "reserved", serverSvc, 0, 60); err != nil {
			t.Fatal(err)
		}
		if owner, err = s1.TrySetLinkedPod(ctx, ns, "reserved", serverSvc, 1); err != nil || owner != 1 {
			t.Fatalf("TrySetLinkedPod(over a temporary link) = %d, %v; want 1", owner, err)
		}

		// SetLinkedPod forces the link over the claim.
		prev, err := s1.SetLinkedPod(ctx, ns, uid, serverSvc, 1)
		if err != nil || prev != 0 {
			t.Fatalf("SetLinkedPod = %d, %v; want previous 0", prev, err)
		}
		linked(1, true)

		// RemoveLinkedPodWithId only removes the link of the named pod.
		if removed, err := s0.RemoveLinkedPodWithId(ctx, ns, uid, serverSvc, 0, -1); err != nil || removed {
			t.Fatalf("RemoveLinkedPodWithId(wrong pod) = %v, %v; want false", removed, err)
		}
		linked(1, true)
		// With a grace period the link stays readable, as a temporary link.
		if removed, err := s1.RemoveLinkedPodWithId(ctx, ns, uid, serverSvc, 1, 30); err != nil || !removed {
			t.Fatalf("RemoveLinkedPodWithId(grace 30s) = %v, %v; want true", removed, err)
		}
		linked(1, false)
		ttl, err := b.Client.Do(ctx, b.Client.B().Ttl().Key(store.LinkKey(ns, uid, serverSvc)).Build()).AsInt64()
		if err != nil || ttl <= 0 || ttl > 30 {
			t.Fatalf("TTL of the link in its grace period = %d, %v; want 1..30", ttl, err)
		}
		if links, err := st.GetLinkService(ctx, ns, uid); err != nil || len(links) != 0 {
			t.Fatalf("GetLinkService during the grace period = %v, %v; want none", links, err)
		}
		// In the grace period another pod may claim the user.
		if owner, err = s0.TrySetLinkedPod(ctx, ns, uid, serverSvc, 0); err != nil || owner != 0 {
			t.Fatalf("TrySetLinkedPod during the grace period = %d, %v; want 0", owner, err)
		}
		// -1 deletes now.
		if removed, err := s0.RemoveLinkedPodWithId(ctx, ns, uid, serverSvc, 0, -1); err != nil || !removed {
			t.Fatalf("RemoveLinkedPodWithId(-1) = %v, %v; want true", removed, err)
		}
		linked(store.NoPod, false)
		// Zero and other negatives never delete silently.
		for _, bad := range []int{0, -2} {
			if _, err := s0.SetLinkedPod(ctx, ns, uid, serverSvc, 0); err != nil {
				t.Fatal(err)
			}
			_, err := s0.RemoveLinkedPodWithId(ctx, ns, uid, serverSvc, 0, bad)
			var inv *store.InvalidArgumentError
			if !errors.As(err, &inv) || inv.Arg != "persistSeconds" {
				t.Fatalf("RemoveLinkedPodWithId(persistSeconds %d) = %v, want an invalid persistSeconds", bad, err)
			}
			linked(0, true)
		}

		// RemoveLinkedPod deletes whatever is there, and says whether there was a link.
		if existed, err := s1.RemoveLinkedPod(ctx, ns, uid, serverSvc); err != nil || !existed {
			t.Fatalf("RemoveLinkedPod = %v, %v; want true", existed, err)
		}
		linked(store.NoPod, false)
		if existed, err := s1.RemoveLinkedPod(ctx, ns, uid, serverSvc); err != nil || existed {
			t.Fatalf("RemoveLinkedPod(gone) = %v, %v; want false", existed, err)
		}

		// Bad arguments are rejected before anything is written.
		if _, err := s0.SetLinkedPod(ctx, ns, "", serverSvc, 0); !errors.Is(err, store.ErrInvalidArgument) {
			t.Fatalf("SetLinkedPod(empty uid) = %v, want store.ErrInvalidArgument", err)
		}
		if _, err := s0.TrySetLinkedPod(ctx, ns, uid, serverSvc, -1); !errors.Is(err, store.ErrInvalidArgument) {
			t.Fatalf("TrySetLinkedPod(pod -1) = %v, want store.ErrInvalidArgument", err)
		}
	})
}

// publishCounter is an Observer counting a server's state publishes.
type publishCounter struct{ n atomic.Int64 }

func (c *publishCounter) Begin(ctx context.Context, _ *engine.Op) context.Context { return ctx }
func (c *publishCounter) Note(context.Context, engine.Note)                       {}
func (c *publishCounter) End(_ context.Context, op *engine.Op) {
	if op.Kind == engine.OpRoundTrip && op.Name == "PublishServiceState" {
		c.n.Add(1)
	}
}

// TestSetLoadStateCoalesces: an application may set its load on every user
// it gains or loses. The first call publishes at once; calls within
// LoadInterval of it return at once and make one more publish, of the
// latest load, at the end of the interval.
func TestSetLoadStateCoalesces(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		st, ns := store.New(b.Client), redistest.Namespace(t)
		ctx := redistest.Ctx(t)
		count := &publishCounter{}
		const interval = 200 * time.Millisecond
		s := newTestServer(t, st, ns, 1, func(c *engine.ServerConfig) {
			c.Timing = engine.Timing{Heartbeat: time.Hour}
			c.LoadInterval = interval
			c.Observer = count
		})
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.SetLoadState(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if got := serverPodStateOf(t, st, ns, 1).Load; got != 1 {
			t.Fatalf("published load %d right after the first SetLoadState(1)", got)
		}
		first := time.Now()
		for load := int64(2); load <= 100; load++ {
			if err := s.SetLoadState(ctx, load); err != nil {
				t.Fatal(err)
			}
		}
		calls := time.Since(first)
		redistest.Poll(t, 10*interval+5*time.Second, "load 100 published", func() bool {
			return serverPodStateOf(t, st, ns, 1).Load == 100
		})
		// Start, the first SetLoadState, and one for the 99 calls after it
		// (two if the calls outlasted an interval: one per interval then).
		want := int64(3) + int64(calls/interval)
		if got := count.n.Load(); got < 3 || got > want {
			t.Fatalf("%d publishes for Start and 100 loads set in %v, want 3..%d", got, calls, want)
		}
	})
}

// TestGracefulDrain: 4 server pods and 2 clients; pod 2 stops. During its
// drain no new user lands on it and its users still reach it; after the drain
// nothing routes to it; callers see no error but the typed ones.
func TestGracefulDrain(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := redistest.Ctx(t)
		ns := redistest.Namespace(t)
		st := store.New(b.Client)
		// Staleness is far above the heartbeat, so a busy machine that
		// stalls the heartbeats does not age the pods out mid-test: the
		// drain is published (DenyNewCall, then Shutdown), never inferred.
		timing := engine.Timing{Heartbeat: 100 * time.Millisecond, Staleness: 3 * time.Second, Refresh: 50 * time.Millisecond}
		const drain = 1500 * time.Millisecond
		// A state change reaches a client within a heartbeat and a
		// refresh; the polls allow it the whole staleness window.
		within := timing.Staleness

		servers := make([]*engine.Server, 4)
		t.Cleanup(func() { // drain the others together
			var wg sync.WaitGroup
			for _, s := range servers {
				if s != nil {
					wg.Go(func() { _ = s.Stop(context.Background()) })
				}
			}
			wg.Wait()
		})
		for p := range servers {
			s, err := engine.NewServer(engine.ServerConfig{
				Store: st, Namespace: ns, Service: svc, Pod: p, Timing: timing,
				MaxRequest: 100 * time.Millisecond, Drain: drain,
			})
			if err != nil {
				t.Fatal(err)
			}
			servers[p] = s
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
		}

		clients := make([]*engine.Client, 2)
		for i := range clients {
			c, err := engine.NewClient(engine.ClientConfig{Store: store.New(b.Client), Timing: timing, TempLinkTTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			clients[i] = c
		}
		compute := func(c *engine.Client, uid string) (int, error) {
			pod, err := c.ComputeLinkedPod(ctx, ns, uid, svc)
			if err != nil && !errors.Is(err, engine.ErrPodNotRoutable) && !errors.Is(err, engine.ErrNoAvailablePod) {
				t.Fatalf("%s: untyped error %v", uid, err)
			}
			return pod, err
		}

		// Users spread over the pods; pod 2's server claims two of its own.
		onTwo := []string{}
		for i := range 200 {
			uid := "u" + strconv.Itoa(i)
			pod, err := compute(clients[i%2], uid)
			if err != nil {
				t.Fatal(err)
			}
			if pod == 2 {
				onTwo = append(onTwo, uid)
			}
		}
		if len(onTwo) < 4 {
			t.Fatalf("only %d users on pod 2 out of 200", len(onTwo))
		}
		claimed := onTwo[:2]
		for _, uid := range claimed {
			if owner, err := servers[2].TrySetLinkedPod(ctx, ns, uid, svc, 2); err != nil || owner != 2 {
				t.Fatalf("claim %s = (%d, %v)", uid, owner, err)
			}
		}

		stopped := make(chan error, 1)
		go func() { stopped <- servers[2].Stop(context.Background()) }()
		// Once both clients have refreshed, pod 2 takes no new user...
		redistest.Poll(t, within, "both clients see pod 2 deny new calls", func() bool {
			return !clients[0].States().IsPodAvailable(ns, svc, 2) && !clients[1].States().IsPodAvailable(ns, svc, 2)
		})
		seenDrain := time.Now()
		n := 0
		for time.Since(seenDrain) < drain/2 {
			uid := "new" + strconv.Itoa(n)
			pod, err := compute(clients[n%2], uid)
			if err != nil {
				t.Fatalf("%s during the drain: %v", uid, err)
			}
			if pod == 2 {
				t.Fatalf("new user %s placed on draining pod 2", uid)
			}
			// ...and its users still reach it.
			old := onTwo[n%len(onTwo)]
			if pod, err := compute(clients[n%2], old); err != nil || pod != 2 {
				t.Fatalf("%s during the drain: = (%d, %v), want its pod 2", old, pod, err)
			}
			n++
		}
		if err := <-stopped; err != nil {
			t.Fatalf("Stop: %v", err)
		}
		// After the drain, nothing routes to pod 2: temporary links move,
		// persistent ones are a typed error naming the pod.
		redistest.Poll(t, within, "both clients see pod 2 shut down", func() bool {
			return !clients[0].States().IsPodRoutable(ns, svc, 2) && !clients[1].States().IsPodRoutable(ns, svc, 2)
		})
		for i, uid := range onTwo {
			pod, err := compute(clients[i%2], uid)
			isClaimed := uid == claimed[0] || uid == claimed[1]
			var nr *engine.PodNotRoutableError
			switch {
			case isClaimed && (!errors.As(err, &nr) || nr.Pod != 2):
				t.Fatalf("%s (persistent on 2) after the drain: = (%d, %v), want *PodNotRoutableError{2}", uid, pod, err)
			case !isClaimed && (err != nil || pod == 2):
				t.Fatalf("%s after the drain: = (%d, %v), want moved off pod 2", uid, pod, err)
			}
		}
		t.Logf("%d new users placed during the drain, none on pod 2; %d users of pod 2 moved after it", n, len(onTwo)-2)
	})
}
