package obs_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/stickyroute/stickyroute/adapter/adaptertest"
	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/obs"
	"github.com/stickyroute/stickyroute/store"
)

const svc = "game"

// timing is the test fleets' (adaptertest.Timing): quick refreshes and
// heartbeats, and a staleness window long enough that a heartbeat a busy
// machine delays does not make a pod look gone (and a cached user miss).
var timing = adaptertest.Timing

// clientStore returns a store for the client under test: tracked (coherent)
// on the real servers, plain on the embedded one (which cannot track).
func clientStore(t *testing.T, b *redistest.Backend) *store.Redis {
	t.Helper()
	if b.Mini != nil {
		return store.New(b.Client)
	}
	st, err := store.Dial(store.DialConfig{Addrs: b.Addrs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// exposed reads the Prometheus text of m and parses it, checking on the way
// that every line is a well-formed sample of a stickyroute_ metric.
func exposed(t *testing.T, m *obs.Metrics) obs.Snapshot {
	t.Helper()
	var b bytes.Buffer
	m.WritePrometheus(&b)
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if !strings.HasPrefix(line, obs.Prefix) {
			t.Fatalf("exposed line %q lacks the %s prefix", line, obs.Prefix)
		}
	}
	s, err := obs.ParseSnapshot(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// step holds the exposition before a step, to assert what the step added.
type step struct {
	t      *testing.T
	m      *obs.Metrics
	before obs.Snapshot
}

func begin(t *testing.T, m *obs.Metrics) *step { return &step{t: t, m: m, before: exposed(t, m)} }

// want asserts that the step added exactly n to the named metric, summed over
// the series whose labels include match.
func (s *step) want(n float64, name string, match ...string) {
	s.t.Helper()
	after := exposed(s.t, s.m)
	if got := obs.Delta(s.before, after, obs.Prefix+name, match...); got != n {
		s.t.Errorf("%s%v grew by %v, want %v", name, match, got, n)
	}
}

func TestMetricsAfterEngineCalls(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx, ns := redistest.Ctx(t), redistest.Namespace(t)
		m := obs.NewMetrics(metrics.NewSet())
		servers := make([]*engine.Server, 2)
		for pod := range servers {
			s, err := engine.NewServer(engine.ServerConfig{Store: store.New(b.Client), Namespace: ns, Service: svc,
				Pod: pod, Timing: timing, MaxRequest: 100 * time.Millisecond, Drain: 200 * time.Millisecond, Observer: m})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			servers[pod] = s
			t.Cleanup(func() { _ = s.Stop(context.Background()) })
		}
		c, err := engine.NewClient(engine.ClientConfig{Store: clientStore(t, b), Timing: timing,
			Cache: engine.CacheConfig{MaxEntries: 1000}, Observer: m})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		m.Watch(c)
		real := b.Mini == nil
		uids := []string{"u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9"}
		svcLabels := []string{"namespace", ns, "service", svc}
		computeOK := append([]string{"op", "ComputeLinkedPod", "outcome", "ok"}, svcLabels...)

		// 1. Ten new users: each a miss, one placement round trip (which
		// reads and writes the link, and has Redis track it) and a pick.
		lost := c.DegradedStats().TrackingLost
		st := begin(t, m)
		perPod := map[int]float64{}
		for _, u := range uids {
			pod, err := c.ComputeLinkedPod(ctx, ns, u, svc)
			if err != nil {
				t.Fatal(err)
			}
			perPod[pod]++
		}
		st.want(10, "requests_total", computeOK...)
		st.want(10, "request_duration_seconds_count", append([]string{"op", "ComputeLinkedPod"}, svcLabels...)...)
		st.want(10, "cache_misses_total")
		st.want(0, "cache_hits_total")
		st.want(0, "store_requests_total", "op", "GetLinkedPodTracked")
		st.want(10, "store_requests_total", "op", "SetLinkedPodIfAbsentTracked", "outcome", "ok")
		st.want(10, "store_request_duration_seconds_count", "op", "SetLinkedPodIfAbsentTracked")
		st.want(10, "balancer_picks_total", append([]string{"strategy", "p2c"}, svcLabels...)...)
		st.want(10, "balancer_pick_duration_seconds_count", svcLabels...)
		for pod, n := range perPod {
			st.want(n, "placements_total", append([]string{"pod", strconv.Itoa(pod)}, svcLabels...)...)
		}
		skew := exposed(t, m).Sum(obs.Prefix+"placement_skew", svcLabels...)
		wantSkew := 0.0
		for _, n := range perPod {
			wantSkew = max(wantSkew, n/(10/float64(len(perPod))))
		}
		if skew != wantSkew {
			t.Errorf("placement_skew = %v, want %v (placements %v)", skew, wantSkew, perPod)
		}

		// 2. The same users again: cached when they were placed, so ten hits
		// and no call reaches Redis. (A cluster client replaces a connection
		// just after it starts, which Redis reports as tracking lost: links
		// read at that moment are rightly not cached. Only then may a user
		// be missing, and it is read again first.)
		for _, u := range uids {
			if c.GetLinkedInCache(ns, u, svc) != engine.NoPod {
				continue
			}
			if c.DegradedStats().TrackingLost == lost {
				t.Fatalf("%s placed but not cached, with tracking never lost", u)
			}
			if _, err := c.ComputeLinkedPod(ctx, ns, u, svc); err != nil {
				t.Fatal(err)
			}
		}
		st = begin(t, m)
		for _, u := range uids {
			if _, err := c.ComputeLinkedPod(ctx, ns, u, svc); err != nil {
				t.Fatal(err)
			}
		}
		st.want(0, "requests_total")
		st.want(10, "cache_hits_total")
		st.want(0, "cache_misses_total")
		// No round trip on a link (the pods' heartbeats and the client's
		// refreshes of their states go on meanwhile).
		after2 := exposed(t, m)
		n := obs.Delta(st.before, after2, obs.Prefix+"store_requests_total")
		for _, background := range []string{"GetServiceState", "PublishServiceState", "SetServiceState", "SetWorkloadState"} {
			n -= obs.Delta(st.before, after2, obs.Prefix+"store_requests_total", "op", background)
		}
		if n != 0 {
			t.Errorf("second pass: %v link round trips, want 0", n)
		}
		st.want(0, "placements_total")
		if real {
			// 3. Another process moves them: Redis tracks the placed links
			// for the client, which hears of every move and drops the entry.
			st = begin(t, m)
			for _, u := range uids {
				if _, err := servers[1].SetLinkedPod(ctx, ns, u, svc, 1); err != nil {
					t.Fatal(err)
				}
			}
			redistest.Poll(t, 5*time.Second, "ten invalidations", func() bool {
				return obs.Delta(st.before, exposed(t, m), obs.Prefix+"invalidations_total") >= 10
			})
			for _, u := range uids {
				if pod, err := c.ComputeLinkedPod(ctx, ns, u, svc); pod != 1 || err != nil {
					t.Fatalf("%s after the move = %d, %v; want pod 1", u, pod, err)
				}
			}
			st.want(10, "cache_misses_total")
		}
		if got := exposed(t, m).Sum(obs.Prefix + "cache_entries"); got != 10 {
			t.Errorf("cache_entries = %v, want 10", got)
		}
		if got := exposed(t, m).Sum(obs.Prefix + "cache_capacity"); got != 1000 {
			t.Errorf("cache_capacity = %v, want 1000", got)
		}

		// 4. A lookup without a link is not_found, not an error.
		st = begin(t, m)
		if pod, err := c.GetLinkedPodNotCache(ctx, ns, "nobody", svc); pod != engine.NoPod || err != nil {
			t.Fatalf("GetLinkedPodNotCache = %d, %v", pod, err)
		}
		st.want(1, "requests_total", append([]string{"op", "GetLinkedPodNotCache", "outcome", "not_found"}, svcLabels...)...)
		st.want(1, "store_requests_total", "op", "GetLinkedPod", "outcome", "ok")

		// 5. A bad uid is counted as such.
		st = begin(t, m)
		if _, err := c.ComputeLinkedPod(ctx, ns, "", svc); err == nil {
			t.Fatal("empty uid accepted")
		}
		st.want(1, "requests_total", append([]string{"op", "ComputeLinkedPod", "outcome", "invalid_argument"}, svcLabels...)...)

		// 6. A claim lost to another pod: outcome claimed, one conflict.
		st = begin(t, m)
		if _, err := servers[0].TrySetLinkedPod(ctx, ns, "claimed", svc, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := servers[1].TrySetLinkedPod(ctx, ns, "claimed", svc, 1); err == nil {
			t.Fatal("second claim won")
		}
		st.want(1, "requests_total", append([]string{"op", "TrySetLinkedPod", "outcome", "ok"}, svcLabels...)...)
		st.want(1, "requests_total", append([]string{"op", "TrySetLinkedPod", "outcome", "claimed"}, svcLabels...)...)
		st.want(1, "claim_conflicts_total", svcLabels...)

		// 7. A cached user whose pod shuts down: stale, relinked to pod 0.
		if _, err := c.SetLinkedPodIfAbsent(ctx, ns, "mover", svc, 1); err != nil {
			t.Fatal(err)
		}
		if err := c.SetCache(ctx, ns, "mover", svc, 1); err != nil {
			t.Fatal(err)
		}
		if err := servers[1].SetRoutingState(ctx, engine.Shutdown); err != nil {
			t.Fatal(err)
		}
		redistest.Poll(t, 5*time.Second, "pod 1 unroutable", func() bool { return !c.States().IsPodRoutable(ns, svc, 1) })
		st = begin(t, m)
		if pod, err := c.ComputeLinkedPod(ctx, ns, "mover", svc); pod != 0 || err != nil {
			t.Fatalf("mover = %d, %v; want pod 0", pod, err)
		}
		st.want(1, "cache_stale_total", svcLabels...)
		st.want(1, "relinks_total", svcLabels...)
		st.want(1, "placements_total", append([]string{"pod", "0"}, svcLabels...)...)
		st.want(1, "store_requests_total", "op", "ReplaceLinkedPod", "outcome", "ok")
		if real {
			// The relink's own write ends the tracking of the link the call
			// read: its invalidation is timed from the write.
			redistest.Poll(t, 5*time.Second, "the relink's invalidation timed", func() bool {
				return exposed(t, m).Sum(obs.Prefix+"invalidation_delay_seconds_count") >= 1
			})
		}

		// 8. Heartbeats and refreshes are health checks.
		redistest.Poll(t, 5*time.Second, "heartbeats and refreshes counted", func() bool {
			s := exposed(t, m)
			return s.Sum(obs.Prefix+"health_checks_total", "kind", "heartbeat", "outcome", "ok", "namespace", ns) >= 4 &&
				s.Sum(obs.Prefix+"health_checks_total", "kind", "refresh", "outcome", "ok", "namespace", ns) >= 2
		})
		if got := exposed(t, m).Sum(obs.Prefix+"heartbeat_failures_total", svcLabels...); got != 0 {
			t.Errorf("heartbeat_failures_total = %v, want 0", got)
		}

		// 9. An unparsable pod-state field is skipped and counted.
		hset := b.Client.B().Hset().Key(store.StateKey(ns, svc)).FieldValue().FieldValue("7", "garbage").Build()
		if err := b.Client.Do(ctx, hset).Error(); err != nil {
			t.Fatal(err)
		}
		redistest.Poll(t, 5*time.Second, "skipped field counted", func() bool {
			return exposed(t, m).Sum(obs.Prefix+"state_fields_skipped_total", svcLabels...) >= 1
		})
	})
}

// TestHeartbeatFailuresCounted: a server whose Redis is gone counts failed
// heartbeat rounds.
func TestHeartbeatFailuresCounted(t *testing.T) {
	b := redistest.Open(t, redistest.Embedded)
	m := obs.NewMetrics(nil)
	ns := redistest.Namespace(t)
	s, err := engine.NewServer(engine.ServerConfig{Store: store.New(b.Client), Namespace: ns, Service: svc,
		Timing: timing, MaxRequest: 100 * time.Millisecond, Drain: 200 * time.Millisecond, Observer: m})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(redistest.Ctx(t)); err != nil {
		t.Fatal(err)
	}
	b.Mini.Close()
	redistest.Poll(t, 5*time.Second, "failed heartbeats counted", func() bool {
		return exposed(t, m).Sum(obs.Prefix+"heartbeat_failures_total", "namespace", ns, "service", svc) >= 2
	})
	snap := exposed(t, m)
	if got := snap.Sum(obs.Prefix+"health_checks_total", "kind", "heartbeat", "outcome", "unavailable"); got < 2 {
		t.Errorf("heartbeats with outcome unavailable = %v, want ≥ 2", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.Stop(ctx) // the final publish fails: Redis is gone
}

// TestOldMonitorAPI: the old performance monitor's calls land in the same
// series.
func TestOldMonitorAPI(t *testing.T) {
	m := obs.NewMetrics(nil)
	m.RecordRequest("legacy", 3*time.Millisecond, true)
	m.RecordRequest("legacy", time.Millisecond, false)
	m.RecordCacheHit()
	m.RecordCacheHit()
	m.RecordCacheMiss()
	m.SetCacheSize(42)
	m.RecordLoadBalancerRequest("ns", "lobby", 20*time.Microsecond)
	m.RecordHealthCheck("ns", "lobby", time.Millisecond, false)
	if err := m.AddCustomMetric("queue_depth", func() float64 { return 7 }); err != nil {
		t.Fatal(err)
	}
	if err := m.AddCustomMetric("queue_depth", func() float64 { return 8 }); err == nil {
		t.Error("a second queue_depth was accepted")
	}
	if err := m.AddCustomMetric("bad name", func() float64 { return 0 }); err == nil {
		t.Error("a name with a space was accepted")
	}
	got := m.GetMetrics()
	for series, want := range map[string]float64{
		`stickyroute_requests_total{namespace="",service="",op="legacy",outcome="ok"}`:    1,
		`stickyroute_requests_total{namespace="",service="",op="legacy",outcome="error"}`: 1,
		`stickyroute_request_duration_seconds_count{namespace="",service="",op="legacy"}`: 2,
		`stickyroute_cache_hits_total`:   2,
		`stickyroute_cache_misses_total`: 1,
		`stickyroute_cache_entries`:      42,
		`stickyroute_balancer_picks_total{namespace="ns",service="lobby",strategy="custom"}`:            1,
		`stickyroute_health_checks_total{namespace="ns",service="lobby",kind="custom",outcome="error"}`: 1,
		`stickyroute_queue_depth`: 7,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v", series, got[series], want)
		}
	}
	if v, ok := got[`stickyroute_request_duration_seconds_sum{namespace="",service="",op="legacy"}`]; !ok || v < 0.0039 || v > 0.0041 {
		t.Errorf("duration sum = %v (present %v), want 0.004", v, ok)
	}
}

// TestLabelValuesEscaped: a quote in a name cannot break the exposition.
func TestLabelValuesEscaped(t *testing.T) {
	m := obs.NewMetrics(nil)
	m.RecordHealthCheck(`we"ird`, `back\slash`, time.Millisecond, true)
	s := exposed(t, m)
	smp := s.Samples(obs.Prefix+"health_checks_total", "namespace", `we"ird`, "service", `back\slash`)
	if len(smp) != 1 || smp[0].Value != 1 {
		t.Fatalf("samples = %+v, want one with value 1", smp)
	}
}

// quiet returns metrics that have seen traffic of every kind, on the
// embedded Redis, with the servers stopped and the client closed (but still
// watched) so that nothing moves any more.
func quiet(t *testing.T) (*obs.Metrics, *engine.Client) {
	t.Helper()
	b := redistest.Open(t, redistest.Embedded)
	ctx, ns := redistest.Ctx(t), redistest.Namespace(t)
	m := obs.NewMetrics(nil)
	srv, err := engine.NewServer(engine.ServerConfig{Store: store.New(b.Client), Namespace: ns, Service: svc,
		Timing: timing, MaxRequest: 100 * time.Millisecond, Drain: 200 * time.Millisecond, Observer: m})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := engine.NewClient(engine.ClientConfig{Store: store.New(b.Client), Timing: timing,
		Cache: engine.CacheConfig{MaxEntries: 100}, Observer: m})
	if err != nil {
		t.Fatal(err)
	}
	m.Watch(c)
	for i := range 20 {
		if _, err := c.ComputeLinkedPod(ctx, ns, "u"+strconv.Itoa(i%10), svc); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.GetLinkedPodNotCache(ctx, ns, "nobody", svc); err != nil {
		t.Fatal(err)
	}
	m.RecordHealthCheck(`we"ird`, "back\\slash\n", 1500*time.Microsecond, false)
	m.RecordLoadBalancerRequest(ns, "other", 30*time.Microsecond)
	if err := m.AddCustomMetric("ratio", func() float64 { return 0.25 }); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()
	return m, c
}

// TestSnapshotMatchesText: the snapshot, read from the metrics, holds
// exactly the series and values of the Prometheus text, parsed back.
func TestSnapshotMatchesText(t *testing.T) {
	m, c := quiet(t)
	same := func(when string) {
		t.Helper()
		got, want := m.Snapshot(), exposed(t, m)
		for k, v := range want.Values {
			if g, ok := got.Values[k]; !ok || g != v {
				t.Errorf("%s: %s = %v (present %v) in the snapshot, %v in the text", when, k, g, ok, v)
			}
		}
		for k, v := range got.Values {
			if _, ok := want.Values[k]; !ok {
				t.Errorf("%s: %s = %v in the snapshot only", when, k, v)
			}
		}
		if n := len(want.Values); n < 100 {
			t.Errorf("%s: %d series, want a Metrics that has seen traffic", when, n)
		}
	}
	same("watched")
	m.Unwatch(c)
	same("unwatched")
}

// TestWatch: the cache metrics read the watched clients; an unwatched
// client's counts stay in the totals and its entries leave the gauges.
func TestWatch(t *testing.T) {
	m, c := quiet(t)
	st := c.CacheStats()
	if st.Hits != 10 || st.Misses != 10 || st.Size != 10 {
		t.Fatalf("client cache %+v, want 10 hits, 10 misses, 10 entries", st)
	}
	check := func(when string, entries, capacity float64) {
		t.Helper()
		s := m.Snapshot()
		for name, want := range map[string]float64{"cache_hits_total": 10, "cache_misses_total": 10,
			"cache_entries": entries, "cache_capacity": capacity} {
			if got := s.Sum(obs.Prefix + name); got != want {
				t.Errorf("%s: %s = %v, want %v", when, name, got, want)
			}
		}
	}
	check("closed, watched", 10, 100)
	m.Watch(c) // once only
	check("watched twice", 10, 100)
	m.Unwatch(c)
	check("unwatched", 0, 0)
	m.Unwatch(c) // no-op
	check("unwatched twice", 0, 0)
}

// TestTrackingMetrics: on the real servers the tracking series show the
// links the watched client caches and every node's table as it last read
// it, and the analyzer finds nothing to report on tables far from full.
func TestTrackingMetrics(t *testing.T) {
	for _, name := range redistest.Real {
		t.Run(name, func(t *testing.T) {
			ctx := redistest.Ctx(t)
			ns := redistest.Namespace(t)
			st, err := store.Dial(store.DialConfig{Addrs: redistest.Addrs(t, name)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(st.Close)
			for pod := range 2 {
				if _, err := st.SetServiceState(ctx, ns, svc, pod, 0, store.Ready); err != nil {
					t.Fatal(err)
				}
			}
			c, err := engine.NewClient(engine.ClientConfig{Store: st, Timing: engine.Timing{Heartbeat: time.Minute},
				Cache: engine.CacheConfig{TrackingCheck: -1}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			m := obs.NewMetrics(metrics.NewSet())
			m.Watch(c)
			for i := range 20 {
				if _, err := c.ComputeLinkedPod(ctx, ns, "u"+strconv.Itoa(i), svc); err != nil {
					t.Fatal(err)
				}
			}
			// The cache only loses entries from here on (an invalidation: the
			// cluster is shared with tests that move slots), so the series
			// lies between the sizes read before and after it.
			before := c.CacheStats().Size
			s := exposed(t, m)
			after := c.CacheStats().Size
			if links := s.Sum(obs.Prefix + "tracking_links"); links < float64(after) || links > float64(before) || before == 0 ||
				len(s.Samples(obs.Prefix+"tracking_table_keys")) != 0 {
				t.Fatalf("before any read: links %v (cache held %d then %d), tables %v; want the cache's links and no table",
					links, before, after, s.Samples(obs.Prefix+"tracking_table_keys"))
			}
			tr, err := c.CheckTracking(ctx)
			if err != nil {
				t.Fatal(err)
			}
			s = exposed(t, m)
			if len(s.Samples(obs.Prefix+"tracking_table_fill")) != len(tr.Tables) {
				t.Errorf("fill series %v, want one per table %+v", s.Samples(obs.Prefix+"tracking_table_fill"), tr.Tables)
			}
			for _, tt := range tr.Tables {
				for series, want := range map[string]float64{"tracking_table_keys": float64(tt.Keys),
					"tracking_table_max_keys": float64(tt.MaxKeys), "tracking_table_fill": tt.Fill()} {
					if got := s.Sum(obs.Prefix+series, "node", tt.Addr); got != want {
						t.Errorf("%s{node=%q} = %v, want %v", series, tt.Addr, got, want)
					}
				}
			}
			a := obs.NewAnalyzer(nil, obs.AnalyzerConfig{})
			a.AddMetrics(s)
			findings, err := a.Analyze(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range findings {
				if f.Rule == "tracking_table_full" {
					t.Errorf("finding on tables far from full: %+v", f)
				}
			}
		})
	}
}
