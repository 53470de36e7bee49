package engine_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/faultproxy"
	"github.com/stickyroute/stickyroute/internal/redisproc"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/internal/slot"
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
			srv, r, tr := warmDirect(t, pl, "--appendonly", "yes", "--appendfsync", "always")
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
	srv, r, tr := warmDirect(t, engine.FailFast)
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
	srv, _, tr := warmDirect(t, engine.FailFast)
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

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, addr string
	master   bool
	failed   bool
	slots    [][2]int
}

// clusterNodes reads the cluster's view from the node at addr.
func clusterNodes(t *testing.T, addr string) []clusterNode {
	t.Helper()
	txt, err := redisproc.Do(t, addr, "CLUSTER", "NODES").ToString()
	if err != nil {
		t.Fatalf("CLUSTER NODES on %s: %v", addr, err)
	}
	txt = strings.TrimPrefix(txt, "txt:") // a RESP3 verbatim string
	var out []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(txt), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := clusterNode{id: f[0], addr: strings.Split(f[1], "@")[0],
			master: strings.Contains(f[2], "master"), failed: strings.Contains(f[2], "fail")}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated or imported
			}
			lo, hi, ok := strings.Cut(r, "-")
			if !ok {
				hi = lo
			}
			a, _ := strconv.Atoi(lo)
			b, _ := strconv.Atoi(hi)
			n.slots = append(n.slots, [2]int{a, b})
		}
		out = append(out, n)
	}
	return out
}

// owner returns the healthy master serving slot s, as the node at addr sees it.
func owner(t *testing.T, addr string, s int) (clusterNode, bool) {
	t.Helper()
	for _, n := range clusterNodes(t, addr) {
		if !n.master || n.failed {
			continue
		}
		for _, r := range n.slots {
			if s >= r[0] && s <= r[1] {
				return n, true
			}
		}
	}
	return clusterNode{}, false
}

// replicated returns once a replica of the master at addr has every write
// the master took so far: a write on one connection, in the slot of key,
// then WAIT for one replica (replication is one stream, so every earlier
// write is in with it). Without it, a replica still catching up (a full
// sync after the previous subtest restarted the old master) was promoted
// without the victim's warm links (beside stress-ng, 33 lost, which the
// client had answered from its cache after the kill, as it should).
func replicated(t *testing.T, addr, key string) {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := redistest.Ctx(t)
	redistest.Poll(t, 20*time.Second, "a replica of "+addr+" has every write", func() bool {
		out := c.DoMulti(ctx, c.B().Set().Key(key+":replicated").Value("1").Build(), c.B().Wait().Numreplicas(1).Timeout(1000).Build())
		n, err := out[1].AsInt64()
		return out[0].Error() == nil && err == nil && n >= 1
	})
}

// TestFailover: on the cluster with replicas, the master serving the
// service's state (and a third of the links) is killed mid-traffic; its
// replica takes over; traffic continues. The row counts the errors callers
// saw and the time from the kill until calls succeed again. The killed node
// is started again (it rejoins as a replica) and the cluster left healthy.
func TestFailover(t *testing.T) {
	for _, pl := range []engine.DegradedPlacement{engine.FailFast, engine.HashPlacement} {
		t.Run(pl.String(), func(t *testing.T) { failover(t, pl) })
	}
}

