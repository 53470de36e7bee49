package engine_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/lb"
	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

// every calls fn(0), fn(1), ... once a period, the first a period from now,
// until stop is closed.
func every(period time.Duration, stop <-chan struct{}, fn func(n int)) {
	tk := time.NewTicker(period)
	defer tk.Stop()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		fn(n)
	}
}

// dial dials a store as an application does (with tracking on a real Redis),
// closed when t ends.
func dial(t testing.TB, cfg store.DialConfig) *store.Redis {
	t.Helper()
	st, err := store.Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// fast timings for tests: pods are stale 600 ms after their last heartbeat.
var testTiming = engine.Timing{Heartbeat: 200 * time.Millisecond, Staleness: 600 * time.Millisecond, Refresh: 50 * time.Millisecond}

const svc = "room"

// countingClient counts the commands that go through it naming a link key
// (K1): the reads and writes of users' links, not the pod states. An
// EVALSHA answered NOSCRIPT (re-sent as EVAL at once) does not count.
type countingClient struct {
	rueidis.Client
	links atomic.Int64
}

// namesLink reports whether cmd names a link key (read before the command
// is sent: the client library recycles it after).
func namesLink(cmd rueidis.Completed) bool {
	for _, arg := range cmd.Commands()[1:] {
		if _, _, _, ok := store.ParseLinkKey(arg); ok {
			return true
		}
	}
	return false
}

// counted counts a command that named a link and was answered res.
func (c *countingClient) counted(link bool, res rueidis.RedisResult) {
	if e, ok := rueidis.IsRedisErr(res.Error()); link && !(ok && e.IsNoScript()) {
		c.links.Add(1)
	}
}

func (c *countingClient) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	link := namesLink(cmd)
	res := c.Client.Do(ctx, cmd)
	c.counted(link, res)
	return res
}

func (c *countingClient) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	links := make([]bool, len(cmds))
	for i, cmd := range cmds {
		links[i] = namesLink(cmd)
	}
	res := c.Client.DoMulti(ctx, cmds...)
	for i := range cmds {
		c.counted(links[i], res[i])
	}
	return res
}

// scenario is what one row of the client table gets.
type scenario struct {
	t     *testing.T
	ctx   context.Context
	ns    string
	b     *redistest.Backend
	st    *store.Redis // shared by the "servers" of the test
	count *countingClient
	c     *engine.Client

	// beats holds, once beat was called, the state of each pod published,
	// which a heartbeat re-publishes every testTiming.Heartbeat as the pod's
	// server would: a scenario that takes longer than the staleness window
	// on a busy machine (20 placement races under -race beside another test
	// run) otherwise saw its pods go stale and got "no available pod".
	beatMu sync.Mutex
	beats  map[int]podBeat
}

// podBeat is what a pod's heartbeat publishes.
type podBeat struct {
	load int
	r    store.RoutingState
}

func newScenario(t *testing.T, b *redistest.Backend) *scenario {
	cc := &countingClient{Client: b.Client}
	sc := &scenario{t: t, ctx: redistest.Ctx(t), ns: redistest.Namespace(t), b: b, st: store.New(b.Client), count: cc}
	sc.c = sc.newClient(store.New(cc))
	return sc
}

func (sc *scenario) newClient(st *store.Redis) *engine.Client {
	c, err := engine.NewClient(engine.ClientConfig{Store: st, Timing: testTiming, TempLinkTTL: 30 * time.Second})
	if err != nil {
		sc.t.Fatal(err)
	}
	sc.t.Cleanup(c.Close)
	return c
}

// publish writes a pod's state as its server would; after beat, it keeps
// it fresh too.
func (sc *scenario) publish(pod int, load int, r store.RoutingState) {
	sc.t.Helper()
	sc.beatMu.Lock()
	defer sc.beatMu.Unlock()
	if _, err := sc.st.SetServiceState(sc.ctx, sc.ns, svc, pod, load, r); err != nil {
		sc.t.Fatal(err)
	}
	if sc.beats != nil {
		sc.beats[pod] = podBeat{load, r}
	}
}

// beat starts the pods' heartbeat: from then on, publish keeps every pod
// it publishes fresh until the scenario ends or silence stops it.
func (sc *scenario) beat() {
	sc.beatMu.Lock()
	defer sc.beatMu.Unlock()
	sc.beats = map[int]podBeat{}
	ctx, cancel := context.WithCancel(sc.ctx)
	done := make(chan struct{})
	go sc.heartbeat(ctx, done)
	sc.t.Cleanup(func() { cancel(); <-done })
}

