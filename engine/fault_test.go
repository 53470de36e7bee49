package engine_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/faultproxy"
	"github.com/stickyroute/stickyroute/internal/redisproc"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

// fault is one fault a test injects and lifts while traffic flows.
type fault struct {
	name string
	// outage: Redis is unreachable while the fault lasts, so new users may
	// fail (fail fast) but cached users must not.
	outage bool
	// inject starts the fault; it may also wait for the traffic it needs.
	inject func(t *testing.T, f *faultWorld, tr *traffic)
	// lift ends it.
	lift func(t *testing.T, f *faultWorld)
	// calls is how many calls run under the fault before it is lifted.
	calls int
	// slow: Redis answers, late; no call may fail for Redis being
	// unavailable, and the client must never enter degraded mode.
	slow bool
	// timing and deadline override the rig's.
	timing   engine.Timing
	deadline time.Duration
}

// faultWorld is what a fault acts on: a dedicated Redis, and the proxy
// every process reaches it through.
type faultWorld struct {
	srv   *redisproc.Server
	proxy *faultproxy.Proxy
}

// runFault runs one fault with the given placement and returns its row.
func runFault(t *testing.T, f fault, placement engine.DegradedPlacement) outcome {
	t.Helper()
	w := &faultWorld{srv: redisproc.Start(t)}
	w.proxy = proxied(t, w.srv.Addr)
	r := newRig(t, rigConfig{serverAddr: w.proxy.Addr(), clientAddr: w.proxy.Addr(), directAddr: w.srv.Addr,
		placement: placement, timing: f.timing, deadline: f.deadline})
	tr, start := r.warmTraffic()
	if cs := tr.calls(start, time.Now()); errCount(cs) > 0 {
		t.Fatalf("%d errors before the fault, first %v", errCount(cs), firstErr(cs))
	}

	before := r.client.DegradedStats()
	var outage func() time.Duration
	if f.outage {
		outage = r.watchOutage(before.Outages)
	}
	faultAt := time.Now()
	f.inject(t, w, tr)
	detected := time.Duration(-1)
	if outage != nil {
		detected = outage()
	}
	tr.hold(faultAt, 3*r.timing.Staleness, f.calls, "traffic under the fault")
	liftAt := time.Now()
	f.lift(t, w)
	tr.waitHealthy(liftAt)
	r.waitWrittenBack(placement)
	o := tr.conclude(f.name+" ("+placement.String()+")", faultAt, liftAt, time.Time{}, detected)
	st := r.client.DegradedStats()
	t.Logf("degraded stats: %+v", st)
	if f.slow {
		if n := o.errKinds["unavailable"] + o.errKinds["unavailable(deadline)"]; n != 0 {
			t.Errorf("%d calls failed with the store unavailable while Redis was only slow, want 0", n)
		}
		if st.Outages != before.Outages || st.FailedFast != before.FailedFast {
			t.Errorf("a slow Redis was taken for an unreachable one: %d outages, %d fail-fast answers", st.Outages-before.Outages, st.FailedFast-before.FailedFast)
		}
	}
	if f.outage && o.warmErrsDuring != 0 {
		t.Errorf("%d calls for cached users failed during the outage, want 0", o.warmErrsDuring)
	}
	if o.linksLost != 0 {
		t.Errorf("%d links lost", o.linksLost)
	}
	if placement == engine.HashPlacement && f.outage && o.errsDuring != 0 {
		// Calls already waiting on Redis when it went away may time out;
		// none may fail once the outage is known.
		late := 0
		for _, c := range tr.calls(faultAt, liftAt) {
			if c.err != nil && c.start.After(faultAt.Add(f.detect(r))) {
				late++
			}
		}
		if late != 0 {
			t.Errorf("%d calls failed after the outage was known, with hash placement", late)
		}
	}
	return o
}

