package obs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/obs"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// series is a crafted snapshot's content: series name → value.
type series map[string]float64

// hist adds to s the cumulative _bucket, _count and _sum series of
// histogram name with labels (a rendered label list without braces, may be
// empty) holding n observations of each value in obs.
func (s series) hist(name, labels string, observations map[float64]int) series {
	sep := ""
	if labels != "" {
		sep = ","
	}
	total, sum := 0, 0.0
	for _, le := range obs.LatencyBuckets {
		for v, n := range observations {
			if v <= le && (le == obs.LatencyBuckets[0] || v > prevBound(le)) {
				total += n
				sum += v * float64(n)
			}
		}
		s[name+"_bucket{"+labels+sep+`le="`+strconv.FormatFloat(le, 'g', -1, 64)+`"}`] = float64(total)
	}
	for v, n := range observations {
		if v > obs.LatencyBuckets[len(obs.LatencyBuckets)-1] {
			total += n
			sum += v * float64(n)
		}
	}
	s[name+"_bucket{"+labels+sep+`le="+Inf"}`] = float64(total)
	if labels != "" {
		labels = "{" + labels + "}"
	}
	s[name+"_count"+labels] = float64(total)
	s[name+"_sum"+labels] = sum
	return s
}

func prevBound(le float64) float64 {
	for i, b := range obs.LatencyBuckets {
		if b == le && i > 0 {
			return obs.LatencyBuckets[i-1]
		}
	}
	return 0
}

// add returns the sum of several crafted contents (for cumulative counters).
func add(parts ...series) series {
	out := series{}
	for _, p := range parts {
		for k, v := range p {
			out[k] += v
		}
	}
	return out
}

// history builds snapshots 10 s apart.
func history(contents ...series) obs.History {
	h := make(obs.History, len(contents))
	for i, c := range contents {
		h[i] = obs.Snapshot{Time: t0.Add(time.Duration(i) * 10 * time.Second), Values: c}
	}
	return h
}