// silence stops pod's heartbeat: the pod goes stale a staleness window
// after its last one, which is over when silence returns.
func (sc *scenario) silence(pod int) {
	sc.beatMu.Lock()
	defer sc.beatMu.Unlock()
	delete(sc.beats, pod)
}

// heartbeat re-publishes the pods' states every testTiming.Heartbeat, under
// beatMu so that a publish never lands before an older beat.
func (sc *scenario) heartbeat(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(testTiming.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sc.beatMu.Lock()
		for pod, b := range sc.beats {
			_, _ = sc.st.SetServiceState(ctx, sc.ns, svc, pod, b.load, b.r) // a missed beat is retried by the next
		}
		sc.beatMu.Unlock()
	}
}

// link writes uid's link to pod in Redis, for seconds (store.Persistent:
// persistent).
func (sc *scenario) link(uid string, pod, seconds int) {
	sc.t.Helper()
	if _, err := sc.st.SetLinkedPod(sc.ctx, sc.ns, uid, svc, pod, seconds); err != nil {
		sc.t.Fatal(err)
	}
}

func (sc *scenario) compute(uid string) int {
	sc.t.Helper()
	pod, err := sc.c.ComputeLinkedPod(sc.ctx, sc.ns, uid, svc)
	if err != nil {
		sc.t.Fatalf("ComputeLinkedPod(%s): %v", uid, err)
	}
	return pod
}