// watchOutage starts watching for the client to declare an outage (it has
// counted before outages so far), from now, which is when the fault begins.
// The returned function waits for it, fails the test unless it came within
// the detection window and a refresh period (the refresh in flight when the
// fault began), and a period more for this machine, and returns how long
// after the fault it came. It watches from a goroutine of its own, so that
// injecting the fault may take its time.
func (r *rig) watchOutage(before uint64) (wait func() time.Duration) {
	r.t.Helper()
	faultAt := time.Now()
	got := make(chan time.Duration, 1)
	stop := make(chan struct{})
	go func() {
		limit := time.After(2*r.detect + 20*time.Second)
		tk := time.NewTicker(time.Millisecond)
		defer tk.Stop()
		for r.client.DegradedStats().Outages <= before {
			select {
			case <-tk.C:
			case <-limit:
				got <- -1
				return
			case <-stop:
				return
			}
		}
		got <- time.Since(faultAt)
	}()
	r.t.Cleanup(func() { close(stop) })
	return func() time.Duration {
		r.t.Helper()
		d := <-got
		if d < 0 {
			r.t.Fatalf("no outage declared within %v of the fault", 2*r.detect+20*time.Second)
		}
		if bound := max(r.detect, 2*r.timing.Refresh) + 2*r.timing.Refresh; d > bound {
			r.t.Errorf("outage detected after %v, want within %v (detection window %v, refresh %v)", d, bound, r.detect, r.timing.Refresh)
		}
		return d
	}
}

// detect is how long the client may take to notice an outage: a refresh
// period to start a refresh, the detection window it waits (a refused
// connection takes two refreshes instead), a period for the machine's
// scheduling, and the deadline of calls already in flight.
func (f fault) detect(r *rig) time.Duration {
	return max(r.detect, 2*r.timing.Refresh) + 2*r.timing.Refresh + r.deadline
}

func errCount(cs []call) int {
	n := 0
	for _, c := range cs {
		if c.err != nil {
			n++
		}
	}
	return n
}

func firstErr(cs []call) error {
	for _, c := range cs {
		if c.err != nil {
			return c.err
		}
	}
	return nil
}

// proxyFaults are the network faults, injected by the proxy every process
// reaches Redis through.
var proxyFaults = []fault{
	{
		name: "black-hole", outage: true, calls: 400,
		inject: func(t *testing.T, w *faultWorld, _ *traffic) { w.proxy.Set(faultproxy.BlackHole) },
		lift:   func(t *testing.T, w *faultWorld) { w.proxy.Set(faultproxy.Pass) },
	},
	{
		name: "connections refused", outage: true, calls: 400,
		inject: func(t *testing.T, w *faultWorld, _ *traffic) { w.proxy.Set(faultproxy.Refuse) },
		lift:   func(t *testing.T, w *faultWorld) { w.proxy.Set(faultproxy.Pass) },
	},
	{
		name: "half-open connections", outage: true, calls: 400,
		inject: func(t *testing.T, w *faultWorld, _ *traffic) { w.proxy.Set(faultproxy.HalfOpen) },
		lift:   func(t *testing.T, w *faultWorld) { w.proxy.Set(faultproxy.Pass) },
	},
	{
		// 200 ms more per round trip (100 ms each way). Refreshes and calls
		// get room for it: a timeout shorter than a round trip is a
		// misconfiguration, not a fault.
		name: "200ms added latency", calls: 60,
		timing:   engine.Timing{Heartbeat: 600 * time.Millisecond, Staleness: 1800 * time.Millisecond, Refresh: 600 * time.Millisecond},
		deadline: 1500 * time.Millisecond,
		inject:   func(t *testing.T, w *faultWorld, _ *traffic) { w.proxy.SetLatency(100 * time.Millisecond) },
		lift:     func(t *testing.T, w *faultWorld) { w.proxy.SetLatency(0) },
	},
	{
		// 1.5 s more per round trip (750 ms each way), above the default 1 s
		// refresh period, with the engine's default timing and callers
		// that give it 5 s: slow is not down.
		name: "1.5s added latency, default timing", calls: 20, slow: true,
		timing:   engine.Timing{Heartbeat: time.Second, Staleness: 3 * time.Second, Refresh: time.Second},
		deadline: 5 * time.Second,
		inject:   func(t *testing.T, w *faultWorld, _ *traffic) { w.proxy.SetLatency(750 * time.Millisecond) },
		lift:     func(t *testing.T, w *faultWorld) { w.proxy.SetLatency(0) },
	},
	{
		name: "bandwidth 8 KB/s", calls: 60,
		timing:   engine.Timing{Heartbeat: 600 * time.Millisecond, Staleness: 1800 * time.Millisecond, Refresh: 600 * time.Millisecond},
		deadline: 1500 * time.Millisecond,
		inject:   func(t *testing.T, w *faultWorld, _ *traffic) { w.proxy.SetBandwidth(8 << 10) },
		lift:     func(t *testing.T, w *faultWorld) { w.proxy.SetBandwidth(0) },
	},
	{
		// Five times, every connection is cut in the middle of whatever it
		// is sending: pipelined commands are lost half-written.
		name: "connections reset mid-pipeline", calls: 200,
		inject: func(t *testing.T, w *faultWorld, tr *traffic) {
			for range 5 {
				before := w.proxy.Stats().Resets
				budget := int64(50 + rand.IntN(400))
				w.proxy.ResetAfter(budget)
				// Idle connections (a pod's, between heartbeats) may stay
				// armed a while: one cut per round is enough. A connection
				// opened after the arming (a reconnection from the round
				// before, slow on a busy machine) is armed at the next
				// heartbeat period.
				armed := time.Now()
				redistest.Poll(t, 20*time.Second, "an armed connection reset", func() bool {
					if time.Since(armed) > tr.r.timing.Heartbeat {
						w.proxy.ResetAfter(budget)
						armed = time.Now()
					}
					return w.proxy.Stats().Resets > before
				})
			}
		},
		lift: func(t *testing.T, w *faultWorld) {},
	},
}

