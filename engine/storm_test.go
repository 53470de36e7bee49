package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/internal/testkit"
	"github.com/stickyroute/stickyroute/obs"
	"github.com/stickyroute/stickyroute/store"
)

// stormTiming: no refresh and no heartbeat within a test. The pods are
// published once and stay alive; each client reads them once and then
// places every user on what it read and on its own placements.
var stormTiming = engine.Timing{Heartbeat: time.Hour, Staleness: 3 * time.Hour, Refresh: time.Hour}

// publishLoads publishes pods 0..len(loads)-1 as Ready with the given loads.
func publishLoads(t *testing.T, st *store.Redis, ns string, loads ...int) {
	t.Helper()
	for pod, load := range loads {
		if _, err := st.SetServiceState(redistest.Ctx(t), ns, svc, pod, load, store.Ready); err != nil {
			t.Fatal(err)
		}
	}
}

// placeAll places users uids[i] for i = from, from+step, ... through c from
// workers goroutines, and adds each user's pod to counts.
func placeAll(t *testing.T, ctx context.Context, c *engine.Client, ns string, users, first, workers int, mu *sync.Mutex, counts map[int]int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for u := first + w; u < first+users; u += workers {
				pod, err := c.ComputeLinkedPod(ctx, ns, "storm"+strconv.Itoa(u), svc)
				if err != nil {
					errs <- fmt.Errorf("user %d: %w", u, err)
					return
				}
				mu.Lock()
				counts[pod]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// spread returns max/mean of the users per pod, published load included.
func spread(loads []int, placed map[int]int) (float64, []int) {
	total, most := 0, 0
	per := make([]int, len(loads))
	for pod := range loads {
		per[pod] = loads[pod] + placed[pod]
		total += per[pod]
		most = max(most, per[pod])
	}
	return float64(most) / (float64(total) / float64(len(loads))), per
}

// TestPlacementCorrectedLoads: one client, published loads [0, 11, 11, 11],
// places 1,250 new users from 50 goroutines before any refresh. Corrected
// loads (published + placed since) decide the band and the strategy, so pod 0
// takes its deficit and then the four pods share: users per pod end within
// max/mean 1.10. (On published loads alone every user went to pod 0.)
func TestPlacementCorrectedLoads(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ns := redistest.Namespace(t)
		loads := []int{0, 11, 11, 11}
		publishLoads(t, store.New(b.Client), ns, loads...)
		c, err := engine.NewClient(engine.ClientConfig{Store: store.New(b.Client), Timing: stormTiming})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var mu sync.Mutex
		placed := map[int]int{}
		placeAll(t, redistest.Ctx(t), c, ns, 1250, 0, 50, &mu, placed)
		wantSpread(t, b.Name, loads, placed)
	})
}

// wantSpread logs the users per pod (published + placed) and fails t
// unless they end within max/mean 1.10.
func wantSpread(t *testing.T, backend string, loads []int, placed map[int]int) {
	t.Helper()
	sp, per := spread(loads, placed)
	t.Logf("%s: users per pod (published + placed) %v, max/mean %.3f", backend, per, sp)
	if sp > 1.10 {
		t.Fatalf("users per pod %v: max/mean %.3f, want ≤ 1.10", per, sp)
	}
}

// TestPlacementFourClients: four clients (each its own connection, as four
// processes would be) place 5,000 new users at once from an even start,
// 1,250 each from 16 goroutines. Users per pod end within max/mean 1.10.
func TestPlacementFourClients(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ns := redistest.Namespace(t)
		// The embedded Redis runs a Lua interpreter per script: 5,000
		// placements under the race detector on a busy machine take minutes.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		loads := []int{0, 0, 0, 0}
		publishLoads(t, store.New(b.Client), ns, loads...)
		var mu sync.Mutex
		placed := map[int]int{}
		var wg sync.WaitGroup
		for k := range 4 {
			st := store.New(b.Client)
			if b.Mini == nil {
				st = store.New(redistest.Open(t, b.Name).Client)
			}
			c, err := engine.NewClient(engine.ClientConfig{Store: st, Timing: stormTiming})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			wg.Go(func() { placeAll(t, ctx, c, ns, 1250, k*1250, 16, &mu, placed) })
		}
		wg.Wait()
		wantSpread(t, b.Name, loads, placed)
	})
}