var clientScenarios = []redistest.Case[*scenario]{
	{Name: "new_user_placed_on_accepting_pod", Run: func(sc *scenario) {
		sc.publish(0, 0, store.DenyNewCall)
		sc.publish(1, 50, store.Ready)
		sc.publish(2, 0, store.Shutdown)
		if pod := sc.compute("new"); pod != 1 {
			sc.t.Fatalf("placed on %d, want 1, the only accepting pod", pod)
		}
		if p, err := sc.st.GetLinkedPod(sc.ctx, sc.ns, "new", svc); err != nil || p != 1 {
			sc.t.Fatalf("link in Redis = (%d, %v), want 1", p, err)
		}
		if p, err := sc.st.GetLinkedPodIfPersist(sc.ctx, sc.ns, "new", svc); err != nil || p != store.NoPod {
			sc.t.Fatalf("persistent link = (%d, %v), want none: a client's link is temporary", p, err)
		}
	}},
	{Name: "pod0_when_only_one", Run: func(sc *scenario) {
		sc.publish(0, 7, store.Ready)
		for i := range 5 {
			if pod := sc.compute("u" + strconv.Itoa(i)); pod != 0 {
				sc.t.Fatalf("placed on %d, want 0", pod)
			}
		}
	}},
	{Name: "existing_user_stays_on_DenyNewCall_pod_new_users_avoid_it", Run: func(sc *scenario) {
		sc.beat()
		sc.publish(0, 0, store.DenyNewCall)
		sc.publish(1, 100, store.Ready)
		sc.publish(2, 100, store.Ready)
		sc.link("old", 0, store.Persistent)
		for range 3 {
			if pod := sc.compute("old"); pod != 0 {
				sc.t.Fatalf("existing user routed to %d, want its DenyNewCall pod 0", pod)
			}
		}
		for i := range 50 {
			if pod := sc.compute("new" + strconv.Itoa(i)); pod == 0 {
				sc.t.Fatalf("new user %d placed on DenyNewCall pod 0", i)
			}
		}
	}},
	{Name: "stale_pod_not_routable_within_staleness", Run: func(sc *scenario) {
		sc.beat()
		sc.publish(0, 0, store.Ready)
		sc.publish(1, 0, store.Ready)
		sc.link("u", 0, 30)
		if pod := sc.compute("u"); pod != 0 {
			sc.t.Fatalf("= %d, want 0", pod)
		}
		// Pod 1 keeps heartbeating, pod 0 stops.
		sc.silence(0)
		last := time.Now()
		redistest.Poll(sc.t, 5*time.Second, "pod 0 stops being routable", func() bool {
			return !sc.c.States().IsPodRoutable(sc.ns, svc, 0)
		})
		// The window, plus one refresh and the round trips that measure it,
		// with a heartbeat period of room for a loaded machine.
		if d := time.Since(last); d > testTiming.Staleness+testTiming.Refresh+testTiming.Heartbeat {
			sc.t.Fatalf("pod 0 stayed routable %v after its last heartbeat, window %v", d, testTiming.Staleness)
		}
		if pod := sc.compute("u"); pod != 1 {
			sc.t.Fatalf("temporary link to the stale pod: = %d, want moved to 1", pod)
		}
	}},
	{Name: "temporary_link_to_shutdown_pod_moved_persistent_not", Run: func(sc *scenario) {
		sc.publish(0, 0, store.Shutdown)
		sc.publish(1, 0, store.Ready)
		sc.link("temp", 0, 30)
		sc.link("pers", 0, store.Persistent)
		if pod := sc.compute("temp"); pod != 1 {
			sc.t.Fatalf("temporary link: = %d, want moved to 1", pod)
		}
		if p, _ := sc.st.GetLinkedPod(sc.ctx, sc.ns, "temp", svc); p != 1 {
			sc.t.Fatalf("temporary link in Redis = %d, want 1", p)
		}
		_, err := sc.c.ComputeLinkedPod(sc.ctx, sc.ns, "pers", svc)
		var nr *engine.PodNotRoutableError
		if !errors.As(err, &nr) || nr.Pod != 0 || !errors.Is(err, engine.ErrPodNotRoutable) {
			sc.t.Fatalf("persistent link: err = %v, want *PodNotRoutableError for pod 0", err)
		}
		if p, _ := sc.st.GetLinkedPod(sc.ctx, sc.ns, "pers", svc); p != 0 {
			sc.t.Fatalf("persistent link in Redis = %d, want untouched 0", p)
		}
	}},
	{Name: "no_accepting_pod", Run: func(sc *scenario) {
		sc.publish(0, 0, store.DenyNewCall)
		if _, err := sc.c.ComputeLinkedPod(sc.ctx, sc.ns, "u", svc); !errors.Is(err, engine.ErrNoAvailablePod) {
			sc.t.Fatalf("err = %v, want ErrNoAvailablePod", err)
		}
	}},
	{Name: "100_goroutines_one_uid_one_write", Run: func(sc *scenario) {
		sc.publish(0, 0, store.Ready)
		sc.publish(1, 0, store.Ready)
		if _, err := sc.c.States().Snapshot(sc.ctx, sc.ns, svc); err != nil {
			sc.t.Fatal(err)
		}
		before := sc.count.links.Load()
		pods := make([]int, 100)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range pods {
			wg.Go(func() {
				<-start
				pods[i] = sc.compute("same")
			})
		}
		close(start)
		wg.Wait()
		for i, p := range pods {
			if p != pods[0] {
				sc.t.Fatalf("goroutine %d got %d, goroutine 0 got %d", i, p, pods[0])
			}
		}
		// One placement, which reads the link and writes it at once.
		if n := sc.count.links.Load() - before; n != 1 {
			sc.t.Fatalf("%d Redis commands on the link of one new user, want 1", n)
		}
	}},
	{Name: "two_clients_race_a_new_uid", Run: func(sc *scenario) {
		sc.beat()
		for p := range 8 {
			sc.publish(p, 0, store.Ready)
		}
		other := sc.newClient(store.New(redistest.Open(sc.t, sc.b.Name).Client))
		if sc.b.Mini != nil { // the embedded Redis is one process: share its client
			other = sc.newClient(store.New(sc.b.Client))
		}
		for i := range 20 {
			uid := "race" + strconv.Itoa(i)
			var a, b int
			var wg sync.WaitGroup
			wg.Go(func() { a = sc.compute(uid) })
			wg.Go(func() {
				var err error
				if b, err = other.ComputeLinkedPod(sc.ctx, sc.ns, uid, svc); err != nil {
					sc.t.Error(err)
				}
			})
			wg.Wait()
			if a != b {
				sc.t.Fatalf("%s: clients disagree: %d vs %d", uid, a, b)
			}
		}
	}},
	{Name: "cache_answers_without_redis", Run: func(sc *scenario) {
		sc.publish(0, 0, store.Ready)
		sc.link("u", 0, store.Persistent)
		sc.compute("u")
		if got := sc.c.GetLinkedInCache(sc.ns, "u", svc); got != 0 {
			sc.t.Fatalf("GetLinkedInCache = %d, want 0 cached", got)
		}
		st := sc.c.CacheStats()
		for range 100 {
			sc.compute("u")
		}
		if hits := sc.c.CacheStats().Hits - st.Hits; hits != 100 {
			sc.t.Fatalf("%d cache hits for 100 calls", hits)
		}
		if prev := sc.c.CacheExpired(sc.ns, "u", svc); prev != 0 {
			sc.t.Fatalf("CacheExpired = %d, want 0", prev)
		}
		if got := sc.c.GetLinkedInCache(sc.ns, "u", svc); got != engine.NoPod {
			sc.t.Fatalf("after CacheExpired: %d cached", got)
		}
	}},
}