// TestFaultsProxied runs each network fault with both degraded placements.
func TestFaultsProxied(t *testing.T) {
	for _, f := range proxyFaults {
		for _, pl := range []engine.DegradedPlacement{engine.FailFast, engine.HashPlacement} {
			t.Run(f.name+"/"+pl.String(), func(t *testing.T) { runFault(t, f, pl) })
		}
	}
}

// TestFaultRedisDown: the Redis process stops mid-traffic (SIGTERM; it
// persists with an append-only file) and starts again. Cached users are
// served throughout, no link is lost.
func TestFaultRedisDown(t *testing.T) {
	for _, pl := range []engine.DegradedPlacement{engine.FailFast, engine.HashPlacement} {
		t.Run(pl.String(), func(t *testing.T) {
			srv := redisproc.Start(t, "--appendonly", "yes", "--appendfsync", "always")
			r := directRig(t, srv.Addr, pl)
			tr, _ := r.warmTraffic()
			outage := r.watchOutage(r.client.DegradedStats().Outages)
			downAt := time.Now()
			srv.Stop(t)
			detected := outage()
			tr.hold(downAt, 3*r.timing.Staleness, 400, "traffic while Redis is down")
			upAt := time.Now()
			srv.Restart(t)
			tr.waitHealthy(upAt)
			r.waitWrittenBack(pl)
			o := tr.conclude("redis down mid-traffic ("+pl.String()+")", downAt, upAt, time.Time{}, detected)
			t.Logf("degraded stats: %+v", r.client.DegradedStats())
			o.wantCachedServed(t, "")
		})
	}
}

// TestFaultRestartEmpty: Redis is killed and restarts with no data. The links
// are gone (Redis's doing, told apart from ours: only answers given before
// the restart may miss their link); the pods publish again within a
// heartbeat; users are placed again.
func TestFaultRestartEmpty(t *testing.T) {
	srv := redisproc.Start(t)
	r := directRig(t, srv.Addr, engine.FailFast)
	tr, _ := r.warmTraffic()
	downAt := time.Now()
	srv.Kill(t)
	tr.hold(downAt, 3*r.timing.Staleness, 100, "traffic while Redis is down")
	srv.Restart(t)
	upAt := time.Now()
	// The restarted server loaded nothing: the links are gone. (Its key
	// count proves nothing: the traffic writes links again at once.)
	info, err := redisproc.Do(t, srv.Addr, "INFO", "persistence").ToString()
	if err != nil || !strings.Contains(info, "rdb_last_load_keys_loaded:0") || !strings.Contains(info, "aof_enabled:0") {
		t.Fatalf("INFO persistence right after the restart (%v):\n%s\nnot an empty restart", err, info)
	}
	ctx := redistest.Ctx(t)
	redistest.Poll(t, 5*time.Second, "every pod published again", func() bool {
		st, err := r.direct.GetServiceState(ctx, r.ns, svc)
		return err == nil && len(st.Pods) == faultPods
	})
	republished := time.Since(upAt)
	if limit := r.timing.Heartbeat + 300*time.Millisecond; republished > limit {
		t.Errorf("pods published again %v after the restart, want within a heartbeat (%v, with slack %v)", republished, r.timing.Heartbeat, limit)
	}
	tr.waitHealthy(upAt)
	// Every cached user must be served again from a link: re-placed.
	for _, uid := range tr.warm {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		pod, err := r.client.ComputeLinkedPod(ctx, r.ns, uid, svc)
		cancel()
		if err != nil {
			t.Fatalf("%s after the restart: %v", uid, err)
		}
		tr.record(call{uid: uid, warm: true, start: time.Now(), pod: pod})
	}
	redistest.Poll(t, 10*time.Second, "the cache re-validated", func() bool {
		return r.client.DegradedStats().Dropped > 0
	})
	o := tr.conclude("restart with empty data", downAt, upAt, upAt, -1)
	t.Logf("pods published again %v after the restart; degraded stats: %+v", republished.Round(time.Millisecond), r.client.DegradedStats())
	o.wantCachedServed(t, " (beyond Redis's own)")
}

