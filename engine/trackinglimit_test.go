package engine_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redisproc"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/obs"
	"github.com/stickyroute/stickyroute/store"
)

// TestTrackingTableLimit: a redis-server of the test's own keeps at most
// 10,000 tracked keys, and one client caches 50,000 links, read by
// BatchGetLinkedPod. In the default mode Redis invalidates keys to stay
// within its table, so the client's second pass finds most of them gone,
// and the analyzer reports the full table. In broadcast mode Redis tracks
// the namespace's prefix, not keys: the second pass hits at least 95%.
// Then a writer moves 10,000 links at the same rate in both modes, and the
// invalidations the client receives are counted.
func TestTrackingTableLimit(t *testing.T) {
	const (
		tableKeys = 10000
		links     = 50000
		chunk     = 5000
		moves     = 10000
		ns        = "limit"
	)
	srv := redisproc.Start(t, "--tracking-table-max-keys", strconv.Itoa(tableKeys))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	raw, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	uids := make([]string, links)
	for i := range uids {
		uids[i] = "u" + strconv.Itoa(i)
	}
	// set writes every link of uids[from:to] to pod, in pipelined SETs (the
	// value of a link key is the pod's number).
	set := func(from, to, pod int) {
		t.Helper()
		cmds := make(rueidis.Commands, 0, to-from)
		for _, uid := range uids[from:to] {
			cmds = append(cmds, raw.B().Set().Key(store.LinkKey(ns, uid, svc)).Value(strconv.Itoa(pod)).Build())
		}
		for _, r := range raw.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for from := 0; from < links; from += chunk {
		set(from, from+chunk, 1)
	}
	if _, err := store.New(raw).SetLinkedPod(ctx, ns, "barrier", svc, 1, store.Persistent); err != nil {
		t.Fatal(err)
	}

	hits := map[bool]int{}
	for _, broadcast := range []bool{false, true} {
		mode := "keys"
		if broadcast {
			mode = "broadcast"
		}
		t.Run(mode, func(t *testing.T) {
			st, err := store.Dial(store.DialConfig{Addrs: []string{srv.Addr}, Broadcast: broadcast,
				BroadcastNamespaces: map[bool][]string{true: {ns}}[broadcast]})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var delivered atomic.Int64
			defer st.Tracker().Subscribe(func(l []store.Link) { delivered.Add(int64(len(l))) })()
			c, err := engine.NewClient(engine.ClientConfig{Store: st, Timing: testTiming, TempLinkTTL: time.Hour,
				Cache: engine.CacheConfig{TTL: 30 * time.Minute, TrackingCheck: -1}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// barrier returns once every invalidation Redis sent before it
			// has been handled: a tracked read on the connection they come by,
			// whose reply follows them.
			barrier := func() {
				t.Helper()
				if l, err := st.GetLinkedPodTracked(ctx, ns, "barrier", svc, time.Minute); err != nil || l.Pod != 1 {
					t.Fatalf("barrier read: %+v, %v", l, err)
				}
			}
			for from := 0; from < links; from += chunk {
				groups, err := c.BatchGetLinkedPod(ctx, ns, uids[from:from+chunk], svc)
				if err != nil || len(groups[1]) != chunk {
					t.Fatalf("first pass, uids %d..: %d on pod 1, %v; want %d", from, len(groups[1]), err, chunk)
				}
			}
			// Redis trims its table to the limit a little before each
			// command it runs (more effort each time it is still over), so
			// right after the first pass it may track more keys than the
			// limit, their invalidations not sent yet (a busy machine, fewer
			// background commands: 10,172 hits). Commands until it is
			// within, then the barrier for the invalidations that took.
			redistest.Poll(t, 10*time.Second, "Redis's tracking table within its limit", func() bool {
				tr, err := c.CheckTracking(ctx)
				return err == nil && len(tr.Tables) == 1 && tr.Tables[0].Keys <= tableKeys
			})
			barrier()
			firstPass := c.CacheStats().Invalidations
			for _, uid := range uids {
				if c.GetLinkedInCache(ns, uid, svc) == 1 {
					hits[broadcast]++
				}
			}
			tr, err := c.CheckTracking(ctx)
			if err != nil {
				t.Fatal(err)
			}
			m := obs.NewMetrics(metrics.NewSet())
			m.Watch(c)
			a := obs.NewAnalyzer(m.Snapshot, obs.AnalyzerConfig{})
			a.Collect()
			findings, err := a.Analyze(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var warned []obs.Finding
			for _, f := range findings {
				if f.Rule == "tracking_table_full" {
					warned = append(warned, f)
				}
			}

			// The same 10,000 moves in both modes.
			before := delivered.Load()
			start := time.Now()
			for from := 0; from < moves; from += 1000 {
				set(from, from+1000, 2)
			}
			barrier()
			got := delivered.Load() - before
			defer func() {
				for from := 0; from < moves; from += 1000 {
					set(from, from+1000, 1) // back, for the next mode
				}
			}()
			t.Logf("TRACKING-LIMIT | %s | table %d keys, %d links cached | second pass %d/%d hits (%.1f%%) | "+
				"first pass invalidations %d | tables %+v fill %.2f | analyzer %d finding(s) | "+
				"%d link moves in %v: %d invalidations delivered",
				mode, tableKeys, links, hits[broadcast], links, 100*float64(hits[broadcast])/links,
				firstPass, tr.Tables, tr.Fill(), len(warned), moves, time.Since(start).Round(time.Millisecond), got)
			for _, f := range warned {
				t.Logf("  %s: %s", f.Severity, f.Summary)
			}
			if broadcast {
				if hits[true] < links*95/100 {
					t.Errorf("broadcast: %d of %d hits on the second pass, want at least 95%%", hits[true], links)
				}
				if len(warned) != 0 {
					t.Errorf("broadcast: the analyzer warned of a tracking table Redis does not fill: %+v", warned)
				}
				if got < moves {
					t.Errorf("broadcast: %d invalidations for %d moves, want every move", got, moves)
				}
				return
			}
			if tr.Fill() < 1 || len(warned) != 1 || warned[0].Severity != obs.Critical {
				t.Errorf("keys: fill %.2f, findings %+v; want a full table reported critical", tr.Fill(), warned)
			}
			if hits[false] > tableKeys {
				t.Errorf("keys: %d hits, more than the %d keys Redis can track", hits[false], tableKeys)
			}
		})
	}
}