func TestClientScenarios(t *testing.T) { redistest.EachCase(t, clientScenarios, newScenario) }

// TestClientOperations covers the SPEC §5.2 operations on every backend.
func TestClientOperations(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		sc := newScenario(t, b)
		c, ctx, ns := sc.c, sc.ctx, sc.ns
		sc.publish(0, 0, store.Ready)
		sc.publish(1, 0, store.Ready)
		if _, err := sc.st.SetLinkedPod(ctx, ns, "pers", svc, 1, store.Persistent); err != nil {
			t.Fatal(err)
		}
		if _, err := sc.st.SetLinkedPod(ctx, ns, "temp", svc, 0, 60); err != nil {
			t.Fatal(err)
		}

		// GetLinkedPod reads Redis on a miss and does not fill the cache.
		if p, err := c.GetLinkedPod(ctx, ns, "temp", svc); err != nil || p != 0 {
			t.Fatalf("GetLinkedPod = (%d, %v), want 0", p, err)
		}
		if p := c.GetLinkedInCache(ns, "temp", svc); p != engine.NoPod {
			t.Fatalf("GetLinkedPod filled the cache with %d", p)
		}
		if p, err := c.GetLinkedPod(ctx, ns, "nobody", svc); err != nil || p != engine.NoPod {
			t.Fatalf("GetLinkedPod(nobody) = (%d, %v), want (-1, nil): not found is not an error", p, err)
		}
		// GetLinkedPodInCacheOrIfPersist: persistent links only, and it caches them.
		if p, err := c.GetLinkedPodInCacheOrIfPersist(ctx, ns, "temp", svc); err != nil || p != engine.NoPod {
			t.Fatalf("IfPersist(temp) = (%d, %v), want -1", p, err)
		}
		if p, err := c.GetLinkedPodInCacheOrIfPersist(ctx, ns, "pers", svc); err != nil || p != 1 {
			t.Fatalf("IfPersist(pers) = (%d, %v), want 1", p, err)
		}
		if p := c.GetLinkedInCache(ns, "pers", svc); p != 1 {
			t.Fatalf("IfPersist did not cache: %d", p)
		}
		// The cache answers GetLinkedPod; NotCache reads Redis.
		if err := c.SetCache(ctx, ns, "pers", svc, 7); err != nil {
			t.Fatal(err)
		}
		if p, _ := c.GetLinkedPod(ctx, ns, "pers", svc); p != 7 {
			t.Fatalf("GetLinkedPod after SetCache = %d, want the cached 7", p)
		}
		if p, err := c.GetLinkedPodNotCache(ctx, ns, "pers", svc); err != nil || p != 1 {
			t.Fatalf("GetLinkedPodNotCache = (%d, %v), want 1 from Redis", p, err)
		}
		if prev := c.CacheExpired(ns, "pers", svc); prev != 7 {
			t.Fatalf("CacheExpired = %d, want 7", prev)
		}
		if err := c.SetCache(ctx, ns, "pers", svc, -1); !errors.Is(err, store.ErrInvalidArgument) {
			t.Fatalf("SetCache(-1) = %v, want ErrInvalidArgument", err)
		}
		// GetLinkService lists persistent links.
		if ls, err := c.GetLinkService(ctx, ns, "pers"); err != nil || !maps.Equal(ls, map[string]int{svc: 1}) {
			t.Fatalf("GetLinkService = (%v, %v)", ls, err)
		}
		// SetLinkedPodIfAbsent writes a temporary link with the configured TTL.
		if p, err := c.SetLinkedPodIfAbsent(ctx, ns, "fresh", svc, 1); err != nil || p != 1 {
			t.Fatalf("SetLinkedPodIfAbsent = (%d, %v), want 1", p, err)
		}
		if p, err := c.SetLinkedPodIfAbsent(ctx, ns, "fresh", svc, 0); err != nil || p != 1 {
			t.Fatalf("second SetLinkedPodIfAbsent = (%d, %v), want the earlier 1", p, err)
		}
		if p, _ := sc.st.GetLinkedPodIfPersist(ctx, ns, "fresh", svc); p != engine.NoPod {
			t.Fatal("SetLinkedPodIfAbsent wrote a persistent link")
		}
		// BatchGetLinkedPod: cached ones from the cache, the rest in one round.
		if err := c.SetCache(ctx, ns, "cached", svc, 0); err != nil {
			t.Fatal(err)
		}
		uids := []string{"pers", "cached", "nobody", "temp", "fresh"}
		got, err := c.BatchGetLinkedPod(ctx, ns, uids, svc)
		want := map[int][]string{1: {"pers", "fresh"}, 0: {"cached", "temp"}}
		if err != nil || !maps.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("BatchGetLinkedPod = (%v, %v), want %v", got, err, want)
		}
		before := c.CacheStats().Hits
		if got, err = c.BatchGetLinkedPod(ctx, ns, uids, svc); err != nil || !maps.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("second BatchGetLinkedPod = (%v, %v)", got, err)
		}
		if hits := c.CacheStats().Hits - before; hits != 4 {
			t.Fatalf("second batch: %d cache hits, want the 4 linked uids", hits)
		}
		if _, err := c.BatchGetLinkedPod(ctx, ns, []string{"ok", ""}, svc); !errors.Is(err, store.ErrInvalidArgument) {
			t.Fatalf("batch with an empty uid: %v, want ErrInvalidArgument", err)
		}
		if _, err := c.ComputeLinkedPod(ctx, "bad ns", "u", svc); !errors.Is(err, store.ErrInvalidArgument) {
			t.Fatalf("ComputeLinkedPod with a bad namespace: %v", err)
		}
	})
}