// analyze runs a fresh analyzer (default bounds) over h and returns the
// findings of rule.
func analyze(t *testing.T, h obs.History, rule string) []obs.Finding {
	t.Helper()
	a := obs.NewAnalyzer(nil, obs.AnalyzerConfig{})
	for _, s := range h {
		a.AddMetrics(s)
	}
	all, err := a.Analyze(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []obs.Finding
	for _, f := range all {
		if f.Rule == rule {
			out = append(out, f)
		}
	}
	return out
}

func TestRuleCacheHitRatio(t *testing.T) {
	zero := series{"stickyroute_cache_hits_total": 0, "stickyroute_cache_misses_total": 0}
	full := series{"stickyroute_cache_hits_total": 500, "stickyroute_cache_misses_total": 1500,
		"stickyroute_cache_entries": 1000, "stickyroute_cache_capacity": 1000,
		`stickyroute_cache_evictions_total{reason="capacity"}`: 1200}
	f := analyze(t, history(zero, full), "cache_hit_ratio")
	if len(f) != 1 || f[0].Severity != obs.Critical || f[0].Evidence["hit_ratio"] != 0.25 ||
		!strings.Contains(f[0].Suggestion, "MaxEntries") {
		t.Fatalf("full cache: %+v", f)
	}
	expiring := series{"stickyroute_cache_hits_total": 1400, "stickyroute_cache_misses_total": 600,
		"stickyroute_cache_entries": 10, "stickyroute_cache_capacity": 1000,
		`stickyroute_cache_evictions_total{reason="expired"}`: 550}
	f = analyze(t, history(zero, expiring), "cache_hit_ratio")
	if len(f) != 1 || f[0].Severity != obs.Warning || !strings.Contains(f[0].Suggestion, "Cache.TTL") {
		t.Fatalf("expiring cache: %+v", f)
	}
	good := series{"stickyroute_cache_hits_total": 1900, "stickyroute_cache_misses_total": 100}
	few := series{"stickyroute_cache_hits_total": 10, "stickyroute_cache_misses_total": 90}
	for name, cur := range map[string]series{"good ratio": good, "too few lookups": few} {
		if f := analyze(t, history(zero, cur), "cache_hit_ratio"); len(f) != 0 {
			t.Errorf("%s: %+v", name, f)
		}
	}
	if f := analyze(t, history(full), "cache_hit_ratio"); len(f) != 0 {
		t.Errorf("one snapshot: %+v", f)
	}
}

func TestRuleP99(t *testing.T) {
	const name, labels = "stickyroute_request_duration_seconds", `namespace="ns",service="game",op="ComputeLinkedPod"`
	empty := series{}.hist(name, labels, nil)
	slow := series{}.hist(name, labels, map[float64]int{0.0001: 195, 0.04: 5})
	f := analyze(t, history(empty, slow), "p99_latency")
	if len(f) != 1 || f[0].Severity != obs.Critical || f[0].Subject != "ns/game op=ComputeLinkedPod" || f[0].Evidence["calls"] != 200 {
		t.Fatalf("slow: %+v", f)
	}
	if p := f[0].Evidence["p99_seconds"]; p <= 0.025 || p > 0.05 {
		t.Errorf("p99 %v outside the (25ms, 50ms] bucket", p)
	}
	fast := series{}.hist(name, labels, map[float64]int{0.0001: 200})
	if f := analyze(t, history(empty, fast), "p99_latency"); len(f) != 0 {
		t.Errorf("fast: %+v", f)
	}
	// Slow calls long ago, fast ones in the window: judged on the window.
	before := series{}.hist(name, labels, map[float64]int{0.04: 100})
	after := add(before, series{}.hist(name, labels, map[float64]int{0.0001: 500}))
	if f := analyze(t, history(before, after), "p99_latency"); len(f) != 0 {
		t.Errorf("old slowness counted: %+v", f)
	}
}

func TestRuleSkew(t *testing.T) {
	placements := func(p0, p1, p2 float64) series {
		s := series{}
		for pod, n := range []float64{p0, p1, p2} {
			s[`stickyroute_placements_total{namespace="ns",service="game",pod="`+strconv.Itoa(pod)+`"}`] = n
		}
		return s
	}
	f := analyze(t, history(placements(0, 0, 0), placements(300, 50, 50)), "placement_skew")
	if len(f) != 1 || f[0].Subject != "ns/game" || f[0].Evidence["skew"] != 2.25 || !strings.Contains(f[0].Summary, "pod 0 took 300 of 400") {
		t.Fatalf("skewed: %+v", f)
	}
	if f := analyze(t, history(placements(0, 0, 0), placements(130, 135, 135)), "placement_skew"); len(f) != 0 {
		t.Errorf("even: %+v", f)
	}
	// Skewed before the window's start does not count.
	if f := analyze(t, history(placements(1000, 0, 0), placements(1100, 100, 100)), "placement_skew"); len(f) != 0 {
		t.Errorf("old skew counted: %+v", f)
	}
}

func TestRuleStoreErrorsRising(t *testing.T) {
	rt := func(ok, unavailable float64) series {
		return series{`stickyroute_store_requests_total{op="GetLinkedPodTracked",outcome="ok"}`: ok,
			`stickyroute_store_requests_total{op="GetLinkedPodTracked",outcome="unavailable"}`: unavailable,
			`stickyroute_store_requests_total{op="GetLinkedPodTracked",outcome="canceled"}`:    0}
	}
	f := analyze(t, history(rt(0, 0), rt(1000, 0), rt(1900, 100)), "store_errors_rising")
	if len(f) != 1 || f[0].Severity != obs.Warning || f[0].Evidence["recent_error_ratio"] != 0.1 || f[0].Evidence["errors_unavailable"] != 100 {
		t.Fatalf("rising: %+v", f)
	}
	f = analyze(t, history(rt(0, 0), rt(1000, 0), rt(1500, 500)), "store_errors_rising")
	if len(f) != 1 || f[0].Severity != obs.Critical {
		t.Fatalf("half failing: %+v", f)
	}
	if f := analyze(t, history(rt(0, 0), rt(995, 5), rt(1990, 10)), "store_errors_rising"); len(f) != 0 {
		t.Errorf("steady 0.5%%: %+v", f)
	}
	if f := analyze(t, history(rt(0, 0), rt(800, 200), rt(1700, 300)), "store_errors_rising"); len(f) != 0 {
		t.Errorf("falling: %+v", f)
	}
}

func TestRuleHeartbeats(t *testing.T) {
	hb := func(failed, ok float64) series {
		return series{`stickyroute_heartbeat_failures_total{namespace="ns",service="game"}`: failed,
			`stickyroute_health_checks_total{namespace="ns",service="game",kind="heartbeat",outcome="ok"}`: ok}
	}
	f := analyze(t, history(hb(0, 50), hb(3, 50)), "heartbeats_failing")
	if len(f) != 1 || f[0].Severity != obs.Critical || f[0].Evidence["failed_heartbeats"] != 3 {
		t.Fatalf("all failing: %+v", f)
	}
	f = analyze(t, history(hb(0, 50), hb(1, 60)), "heartbeats_failing")
	if len(f) != 1 || f[0].Severity != obs.Warning {
		t.Fatalf("one failing: %+v", f)
	}
	if f := analyze(t, history(hb(2, 50), hb(2, 60)), "heartbeats_failing"); len(f) != 0 {
		t.Errorf("healthy: %+v", f)
	}
}

func TestRuleInvalidationDelay(t *testing.T) {
	const name = "stickyroute_invalidation_delay_seconds"
	h0 := series{}.hist(name, "", nil)
	h1 := series{}.hist(name, "", map[float64]int{0.0008: 100})
	slow := add(h1, series{}.hist(name, "", map[float64]int{0.0008: 50, 0.09: 50}))
	f := analyze(t, history(h0, h1, slow), "invalidation_delay")
	if len(f) != 1 || f[0].Evidence["recent_p99_seconds"] <= 0.05 || f[0].Evidence["earlier_p99_seconds"] > 0.001 {
		t.Fatalf("lagging: %+v", f)
	}
	// Rising from 0.5 ms to 8 ms: below the bound but more than doubled.
	rising := add(h1, series{}.hist(name, "", map[float64]int{0.008: 100}))
	if f := analyze(t, history(h0, h1, rising), "invalidation_delay"); len(f) != 1 || f[0].Severity != obs.Warning {
		t.Fatalf("rising: %+v", f)
	}
	steady := add(h1, series{}.hist(name, "", map[float64]int{0.0008: 100}))
	if f := analyze(t, history(h0, h1, steady), "invalidation_delay"); len(f) != 0 {
		t.Errorf("steady: %+v", f)
	}
}

func TestRuleSkippedFields(t *testing.T) {
	sk := func(n float64) series {
		return series{`stickyroute_state_fields_skipped_total{namespace="ns",service="game"}`: n}
	}
	if f := analyze(t, history(sk(1), sk(3)), "state_fields_skipped"); len(f) != 1 || f[0].Evidence["skipped_fields"] != 2 {
		t.Fatalf("skipped: %+v", f)
	}
	if f := analyze(t, history(sk(3), sk(3)), "state_fields_skipped"); len(f) != 0 {
		t.Errorf("none new: %+v", f)
	}
}

func TestQuantile(t *testing.T) {
	const name = "h"
	cur := obs.Snapshot{Values: series{}.hist(name, "", map[float64]int{0.0001: 90, 0.002: 10})}
	p50, n := obs.Quantile(obs.Snapshot{}, cur, name, 0.5)
	if n != 100 || p50 <= 0.00005 || p50 > 0.0001 {
		t.Errorf("p50 = %v over %v", p50, n)
	}
	p99, _ := obs.Quantile(obs.Snapshot{}, cur, name, 0.99)
	if p99 <= 0.001 || p99 > 0.0025 {
		t.Errorf("p99 = %v", p99)
	}
	if v, n := obs.Quantile(cur, cur, name, 0.99); n != 0 || !math.IsNaN(v) {
		t.Errorf("no observations: %v over %v", v, n)
	}
}

// TestReportCountsCachedCalls: the report's requests are every call, those
// the cache answered (which the Observer never sees) and those it saw.
func TestReportCountsCachedCalls(t *testing.T) {
	a := obs.NewAnalyzer(nil, obs.AnalyzerConfig{})
	calls := func(hits, misses, observed float64) series {
		return series{"stickyroute_cache_hits_total": hits, "stickyroute_cache_misses_total": misses,
			`stickyroute_requests_total{namespace="ns",service="game",op="ComputeLinkedPod",outcome="ok"}`: observed}
	}
	for _, s := range history(calls(0, 0, 0), calls(900, 100, 100)) {
		a.AddMetrics(s)
	}
	rep, err := a.GenerateReport(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.Summary["requests"]; got != 1000 {
		t.Errorf("requests %v, want 1000: 900 cache hits and 100 calls that went to Redis", got)
	}
	if got := rep.Summary["requests_per_second"]; got != 100 {
		t.Errorf("requests_per_second %v, want 1000 over the 10 s window", got)
	}
}

// TestReportAndCustomRule: a user's rule runs with the built-in ones; the
// report reads as text and as JSON.
func TestReportAndCustomRule(t *testing.T) {
	a := obs.NewAnalyzer(nil, obs.AnalyzerConfig{Keep: 3})
	a.AddRule(obs.Rule{Name: "queue_full", Check: func(h obs.History) []obs.Finding {
		if _, cur, ok := h.Window(); ok && cur.Values["stickyroute_queue_depth"] > 100 {
			return []obs.Finding{{Severity: obs.Info, Summary: "queue is deep",
				Evidence: map[string]float64{"depth": cur.Values["stickyroute_queue_depth"]}, Suggestion: "add workers"}}
		}
		return nil
	}})
	hb := func(failed, depth float64) series {
		return series{`stickyroute_heartbeat_failures_total{namespace="ns",service="game"}`: failed, "stickyroute_queue_depth": depth}
	}
	for _, s := range history(hb(0, 0), hb(0, 0), hb(0, 10), hb(2, 500)) {
		a.AddMetrics(s)
	}
	if n := len(a.History()); n != 3 {
		t.Fatalf("history holds %d snapshots, want Keep = 3", n)
	}
	rep, err := a.GenerateReport(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 2 || rep.Findings[0].Rule != "heartbeats_failing" || rep.Findings[1].Rule != "queue_full" {
		t.Fatalf("findings %+v, want heartbeats (critical) then queue_full (info)", rep.Findings)
	}
	if !rep.From.Equal(t0.Add(10*time.Second)) || !rep.To.Equal(t0.Add(30*time.Second)) || rep.Snapshots != 3 {
		t.Errorf("window %v..%v over %d", rep.From, rep.To, rep.Snapshots)
	}
	if len(rep.Suggestions) != 2 || rep.Suggestions[1] != "add workers" {
		t.Errorf("suggestions %q", rep.Suggestions)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[CRITICAL] heartbeats_failing (ns/game): 2 heartbeat rounds failed", "[INFO] queue_full: queue is deep", "depth = 500", "→ add workers"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	js, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Findings []struct {
			Rule, Severity string
			Evidence       map[string]float64
		}
	}
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Findings) != 2 || back.Findings[0].Severity != "critical" || back.Findings[1].Evidence["depth"] != 500 {
		t.Errorf("JSON findings %+v", back.Findings)
	}
	var typed obs.Report
	if err := json.Unmarshal(js, &typed); err != nil || typed.Findings[0].Severity != obs.Critical || typed.Findings[1].Severity != obs.Info {
		t.Errorf("JSON read back: %v %+v", err, typed.Findings)
	}
	var bad obs.Severity
	if err := bad.UnmarshalText([]byte("dire")); err == nil {
		t.Error("unknown severity accepted")
	}
}

// TestAnalyzerRunsInBackground: Run snapshots the metrics every Interval
// until its context ends.
func TestAnalyzerRunsInBackground(t *testing.T) {
	m := obs.NewMetrics(nil)
	a := obs.NewAnalyzer(m.Snapshot, obs.AnalyzerConfig{Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	m.RecordCacheMiss()
	redistest.Poll(t, 10*time.Second, "three snapshots", func() bool { return len(a.History()) >= 3 })
	cancel()
	<-done
	h := a.History()
	if _, ok := h[len(h)-1].Values["stickyroute_cache_misses_total"]; !ok {
		t.Errorf("snapshot lacks the cache metrics: %v", h[len(h)-1].Values)
	}
}

func TestHandler(t *testing.T) {
	m := obs.NewMetrics(nil)
	m.RecordCacheHit()
	a := obs.NewAnalyzer(m.Snapshot, obs.AnalyzerConfig{})
	a.Collect()
	a.Collect()
	srv := httptest.NewServer(obs.Handler(m, a))
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "stickyroute_cache_hits_total 1\n") {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	if code, body := get("/report"); code != 200 || !strings.Contains(body, "no findings") {
		t.Errorf("/report: %d\n%s", code, body)
	}
	code, body := get("/report.json")
	var rep obs.Report
	if err := json.Unmarshal([]byte(body), &rep); code != 200 || err != nil || rep.Snapshots != 2 || rep.Findings == nil {
		t.Errorf("/report.json: %d %v %+v", code, err, rep)
	}
	only := httptest.NewServer(obs.Handler(m, nil))
	defer only.Close()
	resp, err := http.Get(only.URL + "/report")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/report without an analyzer: %d", resp.StatusCode)
	}
}

func TestRuleTrackingTable(t *testing.T) {
	node := func(addr string, keys, max float64) series {
		l := `{node="` + addr + `"}`
		return series{
			"stickyroute_tracking_links":              keys / 2,
			"stickyroute_tracking_table_keys" + l:     keys,
			"stickyroute_tracking_table_max_keys" + l: max,
			"stickyroute_tracking_table_fill" + l:     keys / max,
		}
	}
	for _, c := range []struct {
		keys float64
		want []obs.Severity
	}{
		{500, nil},
		{799, nil},
		{800, []obs.Severity{obs.Warning}},
		{999, []obs.Severity{obs.Warning}},
		{1000, []obs.Severity{obs.Critical}},
	} {
		f := analyze(t, history(node("10.0.0.1:6379", c.keys, 1000)), "tracking_table_full")
		var got []obs.Severity
		for _, x := range f {
			got = append(got, x.Severity)
			if x.Evidence["keys"] != c.keys || x.Evidence["max_keys"] != 1000 || !strings.Contains(x.Summary, "10.0.0.1:6379") {
				t.Errorf("%v keys: finding %+v", c.keys, x)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%v of 1000 keys tracked: findings %v, want %v", c.keys, got, c.want)
		}
	}
	// One finding per full node.
	two := add(node("a:1", 900, 1000), node("b:1", 1000, 1000))
	if f := analyze(t, history(two), "tracking_table_full"); len(f) != 2 {
		t.Errorf("two full nodes: %+v", f)
	}
}