// TestPlacedUserCached: a user a client placed is in its cache at once,
// coherently. Two passes over 50 new users: the second makes 50 cache hits
// and no call to Redis (counted by the obs metrics). On the real servers,
// another client then moves every one of them, and this client stops
// answering the old pod without waiting for the cache TTL.
func TestPlacedUserCached(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx, ns := redistest.Ctx(t), redistest.Namespace(t)
		writer := store.New(b.Client)
		publishLoads(t, writer, ns, 0, 0, 0)
		st := writer
		if b.Mini == nil {
			var err error
			if st, err = store.Dial(store.DialConfig{Addrs: b.Addrs}); err != nil {
				t.Fatal(err)
			}
			defer st.Close()
		}
		m := obs.NewMetrics(metrics.NewSet())
		c, err := engine.NewClient(engine.ClientConfig{Store: st, Timing: stormTiming, Observer: m,
			TempLinkTTL: time.Hour, Cache: engine.CacheConfig{TTL: 30 * time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		m.Watch(c)
		pass := func(uids []string) (pods []int) {
			for _, u := range uids {
				pod, err := c.ComputeLinkedPod(ctx, ns, u, svc)
				if err != nil {
					t.Fatal(err)
				}
				pods = append(pods, pod)
			}
			return pods
		}
		// A Redis client reports its tracking lost when it replaces a
		// connection (a cluster client does so once, just after it starts):
		// links read at that moment are not cached, rightly. A first pass
		// during which that happened is run again with other users.
		var uids []string
		var pods []int
		for try := range 3 {
			uids = uids[:0]
			for i := range 50 {
				uids = append(uids, fmt.Sprintf("new%d-%d", try, i))
			}
			lost := c.DegradedStats().TrackingLost
			pods = pass(uids)
			if c.DegradedStats().TrackingLost == lost {
				break
			}
			t.Logf("tracking lost during first pass %d: again with other users", try+1)
		}
		before := m.Snapshot()
		again := pass(uids)
		after := m.Snapshot()
		hits := obs.Delta(before, after, obs.Prefix+"cache_hits_total")
		misses := obs.Delta(before, after, obs.Prefix+"cache_misses_total")
		calls := obs.Delta(before, after, obs.Prefix+"requests_total")
		trips := obs.Delta(before, after, obs.Prefix+"store_requests_total")
		t.Logf("%s: second pass over 50 placed users: %v cache hits, %v misses, %v calls and %v round trips to Redis", b.Name, hits, misses, calls, trips)
		if hits != 50 || misses != 0 || calls != 0 || trips != 0 {
			t.Fatalf("second pass: %v hits, %v misses, %v Redis-bound calls, %v round trips; want 50, 0, 0, 0", hits, misses, calls, trips)
		}
		for i := range uids {
			if again[i] != pods[i] {
				t.Fatalf("%s: %d, then %d", uids[i], pods[i], again[i])
			}
		}
		if b.Mini != nil {
			return // no client tracking: the cache TTL is the only rule
		}
		var slowest time.Duration
		for i, u := range uids {
			to := (pods[i] + 1) % 3
			start := time.Now()
			if _, err := writer.SetLinkedPod(ctx, ns, u, svc, to, store.Persistent); err != nil {
				t.Fatal(err)
			}
			redistest.Poll(t, 5*time.Second, u+" evicted after another client moved it", func() bool {
				return c.GetLinkedInCache(ns, u, svc) != pods[i]
			})
			slowest = max(slowest, time.Since(start))
			if pod, err := c.ComputeLinkedPod(ctx, ns, u, svc); pod != to || err != nil {
				t.Fatalf("%s after the move = %d, %v; want %d", u, pod, err, to)
			}
		}
		t.Logf("%s: 50 moves by another client, each evicted within %v (cache TTL 30m)", b.Name, slowest.Round(time.Microsecond))
	})
}

// denyOnPlace is an Observer that, when the first placement round trip ends,
// has the pod the user was just linked to stop taking new users, and waits
// until the client sees it: the answer of that round trip is already stale.
type denyOnPlace struct {
	t      *testing.T
	st     *store.Redis
	c      func() *engine.Client
	ns     string
	fired  atomic.Bool
	denied atomic.Int64
}

func (d *denyOnPlace) Begin(ctx context.Context, _ *engine.Op) context.Context { return ctx }
func (d *denyOnPlace) Note(context.Context, engine.Note)                       {}
func (d *denyOnPlace) End(ctx context.Context, op *engine.Op) {
	if op.Kind != engine.OpRoundTrip || op.Name != "SetLinkedPodIfAbsentTracked" || !d.fired.CompareAndSwap(false, true) {
		return
	}
	pod, err := d.st.GetLinkedPod(ctx, d.ns, "late", svc)
	if err != nil || pod == store.NoPod {
		d.t.Errorf("the placement wrote no link: %d, %v", pod, err)
		return
	}
	d.denied.Store(int64(pod))
	if _, err := d.st.SetServiceState(ctx, d.ns, svc, pod, 0, store.DenyNewCall); err != nil {
		d.t.Error(err)
	}
	redistest.Poll(d.t, 10*time.Second, "the client sees the pod deny new users", func() bool {
		return !d.c().States().IsPodAvailable(d.ns, svc, pod)
	})
}

// TestPlacedOnPodThatStoppedAccepting: a new user is placed on a pod that
// stops taking new users during the placement's round trip. The client,
// which knows it when the answer comes, moves the user to a pod that takes
// new users instead of answering the draining one.
func TestPlacedOnPodThatStoppedAccepting(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx, ns := redistest.Ctx(t), redistest.Namespace(t)
		st := store.New(b.Client)
		publishLoads(t, st, ns, 0, 0)
		var c *engine.Client
		obs := &denyOnPlace{t: t, st: st, c: func() *engine.Client { return c }, ns: ns}
		var err error
		c, err = engine.NewClient(engine.ClientConfig{Store: st, Timing: testTiming, Observer: obs})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Both pods keep heartbeating as they published, one of them
		// DenyNewCall once the observer says so.
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			every(testTiming.Heartbeat/2, stop, func(int) {
				for pod := range 2 {
					r := store.Ready
					if obs.fired.Load() && int64(pod) == obs.denied.Load() {
						r = store.DenyNewCall
					}
					_, _ = st.SetServiceState(ctx, ns, svc, pod, 0, r)
				}
			})
		}()
		defer func() { close(stop); <-done }()
		pod, err := c.ComputeLinkedPod(ctx, ns, "late", svc)
		denied := int(obs.denied.Load())
		if err != nil || pod == denied || pod == store.NoPod {
			t.Fatalf("= %d, %v; want the pod other than %d, which stopped taking new users", pod, err, denied)
		}
		if linked, err := st.GetLinkedPod(ctx, ns, "late", svc); linked != pod || err != nil {
			t.Fatalf("linked to %d (%v), answered %d", linked, err, pod)
		}
	})
}