// TestStatesQueries covers the route-info queries and the subscription.
func TestStatesQueries(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		sc := newScenario(t, b)
		s, ctx, ns := sc.c.States(), sc.ctx, sc.ns
		var mu sync.Mutex
		var events []engine.Event
		cancel := s.Subscribe(func(e engine.Event) {
			if e.Namespace == ns {
				mu.Lock()
				events = append(events, e)
				mu.Unlock()
			}
		})
		defer cancel()
		sc.publish(0, 40, store.Ready)
		sc.publish(1, 10, store.Ready)
		sc.publish(2, 0, store.DenyNewCall)
		if alive, err := s.AlivePods(ctx, ns, svc); err != nil || !slices.Equal(alive, []int{0, 1, 2}) {
			t.Fatalf("AlivePods = (%v, %v)", alive, err)
		}
		if r, err := s.RoutablePods(ctx, ns, svc); err != nil || !slices.Equal(r, []int{0, 1, 2}) {
			t.Fatalf("RoutablePods = (%v, %v)", r, err)
		}
		if !s.IsPodRoutable(ns, svc, 2) || s.IsPodAvailable(ns, svc, 2) || !s.IsPodAvailable(ns, svc, 1) {
			t.Fatal("routable/available flags wrong for pods 1 and 2")
		}
		if s.IsPodRoutable(ns, svc, 9) {
			t.Fatal("an unknown pod is routable")
		}
		best, err := s.GetServiceBestPod(ctx, ns, svc)
		if err != nil || best != 1 {
			t.Fatalf("GetServiceBestPod = (%d, %v), want 1 (least loaded accepting)", best, err)
		}
		if score, err := s.GetPodLoadScore(ctx, ns, svc, 1); err != nil || score != 11 {
			t.Fatalf("GetPodLoadScore(1) = (%d, %v), want 10 published + 1 placement", score, err)
		}
		if raw, err := s.GetServiceState(ctx, ns, svc); err != nil || len(raw.Pods) != 3 {
			t.Fatalf("GetServiceState = (%+v, %v)", raw, err)
		}
		// Pod 2 shuts down: a routing event.
		sc.publish(2, 0, store.Shutdown)
		redistest.Poll(t, 5*time.Second, "the Shutdown event", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return slices.ContainsFunc(events, func(e engine.Event) bool {
				return e.Kind == engine.EventRouting && e.Pod == 2 && e.From == store.DenyNewCall && e.To == store.Shutdown
			})
		})
		mu.Lock()
		seen := 0
		for _, e := range events {
			if e.Kind == engine.EventSeen {
				seen++
			}
		}
		mu.Unlock()
		if seen != 3 {
			t.Fatalf("%d first-sighting events, want 3 (%v)", seen, events)
		}
		// Pod 0 stops heartbeating: a stale event.
		redistest.Poll(t, 5*time.Second, "pod 0's stale event", func() bool {
			sc.publish(1, 10, store.Ready)
			mu.Lock()
			defer mu.Unlock()
			return slices.ContainsFunc(events, func(e engine.Event) bool { return e.Kind == engine.EventStale && e.Pod == 0 })
		})
		if _, err := s.GetPodLoadScore(ctx, ns, svc, 9); err == nil {
			t.Fatal("GetPodLoadScore of a pod without state: no error")
		}
	})
}

