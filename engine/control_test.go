package engine_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

// controlTiming is the timing of the operator-control tests: staleness far
// above the heartbeat, so that a busy machine stalling the heartbeats never
// ages a pod out mid-test (every state seen is one a pod published).
var controlTiming = engine.Timing{Heartbeat: 200 * time.Millisecond, Staleness: 3 * time.Second, Refresh: 50 * time.Millisecond}

// controlWithin bounds every wait for a heartbeat or a client refresh: a few
// heartbeat periods, each longer than the refresh period.
const controlWithin = 10 * 200 * time.Millisecond

// controlEnv is one test's service on one backend: its store, a raw client
// for the values an operator's tool (or a bad day) plants, and the servers.
type controlEnv struct {
	t   *testing.T
	b   *redistest.Backend
	st  *store.Redis
	ns  string
	ctx context.Context
}

func newControlEnv(t *testing.T, b *redistest.Backend) *controlEnv {
	return &controlEnv{t: t, b: b, st: store.New(b.Client), ns: redistest.Namespace(t), ctx: redistest.Ctx(t)}
}

// server starts pod's server, stopped when the test ends.
func (e *controlEnv) server(pod int) *engine.Server {
	e.t.Helper()
	s, err := engine.NewServer(engine.ServerConfig{Store: e.st, Namespace: e.ns, Service: svc, Pod: pod,
		Timing: controlTiming, MaxRequest: 100 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // no drain
		_ = s.Stop(ctx)
	})
	if err := s.Start(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	return s
}

// state reads pod's published state and the Redis clock of its node.
func (e *controlEnv) state(pod int) (store.PodState, int64) {
	e.t.Helper()
	ss, err := e.st.GetServiceState(e.ctx, e.ns, svc)
	if err != nil {
		e.t.Fatalf("GetServiceState: %v", err)
	}
	for _, p := range ss.Pods {
		if p.Pod == pod {
			return p, ss.Now
		}
	}
	e.t.Fatalf("pod %d has published no state", pod)
	return store.PodState{}, 0
}

// nextPublish waits for pod's first publish that began after this call and
// returns it. K5 and K3 share a node, whose clock stamps both the reading and
// the publishes, so a request made before the call is one the publish read.
func (e *controlEnv) nextPublish(pod int) store.PodState {
	e.t.Helper()
	_, now := e.state(pod)
	var ps store.PodState
	redistest.Poll(e.t, controlWithin, "pod "+strconv.Itoa(pod)+" publishes again", func() bool {
		ps, _ = e.state(pod)
		return ps.Updated > now
	})
	return ps
}

// wantRequested checks the request srv reports having applied; it polls, as
// the server records it when the publish's reply arrives, after the write.
func (e *controlEnv) wantRequested(srv *engine.Server, want engine.RoutingState) {
	e.t.Helper()
	redistest.Poll(e.t, controlWithin, "the server reports request "+want.String(), func() bool {
		r, ok := srv.RequestedRoutingState()
		return r == want && ok == (want != engine.RoutingUnknown)
	})
}

// hset plants a raw K5 field.
func (e *controlEnv) hset(field, value string) {
	e.t.Helper()
	c := e.b.Client
	if err := c.Do(e.ctx, c.B().Hset().Key(store.ControlKey(e.ns, svc)).FieldValue().FieldValue(field, value).Build()).Error(); err != nil {
		e.t.Fatal(err)
	}
}

// TestOperatorDrain is `stickyctl drain` then `undrain` (SPEC §7, issue 20)
// on every backend: the pod's next heartbeat publishes DenyNewCall and a
// client stops placing new users on it while its users stay; withdrawing the
// request restores Ready at the next heartbeat; a Shutdown request takes the
// pod out. The server's own routing state never changes.
func TestOperatorDrain(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		e := newControlEnv(t, b)
		servers := []*engine.Server{e.server(0), e.server(1), e.server(2)}
		const drained = 1
		srv := servers[drained]
		c, err := engine.NewClient(engine.ClientConfig{Store: store.New(b.Client), Timing: controlTiming, TempLinkTTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		var onPod []string
		for i := range 30 {
			uid := "u" + strconv.Itoa(i)
			pod, err := c.ComputeLinkedPod(e.ctx, e.ns, uid, svc)
			if err != nil {
				t.Fatal(err)
			}
			if pod == drained {
				onPod = append(onPod, uid)
			}
		}
		if len(onPod) == 0 {
			t.Fatalf("no user of 30 placed on pod %d", drained)
		}

		// drain
		if err := e.st.RequestRoutingState(e.ctx, e.ns, svc, drained, store.DenyNewCall); err != nil {
			t.Fatal(err)
		}
		if got, err := e.st.RoutingRequests(e.ctx, e.ns, svc); err != nil || len(got) != 1 || got[drained] != store.DenyNewCall {
			t.Fatalf("RoutingRequests = (%v, %v), want {%d: DenyNewCall}", got, err, drained)
		}
		if ps := e.nextPublish(drained); ps.Routing != store.DenyNewCall {
			t.Fatalf("first publish after the request: %+v, want DenyNewCall", ps.StateValue)
		}
		e.wantRequested(srv, engine.DenyNewCall)
		if got := srv.GetRoutingState(); got != engine.Ready {
			t.Fatalf("GetRoutingState = %v under a request, want its own Ready", got)
		}
		redistest.Poll(t, controlWithin, "the client sees the pod deny new calls", func() bool {
			return !c.States().IsPodAvailable(e.ns, svc, drained) && c.States().IsPodRoutable(e.ns, svc, drained)
		})
		for i := range 40 {
			uid := "new" + strconv.Itoa(i)
			if pod, err := c.ComputeLinkedPod(e.ctx, e.ns, uid, svc); err != nil || pod == drained {
				t.Fatalf("new user %s on a drained pod: = (%d, %v), want another pod", uid, pod, err)
			}
		}
		for _, uid := range onPod {
			if pod, err := c.ComputeLinkedPod(e.ctx, e.ns, uid, svc); err != nil || pod != drained {
				t.Fatalf("%s of the drained pod = (%d, %v), want it kept on %d", uid, pod, err, drained)
			}
		}
		// Heartbeats keep applying it.
		if ps := e.nextPublish(drained); ps.Routing != store.DenyNewCall {
			t.Fatalf("a later heartbeat published %v, want DenyNewCall still", ps.Routing)
		}

		// undrain
		if existed, err := e.st.ClearRoutingRequest(e.ctx, e.ns, svc, drained); err != nil || !existed {
			t.Fatalf("ClearRoutingRequest = (%v, %v), want (true, nil)", existed, err)
		}
		if ps := e.nextPublish(drained); ps.Routing != store.Ready {
			t.Fatalf("first publish after the request was withdrawn: %v, want Ready", ps.Routing)
		}
		e.wantRequested(srv, engine.RoutingUnknown)
		redistest.Poll(t, controlWithin, "the client sees the pod accept again", func() bool {
			return c.States().IsPodAvailable(e.ns, svc, drained)
		})

		// Shutdown: not even the pod's own users are sent to it.
		if err := e.st.RequestRoutingState(e.ctx, e.ns, svc, drained, store.Shutdown); err != nil {
			t.Fatal(err)
		}
		if ps := e.nextPublish(drained); ps.Routing != store.Shutdown {
			t.Fatalf("first publish after a Shutdown request: %v, want Shutdown", ps.Routing)
		}
		e.wantRequested(srv, engine.Shutdown)
		redistest.Poll(t, controlWithin, "the client sees the pod not routable", func() bool {
			return !c.States().IsPodRoutable(e.ns, svc, drained)
		})
		if got := srv.GetRoutingState(); got != engine.Ready {
			t.Fatalf("GetRoutingState = %v under a Shutdown request, want its own Ready", got)
		}
		if st := srv.Stats(); st.HeartbeatFailures != 0 || st.IgnoredRequest != nil {
			t.Fatalf("stats %+v, want no failures and nothing ignored", st)
		}
		// The other pods were never touched.
		for _, p := range []int{0, 2} {
			if ps, _ := e.state(p); ps.Routing != store.Ready {
				t.Fatalf("pod %d published %v, want Ready", p, ps.Routing)
			}
			if r, ok := servers[p].RequestedRoutingState(); ok {
				t.Fatalf("pod %d applied request %v, want none", p, r)
			}
		}
	})
}

// TestOperatorRequestMoreRestrictive: a pod publishes the more restrictive
// of its own routing state and the operator's request (Shutdown >
// DenyNewCall > Ready), in SetRoutingState's own publish as in heartbeats,
// and Stop still ends in Shutdown.
func TestOperatorRequestMoreRestrictive(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		e := newControlEnv(t, b)
		srv := e.server(4)
		for _, c := range []struct {
			own, request, want engine.RoutingState
		}{
			{engine.Ready, engine.DenyNewCall, engine.DenyNewCall},
			{engine.DenyNewCall, engine.DenyNewCall, engine.DenyNewCall},
			{engine.DenyNewCall, engine.Shutdown, engine.Shutdown},
			{engine.Shutdown, engine.DenyNewCall, engine.Shutdown},
			{engine.Ready, engine.Shutdown, engine.Shutdown},
			{engine.Shutdown, engine.Shutdown, engine.Shutdown},
		} {
			if err := e.st.RequestRoutingState(e.ctx, e.ns, svc, 4, c.request); err != nil {
				t.Fatal(err)
			}
			// SetRoutingState publishes at once, reading the request.
			if err := srv.SetRoutingState(e.ctx, c.own); err != nil {
				t.Fatal(err)
			}
			if ps, _ := e.state(4); ps.Routing != c.want {
				t.Fatalf("own %v, request %v: SetRoutingState published %v, want %v", c.own, c.request, ps.Routing, c.want)
			}
			if r, ok := srv.RequestedRoutingState(); r != c.request || !ok {
				t.Fatalf("own %v, request %v: RequestedRoutingState = (%v, %v)", c.own, c.request, r, ok)
			}
			if got := srv.GetRoutingState(); got != c.own {
				t.Fatalf("GetRoutingState = %v, want its own %v", got, c.own)
			}
			if ps := e.nextPublish(4); ps.Routing != c.want {
				t.Fatalf("own %v, request %v: a heartbeat published %v, want %v", c.own, c.request, ps.Routing, c.want)
			}
		}

		// Stop under a DenyNewCall request still withdraws the pod.
		if err := srv.SetRoutingState(e.ctx, engine.Ready); err != nil {
			t.Fatal(err)
		}
		if err := e.st.RequestRoutingState(e.ctx, e.ns, svc, 4, store.DenyNewCall); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(e.ctx)
		cancel() // no drain
		if err := srv.Stop(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Stop = %v, want the cancelled context's error", err)
		}
		if ps, _ := e.state(4); ps.Routing != store.Shutdown {
			t.Fatalf("after Stop published %v, want Shutdown", ps.Routing)
		}
	})
}