func failover(t *testing.T, pl engine.DegradedPlacement) {
	ha := redisproc.HA(t)
	ha.WaitHealthy(t, 30*time.Second)
	addrs := strings.Join(ha.Addrs(), ",")
	r := newRig(t, rigConfig{serverAddr: addrs, clientAddr: addrs, directAddr: addrs, placement: pl})
	stateSlot := int(slot.Of(store.StateKey(r.ns, svc)))
	victim, ok := owner(t, ha.Nodes[0].Addr, stateSlot)
	if !ok {
		t.Fatalf("no master serves slot %d", stateSlot)
	}
	var node *redisproc.Node
	var witness string // a node that stays up, to watch the failover from
	for _, n := range ha.Nodes {
		if n.Addr == victim.addr {
			node = n
		} else if witness == "" {
			witness = n.Addr
		}
	}
	t.Cleanup(func() {
		if node.Role(t) == "" {
			node.Start(t)
		}
		ha.WaitHealthy(t, 60*time.Second)
	})

	tr, _ := r.warmTraffic()
	replicated(t, victim.addr, store.StateKey(r.ns, svc))
	// The killed master served the pod states: the client's refreshes are
	// refused until a replica takes over.
	outage := r.watchOutage(r.client.DegradedStats().Outages)
	killAt := time.Now()
	node.Kill(t)
	detected := outage()
	redistest.Poll(t, 30*time.Second, "a replica took over the killed master's slots", func() bool {
		n, ok := owner(t, witness, stateSlot)
		return ok && n.addr != victim.addr
	})
	failedOver := time.Since(killAt)
	tr.waitHealthy(killAt.Add(failedOver))
	tr.halt()
	r.waitWrittenBack(pl)
	o := tr.summarize("master killed, failover ("+pl.String()+")", killAt, killAt.Add(failedOver))
	o.detected = detected
	// Calls during the failover window and after are all "after the kill":
	// recovery is measured from the kill.
	o.recovery = 0
	var lastErr time.Time
	for _, c := range tr.calls(killAt, time.Now()) {
		if c.err != nil && c.start.Add(c.took).After(lastErr) {
			lastErr = c.start.Add(c.took)
		}
	}
	if !lastErr.IsZero() {
		o.recovery = lastErr.Sub(killAt)
	}
	// Replication is asynchronous: a link the killed master acknowledged
	// before it died may never have reached the replica that took over
	// (beside stress-ng a run lost 33 links, the 5 it printed answered
	// within 41 ms of one another, and the client's revalidation found 33
	// cached links gone). Answers from before the kill that are missing
	// are lost by Redis itself and reported apart; every answer given
	// after the kill must hold.
	tr.checkLinks(&o, killAt)
	o.report(t)
	t.Logf("failover took %v (replica promoted); degraded stats: %+v", failedOver.Round(time.Millisecond), r.client.DegradedStats())
	if o.warmErrsDuring != 0 {
		t.Errorf("%d calls for cached users failed during the failover, want 0", o.warmErrsDuring)
	}
	if o.linksLost != 0 {
		// A write acknowledged by the old master just before its death and
		// not yet replicated is lost by Redis Cluster itself (asynchronous
		// replication); over loopback that window is well under a
		// millisecond, so any loss here is reported as ours.
		t.Errorf("%d links lost", o.linksLost)
	}
}