func TestClientConfigErrors(t *testing.T) {
	st, err := embedded.Dial(store.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, c := range []struct {
		cfg  engine.ClientConfig
		want string
	}{
		{engine.ClientConfig{}, "Store"},
		{engine.ClientConfig{Store: st, Timing: engine.Timing{Heartbeat: time.Second, Staleness: time.Second}}, "Staleness"},
		{engine.ClientConfig{Store: st, Timing: engine.Timing{Heartbeat: time.Second, Refresh: 2 * time.Second}}, "Refresh"},
		{engine.ClientConfig{Store: st, TempLinkTTL: 1500 * time.Millisecond}, "TempLinkTTL"},
		{engine.ClientConfig{Store: st, TempLinkTTL: 10 * time.Second, Cache: engine.CacheConfig{TTL: 10 * time.Second}}, "Cache.TTL"},
		{engine.ClientConfig{Store: st, Cache: engine.CacheConfig{Eviction: 9}}, "Eviction"},
		{engine.ClientConfig{Store: st, Cache: engine.CacheConfig{MaxEntries: -1}}, "MaxEntries"},
		{engine.ClientConfig{Store: st, LoadBandRatio: -1}, "LoadBandRatio"},
		{engine.ClientConfig{Store: st, Degraded: engine.DegradedConfig{DetectAfter: time.Second}}, "DetectAfter"},
		{engine.ClientConfig{Store: st, Degraded: engine.DegradedConfig{Placement: 7}}, "Degraded.Placement"},
		{engine.ClientConfig{Store: st, Degraded: engine.DegradedConfig{MaxPending: -1}}, "MaxPending"},
	} {
		cl, err := engine.NewClient(c.cfg)
		if err == nil {
			cl.Close()
		}
		var ce *engine.ConfigError
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "engine: ") ||
			!errors.Is(err, store.ErrInvalidArgument) || !errors.As(err, &ce) {
			t.Errorf("NewClient(%+v) = %v, want an engine.ConfigError about %s matching store.ErrInvalidArgument", c.cfg, err, c.want)
		}
	}
	cl, err := engine.NewClient(engine.ClientConfig{Store: st, Strategy: lb.RoundRobin{}})
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()
	cl.Close() // idempotent
	if _, err := cl.ComputeLinkedPod(redistest.Ctx(t), "n", "u", svc); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
}

// TestLoadBand: pods far above the least loaded take no new users; the band
// is judged at every placement on the corrected loads (published + placed
// since), so a pod leaves it when the others have caught up.
func TestLoadBand(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		sc := newScenario(t, b)
		sc.publish(0, 100, store.Ready) // band: max(10, 0.25 × 100) = 25 above 100
		sc.publish(1, 120, store.Ready)
		sc.publish(2, 126, store.Ready) // out of the band until pod 0 has one more
		seen := map[int]int{}
		// 80 users: the three end near (100+120+126+80)/3 = 142, so pod 2
		// takes some once the others pass 126.
		for i := range 80 {
			var loads [3]int64
			for p := range loads {
				l, err := sc.c.States().GetPodLoadScore(sc.ctx, sc.ns, svc, p)
				if err != nil {
					t.Fatal(err)
				}
				loads[p] = l
			}
			least := min(loads[0], loads[1], loads[2])
			pod := sc.compute("band" + strconv.Itoa(i))
			if band := max(10, least/4); loads[pod] > least+band {
				t.Fatalf("user %d placed on pod %d at corrected load %d, above the band %d over %d (%v)", i, pod, loads[pod], band, least, loads)
			}
			if i == 0 && pod == 2 {
				t.Fatal("the first user placed on pod 2, above the band")
			}
			seen[pod]++
		}
		if seen[2] == 0 {
			t.Fatalf("placements %v: pod 2 never re-entered the band", seen)
		}
	})
}
