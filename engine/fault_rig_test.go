package engine_test

import (
	"context"
	"errors"
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
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

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