// TestSlotMigration: a slot holding links of live users is migrated from
// its master to another one, key by key, while those users are placed and
// routed: the clients meet ASK and then MOVED redirections (and TRYAGAIN
// while a user's two keys sit on different nodes). No error escapes.
func TestSlotMigration(t *testing.T) {
	ha := redisproc.HA(t)
	ha.WaitHealthy(t, 30*time.Second)
	addrs := strings.Join(ha.Addrs(), ",")
	// The calls get ten detection windows as their deadline, not the fault
	// tests' 300 ms: what counts here is that no redirection escapes as an
	// error, and a call a busy machine merely schedules late is not one.
	// Beside stress-ng, one call in a few hundred ran past a 500 ms deadline
	// twice (b5 of an earlier session; b3 of stop 30, where every other call
	// took at most 21 ms); the row's max call now times the read past the
	// cache too, to show how long such a call takes. A hang still fails.
	r := newRig(t, rigConfig{serverAddr: addrs, clientAddr: addrs, directAddr: addrs, deadline: 10 * faultDetect})
	ctx := redistest.Ctx(t)
	r.waitAccepting(ctx)

	// Users whose links all live in one slot.
	target := int(slot.Of(store.LinkKey(r.ns, "m0", svc)))
	var uids []string
	for i := 0; len(uids) < 60; i++ {
		uid := "m" + strconv.Itoa(i)
		if int(slot.Of(store.LinkKey(r.ns, uid, svc))) == target {
			uids = append(uids, uid)
		}
	}
	src, ok := owner(t, ha.Nodes[0].Addr, target)
	if !ok {
		t.Fatalf("no master serves slot %d", target)
	}
	var dst clusterNode
	for _, n := range clusterNodes(t, src.addr) {
		if n.master && !n.failed && n.id != src.id {
			dst = n
			break
		}
	}
	// Half the users are linked before the migration, half arrive during it.
	tr := &traffic{r: r, stop: make(chan struct{})}
	for _, uid := range uids[:30] {
		pod, err := r.client.ComputeLinkedPod(ctx, r.ns, uid, svc)
		if err != nil {
			t.Fatal(err)
		}
		tr.record(call{uid: uid, start: time.Now(), pod: pod})
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			uid := uids[i%len(uids)]
			cctx, cancel := contextWithTimeout(r.deadline)
			start := time.Now()
			pod, err := r.client.ComputeLinkedPod(cctx, r.ns, uid, svc)
			if err == nil && i%3 == 0 {
				// Reads straight from Redis, past the cache, meet the
				// redirections too.
				_, err = r.client.GetLinkedPodNotCache(cctx, r.ns, uid, svc)
			}
			took := time.Since(start)
			cancel()
			tr.record(call{uid: uid, start: start, took: took, pod: pod, err: err})
			time.Sleep(time.Millisecond)
		}
	}()

	migrateAt := time.Now()
	do := func(addr string, args ...string) {
		t.Helper()
		if err := redisproc.Do(t, addr, args...).Error(); err != nil {
			t.Fatalf("%s on %s: %v", strings.Join(args, " "), addr, err)
		}
	}
	s := strconv.Itoa(target)
	do(dst.addr, "CLUSTER", "SETSLOT", s, "IMPORTING", src.id)
	do(src.addr, "CLUSTER", "SETSLOT", s, "MIGRATING", dst.id)
	host, port, _ := strings.Cut(dst.addr, ":")
	moved := 0
	for {
		keys, err := redisproc.Do(t, src.addr, "CLUSTER", "GETKEYSINSLOT", s, "1").AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			break
		}
		// One key at a time, with traffic in between: a user's two keys
		// spend a while on different nodes.
		do(src.addr, append([]string{"MIGRATE", host, port, "", "0", "5000", "KEYS"}, keys...)...)
		moved++
		n := len(tr.calls(migrateAt, time.Now()))
		redistest.Poll(t, 10*time.Second, "traffic between two keys", func() bool {
			return len(tr.calls(migrateAt, time.Now())) >= n+3
		})
	}
	for _, n := range ha.Nodes {
		if n.Role(t) == "master" {
			do(n.Addr, "CLUSTER", "SETSLOT", s, "NODE", dst.id)
		}
	}
	settledAt := time.Now()
	tr.waitCalls(settledAt, 200, "traffic after the migration")
	close(stop)
	<-done
	o := tr.summarize("slot migrated during traffic (ASK/MOVED)", migrateAt, settledAt)
	tr.checkLinks(&o, time.Time{})
	o.report(t)
	t.Logf("slot %d: %d keys moved from %s to %s", target, moved, src.addr, dst.addr)
	if moved == 0 {
		t.Fatal("the slot held no key: nothing was migrated")
	}
	if o.errsDuring+o.errsAfter != 0 || o.linksLost != 0 {
		t.Errorf("%d errors escaped, %d links lost; want none", o.errsDuring+o.errsAfter, o.linksLost)
	}
}

// The fault tests run pods (engine.Server) and one engine.Client against a
// real Redis, with traffic flowing, inject one fault, lift it, and report
// one row of the fault table: errors seen by callers, time to recover,
// links lost.

// faultTiming: pods stale 600 ms after their last heartbeat; clients refresh
// every 100 ms; a refresh waits faultDetect for Redis before calling it
// unreachable (a refused connection is noticed at the second refresh).
var faultTiming = engine.Timing{Heartbeat: 200 * time.Millisecond, Staleness: 600 * time.Millisecond, Refresh: 100 * time.Millisecond}

// faultDetect is the rig's detection window: five refresh periods, so that a
// refresh slowed by a busy machine is not taken for an outage.
const faultDetect = 5 * 100 * time.Millisecond

// callDeadline is every traffic call's context deadline.
const callDeadline = 300 * time.Millisecond

