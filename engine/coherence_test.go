package engine_test

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

// heartbeat publishes the given pods as Ready every 50 ms until the test ends,
// as their servers would.
func heartbeat(t *testing.T, st *store.Redis, ns string, pods ...int) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// One context for every beat, registered before the cleanup that stops
	// them: cleanups run last-registered first, so the beats stop before
	// their context is cancelled.
	ctx := redistest.Ctx(t)
	beat := func() {
		for _, p := range pods {
			if _, err := st.SetServiceState(ctx, ns, svc, p, 0, store.Ready); err != nil {
				t.Errorf("heartbeat of pod %d: %v", p, err)
			}
		}
	}
	beat()
	wg.Go(func() { every(50*time.Millisecond, stop, func(int) { beat() }) })
	t.Cleanup(func() { close(stop); wg.Wait() })
}

// otherWriter is another process on the real backend name: a store on a
// client of its own (untracked), keeping pods Ready as their servers would.
func otherWriter(t *testing.T, name, ns string, pods ...int) *store.Redis {
	t.Helper()
	st := store.New(redistest.Open(t, name).Client)
	heartbeat(t, st, ns, pods...)
	return st
}

// TestCoherence: client A caches uid → 3; another process moves the user to 5;
// A stops answering 3 as soon as Redis's invalidation arrives, long before the
// cache TTL. The delay from the write to the eviction is measured over 1,000
// link changes on the real servers.
func TestCoherence(t *testing.T) {
	for _, name := range redistest.Real {
		t.Run(name, func(t *testing.T) {
			addrs := redistest.Addrs(t, name)
			ctx := redistest.Ctx(t)
			ns := redistest.Namespace(t)
			tracked := dial(t, store.DialConfig{Addrs: addrs})
			a, err := engine.NewClient(engine.ClientConfig{
				Store: tracked, Timing: testTiming, TempLinkTTL: time.Hour,
				Cache: engine.CacheConfig{TTL: 30 * time.Minute},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			writer := otherWriter(t, name, ns, 3, 5)

			const changes = 1000
			fromStart := make([]time.Duration, 0, changes)
			fromDone := make([]time.Duration, 0, changes)
			for i := range changes {
				uid := "user" + strconv.Itoa(i)
				if _, err := writer.SetLinkedPod(ctx, ns, uid, svc, 3, store.Persistent); err != nil {
					t.Fatal(err)
				}
				for a.GetLinkedInCache(ns, uid, svc) != 3 {
					pod, err := a.ComputeLinkedPod(ctx, ns, uid, svc)
					if err != nil || pod != 3 {
						t.Fatalf("%s: = (%d, %v), want 3", uid, pod, err)
					}
				}
				start := time.Now()
				if _, err := writer.SetLinkedPod(ctx, ns, uid, svc, 5, store.Persistent); err != nil {
					t.Fatal(err)
				}
				done := time.Now()
				for a.GetLinkedInCache(ns, uid, svc) == 3 {
					if time.Since(start) > 2*time.Second {
						t.Fatalf("%s: still cached as 3 two seconds after the move", uid)
					}
					runtime.Gosched()
				}
				evicted := time.Now()
				fromStart = append(fromStart, evicted.Sub(start))
				fromDone = append(fromDone, evicted.Sub(done))
				if pod, err := a.ComputeLinkedPod(ctx, ns, uid, svc); err != nil || pod != 5 {
					t.Fatalf("%s after the move: = (%d, %v), want 5", uid, pod, err)
				}
			}
			slices.Sort(fromStart)
			slices.Sort(fromDone)
			pct := func(d []time.Duration, p float64) time.Duration { return d[int(p*float64(len(d)-1))] }
			t.Logf("%d link changes: eviction after the write was sent p50 %v p99 %v max %v; after it returned p50 %v p99 %v",
				changes, pct(fromStart, .5), pct(fromStart, .99), fromStart[len(fromStart)-1], pct(fromDone, .5), pct(fromDone, .99))
			// The 5 ms target is a speed goal, measured by BenchmarkInvalidation;
			// here it is enough that evictions are pushed, not waited for:
			// far within the cache TTL (30 min) and within a refresh of the
			// pod states (testTiming.Refresh × 20 = 1 s) on a busy machine.
			if p99 := pct(fromStart, .99); p99 > 20*testTiming.Refresh {
				t.Fatalf("p99 %v from the write to the eviction: invalidations are not arriving", p99)
			}
		})
	}
}

// TestEmbeddedCacheLivesByTTL: without client tracking (the embedded Redis) a
// cached link is trusted until its TTL, then read again.
func TestEmbeddedCacheLivesByTTL(t *testing.T) {
	st, err := embedded.Dial(store.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close) // after the heartbeat's cleanup, registered later
	ctx := redistest.Ctx(t)
	c, err := engine.NewClient(engine.ClientConfig{
		Store: st, Timing: testTiming, TempLinkTTL: 2 * time.Second,
		Cache: engine.CacheConfig{TTL: 300 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	heartbeat(t, st, "ns", 3, 5)
	if _, err := st.SetLinkedPod(ctx, "ns", "u", svc, 3, store.Persistent); err != nil {
		t.Fatal(err)
	}
	if pod, err := c.ComputeLinkedPod(ctx, "ns", "u", svc); err != nil || pod != 3 {
		t.Fatalf("= (%d, %v), want 3", pod, err)
	}
	if _, err := st.SetLinkedPod(ctx, "ns", "u", svc, 5, store.Persistent); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	if got := c.GetLinkedInCache("ns", "u", svc); got != 3 {
		t.Fatalf("right after the move the cache says %d: no tracking here, it should still say 3", got)
	}
	redistest.Poll(t, 5*time.Second, "the cached link expires", func() bool {
		pod, err := c.ComputeLinkedPod(ctx, "ns", "u", svc)
		return err == nil && pod == 5
	})
	// Seen by the cache TTL's expiry, not the temporary link's (2 s).
	if d := time.Since(changed); d >= 2*time.Second {
		t.Fatalf("the move was seen after %v, cache TTL 300 ms, temporary link TTL 2 s", d)
	}
}

// TestBatchCoherence: a cache filled by BatchGetLinkedPod stays coherent:
// after another process moves every user, no entry still answers the old
// pod once Redis's invalidations are in, and the next lookup reads the new
// one. On the real servers, in each way the store tracks a batch: on its
// placement connections (the default), by CLIENT CACHING YES before each
// MGET on its own connection (standalone) or key by key (cluster), both
// without placement connections, and in broadcast mode.
func TestBatchCoherence(t *testing.T) {
	modes := []struct {
		name string
		cfg  func(ns string) store.DialConfig
	}{
		{"placement-connection", func(string) store.DialConfig { return store.DialConfig{} }},
		{"own-connection", func(string) store.DialConfig { return store.DialConfig{NoPlacementConnection: true} }},
		{"broadcast", func(ns string) store.DialConfig {
			return store.DialConfig{Broadcast: true, BroadcastNamespaces: []string{ns}}
		}},
	}
	for _, name := range redistest.Real {
		for _, m := range modes {
			t.Run(name+"/"+m.name, func(t *testing.T) {
				ctx := redistest.Ctx(t)
				ns := redistest.Namespace(t)
				cfg := m.cfg(ns)
				cfg.Addrs = redistest.Addrs(t, name)
				tracked := dial(t, cfg)
				c, err := engine.NewClient(engine.ClientConfig{Store: tracked, Timing: testTiming, TempLinkTTL: time.Hour,
					Cache: engine.CacheConfig{TTL: 30 * time.Minute}})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				writer := otherWriter(t, name, ns, 3, 5)
				const users = 300
				uids := make([]string, users)
				for i := range uids {
					uids[i] = "user" + strconv.Itoa(i)
					if _, err := writer.SetLinkedPod(ctx, ns, uids[i], svc, 3, store.Persistent); err != nil {
						t.Fatal(err)
					}
				}
				batch := func() {
					t.Helper()
					groups, err := c.BatchGetLinkedPod(ctx, ns, uids, svc)
					if err != nil || len(groups) != 1 || len(groups[3]) != users {
						t.Fatalf("batch = (%d groups, %d on pod 3, %v), want all %d on 3", len(groups), len(groups[3]), err, users)
					}
				}
				uncached := func() string {
					for _, uid := range uids {
						if got := c.GetLinkedInCache(ns, uid, svc); got != 3 {
							return fmt.Sprintf("%s: cached %d after the batch, want 3", uid, got)
						}
					}
					return ""
				}
				batch()
				if m.name == "broadcast" {
					// Every write of the namespace reaches a broadcast
					// client, the 300 above too: one whose report is
					// handled after the batch began reading its link drops
					// what the batch cached (a miss, never a stale entry;
					// seen once, in a make test beside stress-ng). Batches
					// fill the cache once those reports are in.
					redistest.Poll(t, 20*testTiming.Refresh+5*time.Second, "the batch caches every user", func() bool {
						batch()
						return uncached() == ""
					})
				} else if u := uncached(); u != "" {
					t.Fatal(u)
				}
				for _, uid := range uids {
					if _, err := writer.SetLinkedPod(ctx, ns, uid, svc, 5, store.Persistent); err != nil {
						t.Fatal(err)
					}
				}
				// The invalidations come within the degraded mode's
				// detection window on any machine that runs this test.
				stale := func() (n int) {
					for _, uid := range uids {
						if c.GetLinkedInCache(ns, uid, svc) == 3 {
							n++
						}
					}
					return n
				}
				redistest.Poll(t, 20*testTiming.Refresh+5*time.Second, "every moved user leaves the cache", func() bool { return stale() == 0 })
				groups, err := c.BatchGetLinkedPod(ctx, ns, uids, svc)
				if err != nil || len(groups[5]) != users {
					t.Fatalf("batch after the move = (%d on pod 5, %v), want all %d", len(groups[5]), err, users)
				}
			})
		}
	}
}

// TestTracking: on the real servers a client counts the links it caches and
// reads the nodes' tracking tables, on demand (CheckTracking) and by itself
// every Cache.TrackingCheck; the tables hold at least the links it read.
func TestTracking(t *testing.T) {
	for _, name := range redistest.Real {
		t.Run(name, func(t *testing.T) {
			ctx := redistest.Ctx(t)
			ns := redistest.Namespace(t)
			tracked := dial(t, store.DialConfig{Addrs: redistest.Addrs(t, name)})
			// The period is the client's refresh: its worker checks on that tick.
			c, err := engine.NewClient(engine.ClientConfig{Store: tracked, Timing: testTiming,
				Cache: engine.CacheConfig{TrackingCheck: testTiming.Refresh}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			writer := otherWriter(t, name, ns, 3)
			const links = 100
			for i := range links {
				uid := "u" + strconv.Itoa(i)
				if _, err := writer.SetLinkedPod(ctx, ns, uid, svc, 3, store.Persistent); err != nil {
					t.Fatal(err)
				}
				if pod, err := c.ComputeLinkedPod(ctx, ns, uid, svc); err != nil || pod != 3 {
					t.Fatalf("%s: = (%d, %v), want 3", uid, pod, err)
				}
			}
			st, err := c.CheckTracking(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("tracking: %d links, fill %.6f, tables %+v", st.Links, st.Fill(), st.Tables)
			// Entries only leave the cache from here on (an invalidation: the
			// cluster is shared with tests that move slots).
			if after := c.CacheStats().Size; st.Links > links || st.Links < after || st.Links == 0 {
				t.Errorf("Links = %d, want the cache's size: at most the %d links read, at least the %d cached after", st.Links, links, after)
			}
			var keys int64
			for _, tt := range st.Tables {
				keys += tt.Keys
			}
			if len(st.Tables) == 0 || keys < links || st.ReadAt.IsZero() || st.Err != nil {
				t.Fatalf("after CheckTracking: %+v; want tables tracking at least %d keys", st, links)
			}
			if got := c.Tracking(); !got.ReadAt.Equal(st.ReadAt) || len(got.Tables) != len(st.Tables) {
				t.Errorf("Tracking() = %+v, want the read of CheckTracking %+v", got, st)
			}
			// The worker reads them again by itself.
			redistest.Poll(t, 20*testTiming.Refresh+5*time.Second, "the client rereads the tracking tables", func() bool {
				return c.Tracking().ReadAt.After(st.ReadAt)
			})
		})
	}
	t.Run("fill", func(t *testing.T) {
		st := engine.TrackingStats{Tables: []store.TrackingTable{{Keys: 1, MaxKeys: 10}, {Keys: 9, MaxKeys: 10}, {Keys: -1, MaxKeys: 10}}}
		if st.Fill() != 0.9 {
			t.Errorf("Fill = %v, want the fullest node's 0.9", st.Fill())
		}
		if (engine.TrackingStats{}).Fill() != 0 {
			t.Error("Fill with no tables is not 0")
		}
	})
}