// TestOperatorRequestCorrupt: an operator's bad value in K5 never fails a
// heartbeat: the pod publishes its own state, reports the value in
// ServerStats.IgnoredRequest, and applies a valid request written over it.
func TestOperatorRequestCorrupt(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		e := newControlEnv(t, b)
		srv := e.server(0)
		ctl := store.ControlKey(e.ns, svc)
		for _, bad := range []string{"garbage", "1", ""} {
			e.hset("0", bad)
			if ps := e.nextPublish(0); ps.Routing != store.Ready {
				t.Fatalf("K5[0] = %q: published %v, want the pod's own Ready", bad, ps.Routing)
			}
			// SetRoutingState's publish returns once the stats are set.
			if err := srv.SetRoutingState(e.ctx, engine.DenyNewCall); err != nil {
				t.Fatalf("K5[0] = %q: SetRoutingState = %v, want nil", bad, err)
			}
			if ps, _ := e.state(0); ps.Routing != store.DenyNewCall {
				t.Fatalf("K5[0] = %q: SetRoutingState published %v, want its own DenyNewCall", bad, ps.Routing)
			}
			st := srv.Stats()
			var ce *store.CorruptError
			if !errors.As(st.IgnoredRequest, &ce) || *ce != (store.CorruptError{Key: ctl, Field: "0", Value: bad}) {
				t.Fatalf("K5[0] = %q: IgnoredRequest = %v, want a *CorruptError naming it", bad, st.IgnoredRequest)
			}
			if st.HeartbeatFailures != 0 || st.LastError != nil {
				t.Fatalf("K5[0] = %q: stats %+v, want no failure", bad, st)
			}
			if r, ok := srv.RequestedRoutingState(); ok {
				t.Fatalf("K5[0] = %q: RequestedRoutingState = %v, want none", bad, r)
			}
			if err := srv.SetRoutingState(e.ctx, engine.Ready); err != nil {
				t.Fatal(err)
			}
		}

		// A valid request over it applies, and the report clears.
		if err := e.st.RequestRoutingState(e.ctx, e.ns, svc, 0, store.Shutdown); err != nil {
			t.Fatal(err)
		}
		if ps := e.nextPublish(0); ps.Routing != store.Shutdown {
			t.Fatalf("request over the bad value: published %v, want Shutdown", ps.Routing)
		}
		e.wantRequested(srv, engine.Shutdown)
		if st := srv.Stats(); st.IgnoredRequest != nil {
			t.Fatalf("IgnoredRequest = %v after a valid request, want nil", st.IgnoredRequest)
		}

		// K5 of the wrong type: the same, for the whole key.
		c := b.Client
		if err := c.Do(e.ctx, c.B().Set().Key(ctl).Value("not a hash").Build()).Error(); err != nil {
			t.Fatal(err)
		}
		if ps := e.nextPublish(0); ps.Routing != store.Ready {
			t.Fatalf("K5 a string: published %v, want the pod's own Ready", ps.Routing)
		}
		redistest.Poll(t, controlWithin, "the server reports the string K5", func() bool {
			var ce *store.CorruptError
			return errors.As(srv.Stats().IgnoredRequest, &ce) && *ce == store.CorruptError{Key: ctl, Value: "(wrong type)"}
		})
		if st := srv.Stats(); st.HeartbeatFailures != 0 || st.LastError != nil {
			t.Fatalf("K5 a string: stats %+v, want no failure", st)
		}
	})
}