// lateAfter is how long a call may take before the test calls it a hang:
// its deadline and a staleness window more (a busy, race-instrumented
// machine schedules late: 615 ms for a 300 ms deadline was seen beside
// stress-ng; a hung call waits for the client library's own timeouts, 10 s).
func (r *rig) lateAfter() time.Duration { return r.deadline + r.timing.Staleness }

const faultPods = 3

// rig is one fault test's world.
type rig struct {
	t  *testing.T
	ns string
	// addr is the Redis everybody reaches (a proxy's address when proxied).
	addr string
	// direct reaches Redis without any proxy, to check links.
	direct *store.Redis
	st     *store.Redis // the client's store
	client *engine.Client
	pods   []*engine.Server
	timing engine.Timing
	// detect is the client's detection window (DegradedConfig.DetectAfter).
	detect time.Duration
	// deadline is every traffic call's context deadline.
	deadline time.Duration
}

type rigConfig struct {
	// serverAddr is the Redis the pods talk to; clientAddr the client's.
	serverAddr, clientAddr, directAddr string
	placement                          engine.DegradedPlacement
	// maxStale overrides the degraded mode's MaxStaleness when not zero.
	maxStale time.Duration
	// cacheTTL overrides the client's cache TTL when not zero.
	cacheTTL time.Duration
	// configure adjusts the client's rueidis options.
	configure func(*rueidis.ClientOption)
	// timing and deadline override faultTiming and callDeadline when set;
	// detect overrides faultDetect (with timing set, it defaults to the
	// engine's default).
	timing   engine.Timing
	deadline time.Duration
	detect   time.Duration
}

func newRig(t *testing.T, cfg rigConfig) *rig {
	t.Helper()
	r := &rig{t: t, ns: redistest.Namespace(t), addr: cfg.clientAddr, timing: cfg.timing, deadline: cfg.deadline, detect: cfg.detect}
	if r.timing == (engine.Timing{}) {
		r.timing = faultTiming
		if r.detect == 0 {
			r.detect = faultDetect
		}
	}
	if r.deadline == 0 {
		r.deadline = callDeadline
	}
	r.direct = dialStore(t, cfg.directAddr, true, nil)
	srvStore := dialStore(t, cfg.serverAddr, true, nil)
	for pod := range faultPods {
		r.pods = append(r.pods, newPod(t, engine.ServerConfig{Store: srvStore, Namespace: r.ns, Service: svc, Pod: pod,
			Timing: r.timing, MaxRequest: 100 * time.Millisecond}))
	}
	r.startPods()
	r.st = dialStore(t, cfg.clientAddr, false, cfg.configure)
	c, err := engine.NewClient(engine.ClientConfig{
		Store: r.st, Timing: r.timing, TempLinkTTL: time.Minute,
		Cache:    engine.CacheConfig{TTL: cfg.cacheTTL},
		Degraded: engine.DegradedConfig{Placement: cfg.placement, MaxStaleness: cfg.maxStale, DetectAfter: r.detect},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	r.client = c
	if r.detect == 0 {
		r.detect = max(3*time.Second, 2*r.timing.Refresh) // the engine's default
	}
	return r
}

func (r *rig) startPods() {
	r.t.Helper()
	for _, s := range r.pods {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := s.Start(ctx)
		cancel()
		if err != nil {
			r.t.Fatalf("Start: %v", err)
		}
	}
}

// newPod is a Server for cfg, not started, that the test's cleanup stops
// without a drain.
func newPod(t testing.TB, cfg engine.ServerConfig) *engine.Server {
	t.Helper()
	s, err := engine.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // no drain
		_ = s.Stop(ctx)
	})
	return s
}

// dialStore connects to addr; untracked stores cache nothing.
func dialStore(t *testing.T, addr string, untracked bool, configure func(*rueidis.ClientOption)) *store.Redis {
	t.Helper()
	st, err := store.Dial(store.DialConfig{Addrs: strings.Split(addr, ","), Configure: func(o *rueidis.ClientOption) {
		o.DisableCache = untracked
		if configure != nil {
			configure(o)
		}
	}})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(st.Close)
	return st
}