// TestFaultScriptFlush: SCRIPT FLUSH twenty times mid-traffic costs nothing:
// the store sends a script again when Redis forgot it.
func TestFaultScriptFlush(t *testing.T) {
	srv := redisproc.Start(t)
	r := directRig(t, srv.Addr, engine.FailFast)
	tr, _ := r.warmTraffic()
	faultAt := time.Now()
	for i := range 20 {
		if err := redisproc.Do(t, srv.Addr, "SCRIPT", "FLUSH").Error(); err != nil {
			t.Fatal(err)
		}
		tr.waitCalls(faultAt, 20*(i+1), "traffic between flushes")
	}
	liftAt := time.Now()
	tr.waitHealthy(liftAt)
	o := tr.conclude("SCRIPT FLUSH x20", faultAt, liftAt, time.Time{}, -1)
	if o.errsDuring+o.errsAfter != 0 || o.linksLost != 0 {
		t.Errorf("%d errors, %d links lost; want none", o.errsDuring+o.errsAfter, o.linksLost)
	}
}

// TestFaultDownAtConstruction: Redis is not running when the process starts.
// Dial says so at once; a store over a client that tolerates it, a Client
// and a Server are built anyway; every call fails within its deadline with
// the store-unavailable error; once Redis starts, everything works without
// building anything again.
func TestFaultDownAtConstruction(t *testing.T) {
	srv := redisproc.New(t)
	began := time.Now()
	if _, err := store.Dial(store.DialConfig{Addrs: []string{srv.Addr}}); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Dial with Redis down: %v, want store.ErrUnavailable", err)
	}
	dialTook := time.Since(began)
	// ForceSingleClient: rueidis hands out the client even though its
	// first dial failed, and dials again on the next command.
	build := func(tracked bool) *store.Redis {
		opt := rueidis.ClientOption{InitAddress: []string{srv.Addr}, ForceSingleClient: true, DisableCache: !tracked}
		var tr *store.Tracker
		if tracked {
			tr = store.NewTracker()
			tr.Configure(&opt)
		}
		c, err := rueidis.NewClient(opt)
		if c == nil {
			t.Fatalf("rueidis.NewClient: %v", err)
		}
		t.Cleanup(c.Close)
		return store.New(c, store.WithTracker(tr))
	}
	srvStore, cliStore := build(false), build(true)
	c, err := engine.NewClient(engine.ClientConfig{Store: cliStore, Timing: faultTiming})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nsName := redistest.Namespace(t)
	s, err := engine.NewServer(engine.ServerConfig{Store: srvStore, Namespace: nsName, Service: svc, Pod: 0,
		Timing: faultTiming, MaxRequest: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = s.Stop(ctx)
	}()

	errorsSeen, notSeenYet := 0, 0
	restarted := false
	var maxTook time.Duration
	try := func(what string, f func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(context.Background(), callDeadline)
		defer cancel()
		start := time.Now()
		err := f(ctx)
		took := time.Since(start)
		maxTook = max(maxTook, took)
		if took > callDeadline+faultTiming.Staleness { // room for a busy machine, not for a hang
			t.Errorf("%s took %v, past its %v deadline", what, took, callDeadline)
		}
		if err != nil && restarted && errors.Is(err, engine.ErrNoAvailablePod) {
			// Redis is back, the pod has started, and the client has not
			// refreshed since: it knows no pod yet.
			notSeenYet++
			return err
		}
		if err != nil {
			errorsSeen++
			if !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s with Redis down: %v, want the store-unavailable error", what, err)
			}
		}
		return err
	}
	for range 3 {
		if try("Start", s.Start) == nil {
			t.Fatal("Start succeeded with Redis down")
		}
		if try("ComputeLinkedPod", func(ctx context.Context) error {
			_, err := c.ComputeLinkedPod(ctx, nsName, "u1", svc)
			return err
		}) == nil {
			t.Fatal("ComputeLinkedPod succeeded with Redis down")
		}
	}

	upAt := time.Now()
	srv.Restart(t)
	restarted = true
	var pod int
	redistest.Poll(t, 10*time.Second, "the server starts and the client places a user", func() bool {
		if try("Start", s.Start) != nil {
			return false
		}
		return try("ComputeLinkedPod", func(ctx context.Context) error {
			var err error
			pod, err = c.ComputeLinkedPod(ctx, nsName, "u1", svc)
			return err
		}) == nil
	})
	recovered := time.Since(upAt)
	if pod != 0 {
		t.Fatalf("placed on %d, want 0 (the only pod)", pod)
	}
	ctx := redistest.Ctx(t)
	direct := dialStore(t, srv.Addr, true, nil)
	if got, err := direct.GetLinkedPod(ctx, nsName, "u1", svc); err != nil || got != 0 {
		t.Fatalf("link = (%d, %v), want 0", got, err)
	}
	redistest.Poll(t, 5*time.Second, "a heartbeat after the start", func() bool { return s.Stats().Heartbeats > 0 })
	t.Logf("FAULT-TABLE | redis down at construction | Dial failed in %v; errors seen %d (all store-unavailable), %d no pod known yet after the restart | recovery %v after Redis started | max call %v | links checked 1, lost 0 |",
		dialTook.Round(time.Millisecond), errorsSeen, notSeenYet, recovered.Round(time.Millisecond), maxTook.Round(time.Millisecond))
}

