package engine_test

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/lb"
	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

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