// EnvChurn sets how long TestChurn runs (a Go duration); make test keeps
// the default, STICKYROUTE_CHURN=1m runs the full minute.
const EnvChurn = "STICKYROUTE_CHURN"

// TestChurn: pods flap between Ready and DenyNewCall every heartbeat, one
// of them also goes Shutdown now and then, and a fifth pod stopped
// heartbeating before the run; two clients route thousands of users
// throughout. No answer may name the stale pod, nor the Shutdown pod when
// the client's pod states showed it Shutdown for the whole call; nothing
// panics; memory and goroutines stay bounded.
//
// The Shutdown check follows what the client knew, not the wall clock: a
// client answers per its latest refresh, and on a loaded machine a refresh
// can come later than any fixed allowance (one did, 1 answer in 45,842).
// A call is judged when the snapshot it began with, showing pod 3
// Shutdown, is still the current one once it returns: no refresh landed in
// between, so the engine had no view in which pod 3 took anyone.
func TestChurn(t *testing.T) {
	run := 8 * time.Second
	if v := os.Getenv(EnvChurn); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", EnvChurn, v, err)
		}
		run = d
	}
	timing := engine.Timing{Heartbeat: 100 * time.Millisecond, Staleness: 300 * time.Millisecond, Refresh: 100 * time.Millisecond}
	addr := standaloneAddr(t)
	ns := redistest.Namespace(t)
	direct := dialStore(t, addr, true, nil)
	ctx := redistest.Ctx(t)

	// Pod 4 published once and died: 50 users keep temporary links to it.
	const stalePod = 4
	if _, err := direct.SetServiceState(ctx, ns, svc, stalePod, 0, store.Ready); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := direct.SetLinkedPod(ctx, ns, "u"+strconv.Itoa(i), svc, stalePod, 600); err != nil {
			t.Fatal(err)
		}
	}

	srvStore := dialStore(t, addr, true, nil)
	var pods []*engine.Server
	for pod := range 4 {
		s := newPod(t, engine.ServerConfig{Store: srvStore, Namespace: ns, Service: svc, Pod: pod,
			Timing: timing, MaxRequest: 50 * time.Millisecond})
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		pods = append(pods, s)
	}
	var clients []*engine.Client
	for range 2 {
		st := dialStore(t, addr, false, nil)
		c, err := engine.NewClient(engine.ClientConfig{Store: st, Timing: timing, TempLinkTTL: 10 * time.Second,
			Cache: engine.CacheConfig{MaxEntries: 1000, TTL: 2 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		clients = append(clients, c)
	}
	// Each client judges pod 4 stale by the server time of its last
	// publish and its own clock, which never goes back: once a client says
	// so, no answer of it may name pod 4 again.
	redistest.Poll(t, 5*time.Second+timing.Staleness, "both clients see pod 4 stale", func() bool {
		for _, c := range clients {
			if _, err := c.States().Snapshot(ctx, ns, svc); err != nil || c.States().IsPodRoutable(ns, svc, stalePod) {
				return false
			}
		}
		return true
	})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var flips, spells atomic.Int64
	for i, s := range pods {
		wg.Go(func() {
			every(timing.Heartbeat, stop, func(n int) {
				st := engine.Ready
				if (n+i)%2 == 1 {
					st = engine.DenyNewCall
				}
				if i == 3 && n%10 >= 7 {
					// Three heartbeats out of ten, pod 3 takes nobody.
					st = engine.Shutdown
				}
				c, cancel := context.WithTimeout(context.Background(), time.Second)
				err := s.SetRoutingState(c, st)
				cancel()
				if err != nil {
					t.Errorf("pod %d: SetRoutingState(%v): %v", i, st, err)
					return
				}
				flips.Add(1)
				if i == 3 && st == engine.Shutdown && n%10 == 7 {
					spells.Add(1)
				}
			})
		})
	}
	// shutdown reports whether snap shows pod 3 in Shutdown.
	shutdown := func(snap engine.ServiceSnapshot) bool {
		for _, p := range snap.Pods {
			if p.Pod == 3 {
				return p.Routing == engine.Shutdown
			}
		}
		return false
	}

	var calls, answers, noPod, unavailable, staleAnswers, judged, shutdownAnswers, otherErrs atomic.Int64
	for ci, c := range clients {
		for w := range 3 {
			testkit.Loop(&wg, stop, func(i int) bool {
				uid := "u" + strconv.Itoa((i*7919+w*31+ci*17)%3000)
				cctx, cancel := context.WithTimeout(context.Background(), time.Second)
				before, berr := c.States().Snapshot(cctx, ns, svc)
				pod, err := c.ComputeLinkedPod(cctx, ns, uid, svc)
				after, aerr := c.States().Snapshot(cctx, ns, svc)
				cancel()
				calls.Add(1)
				// One snapshot throughout: every refresh stores a new
				// one, read at a later server time.
				inShutdown := berr == nil && aerr == nil && before.ServerTime == after.ServerTime && shutdown(before)
				if inShutdown {
					judged.Add(1)
				}
				switch {
				case err == nil:
					answers.Add(1)
					if pod == stalePod {
						staleAnswers.Add(1)
					}
					if pod == 3 && inShutdown {
						shutdownAnswers.Add(1)
					}
				case errorsIs(err, engine.ErrNoAvailablePod):
					noPod.Add(1)
				case errorsIs(err, store.ErrUnavailable):
					// A loaded host can make refreshes time out: the
					// client then fails new users fast. Not what this
					// test is about; counted and reported.
					unavailable.Add(1)
				default:
					otherErrs.Add(1)
					t.Errorf("%s: %v", uid, err)
				}
				if i%50 == 0 {
					runtime.Gosched()
				}
				return true
			})
		}
	}

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	began := time.Now()
	redistest.Poll(t, run, "a quarter of the run", func() bool { return time.Since(began) >= run/4 })
	heapEarly, goroutinesEarly := heap(), runtime.NumGoroutine()
	redistest.Poll(t, run+time.Second, "the end of the run", func() bool { return time.Since(began) >= run })
	heapLate, goroutinesLate := heap(), runtime.NumGoroutine()
	close(stop)
	wg.Wait()

	nSpells := spells.Load()
	var cacheSizes []int
	for _, c := range clients {
		st := c.CacheStats()
		cacheSizes = append(cacheSizes, st.Size)
		if st.Size > st.MaxEntries {
			t.Errorf("cache holds %d links, bound %d", st.Size, st.MaxEntries)
		}
	}
	t.Logf("CHURN | %v: %d state flips (%d Shutdown spells of pod 3), %d calls, %d answers, %d no-available-pod, %d store-unavailable, %d other errors | answers naming the stale pod %d; calls made while the client saw pod 3 Shutdown %d, answers naming it %d | heap in use %d KB at 1/4, %d KB at the end; goroutines %d then %d; cache sizes %v",
		run, flips.Load(), nSpells, calls.Load(), answers.Load(), noPod.Load(), unavailable.Load(), otherErrs.Load(),
		staleAnswers.Load(), judged.Load(), shutdownAnswers.Load(), heapEarly>>10, heapLate>>10, goroutinesEarly, goroutinesLate, cacheSizes)
	if staleAnswers.Load() != 0 || shutdownAnswers.Load() != 0 {
		t.Errorf("users routed to a non-routable pod: %d to the stale pod, %d to pod 3 in Shutdown", staleAnswers.Load(), shutdownAnswers.Load())
	}
	if answers.Load() < 1000 || nSpells == 0 || judged.Load() == 0 {
		t.Errorf("too little happened: %d answers, %d Shutdown spells, %d calls while a client saw pod 3 Shutdown", answers.Load(), nSpells, judged.Load())
	}
	// Bounded memory: the caches are full from the first quarter on, so the
	// heap must not keep growing with the run.
	if heapLate > heapEarly+32<<20 {
		t.Errorf("heap grew from %d KB to %d KB", heapEarly>>10, heapLate>>10)
	}
	if goroutinesLate > goroutinesEarly+20 {
		t.Errorf("goroutines grew from %d to %d", goroutinesEarly, goroutinesLate)
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