// TestFaultTrackingLost: the client's connection goes half-open (Redis
// forgets the client and its tracking; the client hears nothing). Links
// another process moves meanwhile stay cached here (the cache falls back to
// its TTL: nobody can tell the client). Once the connection is replaced, the
// client re-reads what it cached before, drops the moved links, and tracking
// works again: a later move is seen at once.
func TestFaultTrackingLost(t *testing.T) {
	srv := redisproc.Start(t)
	p := proxied(t, srv.Addr)
	r := newRig(t, rigConfig{serverAddr: srv.Addr, clientAddr: p.Addr(), directAddr: srv.Addr, cacheTTL: 20 * time.Second})
	ctx := redistest.Ctx(t)
	r.waitAccepting(ctx)
	const users = 40
	uid := func(i int) string { return "u" + string(rune('a'+i/26)) + string(rune('a'+i%26)) }
	for i := range users {
		if _, err := r.direct.SetLinkedPod(ctx, r.ns, uid(i), svc, 1, store.Persistent); err != nil {
			t.Fatal(err)
		}
		if pod, err := r.client.ComputeLinkedPod(ctx, r.ns, uid(i), svc); err != nil || pod != 1 {
			t.Fatalf("%s = (%d, %v), want 1", uid(i), pod, err)
		}
	}
	lostBefore := r.client.DegradedStats().TrackingLost
	p.Set(faultproxy.HalfOpen)
	// Another process moves half of the users to pod 2.
	movedAt := time.Now()
	for i := range users / 2 {
		if _, err := r.direct.SetLinkedPod(ctx, r.ns, uid(i), svc, 2, store.Persistent); err != nil {
			t.Fatal(err)
		}
	}
	// No invalidation can arrive: the cache still answers 1 for them (its
	// TTL is the only bound now), and cached users are served.
	stale := 0
	for i := range users {
		if r.client.GetLinkedInCache(r.ns, uid(i), svc) == 1 && i < users/2 {
			stale++
		}
		cctx, cancel := context.WithTimeout(ctx, callDeadline)
		_, err := r.client.ComputeLinkedPod(cctx, r.ns, uid(i), svc)
		cancel()
		if err != nil {
			t.Fatalf("cached %s while tracking is lost: %v", uid(i), err)
		}
	}
	if stale != users/2 {
		t.Fatalf("%d moved users still cached as 1, want %d (nothing told the client)", stale, users/2)
	}
	liftAt := time.Now()
	p.Set(faultproxy.Pass) // resets the half-open connection: the client dials again
	redistest.Poll(t, 10*time.Second, "the moved users re-read", func() bool {
		for i := range users / 2 {
			if r.client.GetLinkedInCache(r.ns, uid(i), svc) == 1 {
				return false
			}
		}
		return true
	})
	coherentAfter := time.Since(liftAt)
	st := r.client.DegradedStats()
	if st.TrackingLost <= lostBefore || st.Dropped != users/2 {
		t.Fatalf("degraded stats %+v: want the loss seen and %d links dropped", st, users/2)
	}
	for i := range users {
		want := 1
		if i < users/2 {
			want = 2
		}
		if pod, err := r.client.ComputeLinkedPod(ctx, r.ns, uid(i), svc); err != nil || pod != want {
			t.Fatalf("%s after recovery = (%d, %v), want %d", uid(i), pod, err, want)
		}
	}
	// Tracking is back: a move is seen long before the 20 s cache TTL.
	redistest.Poll(t, 5*time.Second, "u-last cached again", func() bool {
		_, _ = r.client.ComputeLinkedPod(ctx, r.ns, uid(users-1), svc)
		return r.client.GetLinkedInCache(r.ns, uid(users-1), svc) == 1
	})
	movedAgain := time.Now()
	if _, err := r.direct.SetLinkedPod(ctx, r.ns, uid(users-1), svc, 0, store.Persistent); err != nil {
		t.Fatal(err)
	}
	redistest.Poll(t, 2*time.Second, "the later move invalidates the cache", func() bool {
		return r.client.GetLinkedInCache(r.ns, uid(users-1), svc) != 1
	})
	t.Logf("FAULT-TABLE | client tracking connection lost (half-open) | errors seen 0 (cached users served throughout; %d moved links served stale for %v, bounded by the cache TTL) | cache coherent %v after the connection was replaced; a later move seen in %v | links checked %d, lost 0 |",
		users/2, liftAt.Sub(movedAt).Round(time.Millisecond), coherentAfter.Round(time.Millisecond),
		time.Since(movedAgain).Round(time.Millisecond), users)
}