// proxied returns a fault proxy in front of addr, closed when t ends.
func proxied(t *testing.T, addr string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// standaloneAddr is the shared real standalone Redis.
func standaloneAddr(t *testing.T) string {
	t.Helper()
	return redistest.Addrs(t, redistest.Standalone)[0]
}

// call is one traffic call.
type call struct {
	uid   string
	warm  bool // the user was placed before the fault
	start time.Time
	took  time.Duration
	pod   int
	err   error
}

// traffic calls ComputeLinkedPod from a few goroutines, half for users
// placed before the fault (their links are cached), half for users never
// seen before, and records every call.
type traffic struct {
	r    *rig
	warm []string
	seq  atomic.Int64
	mu   sync.Mutex
	log  []call
	stop chan struct{}
	wg   sync.WaitGroup
}

// warmUp places n users and caches their links, then starts traffic.
func (r *rig) traffic(n, workers int) *traffic {
	r.t.Helper()
	tr := &traffic{r: r, stop: make(chan struct{})}
	ctx := redistest.Ctx(r.t)
	r.waitAccepting(ctx)
	for i := range n {
		uid := "warm" + strconv.Itoa(i)
		if _, err := r.client.ComputeLinkedPod(ctx, r.ns, uid, svc); err != nil {
			r.t.Fatalf("warm-up %s: %v", uid, err)
		}
		// The placement's own write ended its tracking: a later call reads
		// it back with tracking and caches it (once the invalidation of
		// that write has arrived).
		var pod int
		redistest.Poll(r.t, 5*time.Second, uid+" cached", func() bool {
			var err error
			pod, err = r.client.ComputeLinkedPod(ctx, r.ns, uid, svc)
			if err != nil {
				r.t.Fatalf("warm-up %s: %v", uid, err)
			}
			return r.client.GetLinkedInCache(r.ns, uid, svc) == pod
		})
		tr.warm = append(tr.warm, uid)
		tr.record(call{uid: uid, warm: true, start: time.Now(), pod: pod})
	}
	for w := range workers {
		tr.wg.Go(func() { tr.worker(w) })
	}
	r.t.Cleanup(tr.halt)
	return tr
}

// directRig is a rig whose pods, client and direct reads all use the Redis
// at addr, with no proxy between.
func directRig(t *testing.T, addr string, pl engine.DegradedPlacement) *rig {
	t.Helper()
	return newRig(t, rigConfig{serverAddr: addr, clientAddr: addr, directAddr: addr, placement: pl})
}

// warmDirect starts a Redis of its own (with args), a rig on it without
// proxies under pl, and warm traffic through the rig.
func warmDirect(t *testing.T, pl engine.DegradedPlacement, args ...string) (*redisproc.Server, *rig, *traffic) {
	t.Helper()
	srv := redisproc.Start(t, args...)
	r := directRig(t, srv.Addr, pl)
	tr, _ := r.warmTraffic()
	return srv, r, tr
}

// warmTraffic starts the traffic of every fault test (50 users placed and
// cached, 3 workers) and waits for 100 calls; it returns when it started.
func (r *rig) warmTraffic() (*traffic, time.Time) {
	r.t.Helper()
	tr := r.traffic(50, 3)
	start := time.Now()
	tr.waitCalls(start, 100, "traffic before the fault")
	return tr, start
}

// waitWrittenBack waits, under HashPlacement, until every placement made by
// hash during an outage has been written back to Redis.
func (r *rig) waitWrittenBack(pl engine.DegradedPlacement) {
	r.t.Helper()
	if pl == engine.HashPlacement {
		redistest.Poll(r.t, 20*time.Second, "every placement made by hash written back", func() bool {
			return r.client.DegradedStats().Pending == 0
		})
	}
}

// waitAccepting waits until the client sees every pod accepting.
func (r *rig) waitAccepting(ctx context.Context) {
	r.t.Helper()
	redistest.Poll(r.t, 10*time.Second, "every pod accepting", func() bool {
		snap, err := r.client.States().Snapshot(ctx, r.ns, svc)
		if err != nil {
			return false
		}
		n := 0
		for _, p := range snap.Pods {
			if p.Accepting {
				n++
			}
		}
		return n == faultPods
	})
}

func (tr *traffic) worker(w int) {
	for i := 0; ; i++ {
		select {
		case <-tr.stop:
			return
		default:
		}
		var uid string
		warm := i%2 == 0
		if warm {
			uid = tr.warm[(i/2*7+w)%len(tr.warm)]
		} else {
			uid = "new" + strconv.FormatInt(tr.seq.Add(1), 10)
		}
		ctx, cancel := context.WithTimeout(context.Background(), tr.r.deadline)
		start := time.Now()
		pod, err := tr.r.client.ComputeLinkedPod(ctx, tr.r.ns, uid, svc)
		took := time.Since(start)
		cancel()
		tr.record(call{uid: uid, warm: warm, start: start, took: took, pod: pod, err: err})
		// Pace the traffic: a few hundred calls a second leave the two
		// cores to Redis, the proxy and the pods.
		time.Sleep(2 * time.Millisecond)
	}
}

func (tr *traffic) record(c call) {
	tr.mu.Lock()
	tr.log = append(tr.log, c)
	tr.mu.Unlock()
}

func (tr *traffic) halt() {
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	tr.wg.Wait()
}

// calls returns the calls started in [from, to).
func (tr *traffic) calls(from, to time.Time) []call {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []call
	for _, c := range tr.log {
		if !c.start.Before(from) && c.start.Before(to) {
			out = append(out, c)
		}
	}
	return out
}

// waitCalls waits until n calls started after from have returned.
func (tr *traffic) waitCalls(from time.Time, n int, what string) {
	tr.r.t.Helper()
	redistest.Poll(tr.r.t, 20*time.Second, what, func() bool {
		return len(tr.calls(from, time.Now().Add(time.Hour))) >= n
	})
}

// hold lets traffic run for at least d and n calls after from, so a fault
// outlasts the pods' staleness window and the cache TTL matters.
func (tr *traffic) hold(from time.Time, d time.Duration, n int, what string) {
	tr.r.t.Helper()
	redistest.Poll(tr.r.t, d+20*time.Second, what, func() bool {
		return time.Since(from) >= d && len(tr.calls(from, time.Now().Add(time.Hour))) >= n
	})
}

// waitHealthy waits until, after from, 50 calls in a row (new users
// included) succeeded.
func (tr *traffic) waitHealthy(from time.Time) {
	tr.r.t.Helper()
	redistest.Poll(tr.r.t, 20*time.Second, "50 calls in a row succeed after the fault", func() bool {
		cs := tr.calls(from, time.Now().Add(time.Hour))
		run := 0
		for _, c := range cs {
			if c.err != nil {
				run = 0
			} else {
				run++
			}
		}
		return run >= 50
	})
}

// outcome is one row of the fault table.
type outcome struct {
	fault                   string
	callsDuring, errsDuring int
	warmErrsDuring          int
	errsAfter               int
	errKinds                map[string]int
	recovery                time.Duration
	maxTook                 time.Duration
	linksChecked, linksLost int
	lostByRedis             int
	// detected is how long after the fault the client declared an outage;
	// negative for a fault that is not an outage.
	detected time.Duration
}

// errKind names an error for the table.
func errKind(err error) string {
	switch {
	case errors.Is(err, store.ErrUnavailable) && errors.Is(err, context.DeadlineExceeded):
		return "unavailable(deadline)"
	case errors.Is(err, store.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.Is(err, engine.ErrNoAvailablePod):
		return "no-available-pod"
	case errors.Is(err, engine.ErrPodNotRoutable):
		return "pod-not-routable"
	}
	return "other: " + err.Error()
}

// summarize builds the row from the calls of the fault window [from, lifted)
// and after it, and checks that no call overran its deadline.
func (tr *traffic) summarize(name string, from, lifted time.Time) outcome {
	tr.r.t.Helper()
	o := outcome{fault: name, errKinds: map[string]int{}, detected: -1}
	for _, c := range tr.calls(from, time.Now().Add(time.Hour)) {
		o.maxTook = max(o.maxTook, c.took)
		if c.took > tr.r.lateAfter() {
			tr.r.t.Errorf("%s: a call took %v, past its %v deadline", name, c.took, tr.r.deadline)
		}
		during := c.start.Before(lifted)
		if during {
			o.callsDuring++
		}
		if c.err == nil {
			continue
		}
		o.errKinds[errKind(c.err)]++
		if during {
			o.errsDuring++
			if c.warm {
				o.warmErrsDuring++
			}
			continue
		}
		o.errsAfter++
		if end := c.start.Add(c.took).Sub(lifted); end > o.recovery {
			o.recovery = end
		}
	}
	return o
}

// checkLinks compares every user's last successful answer with its link in
// Redis (read directly): a different or missing link is a lost link.
// Answers given before redisLost were lost by Redis itself (a restart with
// empty data) when their link is missing; pass the zero time otherwise.
func (tr *traffic) checkLinks(o *outcome, redisLost time.Time) {
	tr.r.t.Helper()
	// For each user, its last answer and since when it has answered that
	// pod without a break: a link answered before redisLost and only served
	// again since (from the cache) was acknowledged by Redis before Redis
	// could lose it, whenever its last answer came.
	last := map[string]call{}
	since := map[string]time.Time{}
	tr.mu.Lock()
	log := slices.Clone(tr.log)
	tr.mu.Unlock()
	slices.SortStableFunc(log, func(a, b call) int { return a.start.Compare(b.start) })
	for _, c := range log {
		if c.err != nil {
			continue
		}
		if p, ok := last[c.uid]; !ok || p.pod != c.pod {
			since[c.uid] = c.start
		}
		last[c.uid] = c
	}
	ctx := redistest.Ctx(tr.r.t)
	uids := make([]string, 0, len(last))
	for uid := range last {
		uids = append(uids, uid)
	}
	sort.Strings(uids)
	for _, uid := range uids {
		c := last[uid]
		pod, err := tr.r.direct.GetLinkedPod(ctx, tr.r.ns, uid, svc)
		if err != nil {
			tr.r.t.Fatalf("reading %s: %v", uid, err)
		}
		o.linksChecked++
		switch {
		case pod == c.pod:
		case pod == store.NoPod && !redisLost.IsZero() && since[uid].Before(redisLost):
			o.lostByRedis++
		default:
			o.linksLost++
			if o.linksLost <= 5 {
				tr.r.t.Errorf("%s: answered pod %d at %v (since %v), linked to %d now", uid, c.pod,
					c.start.Format("15:04:05.000"), since[uid].Format("15:04:05.000"), pod)
			}
		}
	}
}

// conclude stops the traffic and returns its row, summarized over the fault
// window [from, lifted), with the links checked (see checkLinks for
// redisLost) and detected set as in outcome; it logs the row.
func (tr *traffic) conclude(name string, from, lifted, redisLost time.Time, detected time.Duration) outcome {
	tr.r.t.Helper()
	tr.halt()
	o := tr.summarize(name, from, lifted)
	o.detected = detected
	tr.checkLinks(&o, redisLost)
	o.report(tr.r.t)
	return o
}

// wantCachedServed checks that no call for a cached user failed during the
// fault and that no link was lost; lost qualifies the lost links in the message.
func (o outcome) wantCachedServed(t *testing.T, lost string) {
	t.Helper()
	if o.warmErrsDuring != 0 || o.linksLost != 0 {
		t.Errorf("cached users failed %d times, %d links lost%s; want 0 and 0", o.warmErrsDuring, o.linksLost, lost)
	}
}

// report logs the row in the table's format.
func (o outcome) report(t *testing.T) {
	t.Helper()
	detected := "no outage"
	if o.detected >= 0 {
		detected = "outage detected after " + o.detected.Round(time.Millisecond).String()
	}
	t.Logf("FAULT-TABLE | %s | calls during fault %d, errors during %d (cached users %d), errors after lift %d, kinds %v | %s | recovery %v | max call %v | links checked %d, lost %d, lost by Redis itself %d |",
		o.fault, o.callsDuring, o.errsDuring, o.warmErrsDuring, o.errsAfter, o.errKinds, detected,
		o.recovery.Round(time.Millisecond), o.maxTook.Round(time.Millisecond), o.linksChecked, o.linksLost, o.lostByRedis)
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