// TestHashPlacementAgrees: two clients cut off from Redis place the same new
// users by hash: every user gets the same pod on both. When Redis is back
// both write the links back; the second writer finds the first one's link,
// which names the same pod, so there is no conflict and no link is lost.
func TestHashPlacementAgrees(t *testing.T) {
	srv := redisproc.Start(t)
	p := proxied(t, srv.Addr)
	r := newRig(t, rigConfig{serverAddr: p.Addr(), clientAddr: p.Addr(), directAddr: srv.Addr, placement: engine.HashPlacement})
	other, err := engine.NewClient(engine.ClientConfig{Store: dialStore(t, p.Addr(), false, nil), Timing: r.timing,
		TempLinkTTL: time.Minute, Degraded: engine.DegradedConfig{Placement: engine.HashPlacement}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := redistest.Ctx(t)
	r.waitAccepting(ctx)
	if _, err := other.States().Snapshot(ctx, r.ns, svc); err != nil {
		t.Fatal(err)
	}
	p.Set(faultproxy.BlackHole)
	for _, c := range []*engine.Client{r.client, other} {
		redistest.Poll(t, 5*time.Second, "the outage noticed", func() bool { return c.DegradedStats().Outages > 0 })
	}
	const users = 200
	perPod := map[int]int{}
	answers := make([]int, users)
	for i := range users {
		uid := "h" + strconv.Itoa(i)
		a, errA := r.client.ComputeLinkedPod(ctx, r.ns, uid, svc)
		b, errB := other.ComputeLinkedPod(ctx, r.ns, uid, svc)
		if errA != nil || errB != nil || a != b {
			t.Fatalf("%s: (%d, %v) and (%d, %v), want the same pod from both clients", uid, a, errA, b, errB)
		}
		answers[i] = a
		perPod[a]++
	}
	if len(perPod) != faultPods {
		t.Fatalf("users spread over %v, want all %d pods", perPod, faultPods)
	}
	p.Set(faultproxy.Pass)
	for _, c := range []*engine.Client{r.client, other} {
		redistest.Poll(t, 10*time.Second, "the placements written back", func() bool { return c.DegradedStats().Pending == 0 })
	}
	for i := range users {
		if pod, err := r.direct.GetLinkedPod(ctx, r.ns, "h"+strconv.Itoa(i), svc); err != nil || pod != answers[i] {
			t.Fatalf("h%d linked to (%d, %v), answered %d", i, pod, err, answers[i])
		}
	}
	a, b := r.client.DegradedStats(), other.DegradedStats()
	if a.Conflicts+b.Conflicts != 0 || a.Reconciled != users || b.Reconciled != users {
		t.Fatalf("stats %+v and %+v: want %d reconciled each, no conflict", a, b, users)
	}
	t.Logf("HASH-AGREEMENT | %d users placed by hash on two cut-off clients: identical answers, spread %v; after recovery %d+%d reconciled, 0 conflicts, 0 links lost", users, perPod, a.Reconciled, b.Reconciled)
}
