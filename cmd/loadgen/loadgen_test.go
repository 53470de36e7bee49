package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stickyroute/stickyroute/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, redistest.LeakOptions()...) }

// quick is a short run of scenario on the named backend with fast timing.
func quick(t *testing.T, backend, scenario string) Config {
	c := defaults()
	c.Namespace = redistest.Namespace(t)
	c.Scenario = scenario
	c.Pods, c.Clients, c.Users = 3, 2, 2000
	c.Rate, c.Workers = 400, 64
	c.Duration, c.Warmup = 3*time.Second, 500*time.Millisecond
	c.Session = 3 * time.Second
	c.Heartbeat, c.Staleness, c.Refresh = 200*time.Millisecond, time.Second, 200*time.Millisecond
	c.StormUsers, c.BlipFor = 200, 600*time.Millisecond
	// Five staleness windows per operation: the scenarios judge the
	// library, and a machine starved by a CPU burner beside -race stalled
	// a whole run for 2 s once (the steady scenario's routes and releases
	// timed out at the 2 s default while the pods' own heartbeats to the
	// same Redis failed too). A hang still fails.
	c.OpTimeout = 5 * c.Staleness
	c.Quiet = true
	if backend == redistest.Standalone {
		c.Redis = redistest.Addrs(t, redistest.Standalone)[0]
	}
	if scenario == Drain || scenario == Crash {
		c.Duration = 4 * time.Second
	}
	if scenario == Ramp {
		c.Rate, c.RampFactor, c.RampStep, c.RampMax, c.SLO = 100, 2, 500*time.Millisecond, 800, 100*time.Millisecond
	}
	if err := c.check(); err != nil {
		t.Fatal(err)
	}
	return c
}

// backends are the Redis servers the scenarios run on.
var backends = []string{redistest.Embedded, redistest.Standalone}

// allowed lists the error classes a scenario may see; any other fails it.
var allowed = map[string]map[string]bool{
	// The embedded Redis, under the race detector beside a CPU burner,
	// answers some placements after the operations' deadline: slow, not
	// unavailable (which is never allowed in a storm).
	Storm: {"timeout": true},
	Blip:  {"unavailable": true, "timeout": true, "no_available_pod": true},
	Crash: {"pod_down": true},
	// Requests that reached the pod as it shut down, and new sessions of
	// users whose link lapsed while a client still had them cached (the
	// draining pod refuses them).
	Drain: {"pod_down": true, "draining": true},
}

func TestScenarios(t *testing.T) {
	for _, backend := range backends {
		for _, scenario := range Scenarios {
			t.Run(backend+"/"+scenario, func(t *testing.T) {
				cfg := quick(t, backend, scenario)
				r, err := run(redistest.Ctx(t), cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				var table bytes.Buffer
				if err := r.WriteTable(&table); err != nil {
					t.Fatal(err)
				}
				t.Logf("\n%s", table.String())
				check(t, cfg, r)
			})
		}
	}
}

// check asserts the invariants and the scenario's own figures.
func check(t *testing.T, cfg Config, r *Report) {
	t.Helper()
	if n := r.Invariants.Total(); n != 0 {
		t.Errorf("%d invariant violations: %+v", n, r.Invariants)
	}
	if r.Ops[opRoute].Count == 0 || r.Ops[opClaim].Count == 0 {
		t.Errorf("too little work measured: %+v", r.Ops)
	}
	for class, n := range r.Errors {
		if !allowed[cfg.Scenario][class] {
			t.Errorf("%d errors of class %s", n, class)
		}
	}
	// The timeline is cut every second. A ramp whose first step misses
	// (on a busy machine) ends after its warm-up and one step, about a
	// second: one sample (seen beside stress-ng: "timeline 1").
	minTimeline := 2
	if cfg.Scenario == Ramp && r.Ramp != nil && len(r.Ramp.Steps) == 1 && !r.Ramp.Steps[0].Held {
		minTimeline = 1
	}
	if len(r.Timeline) < minTimeline || r.Backend == "" || r.Schema != SchemaVersion {
		t.Errorf("report header: backend %q schema %d timeline %d", r.Backend, r.Schema, len(r.Timeline))
	}
	switch cfg.Scenario {
	case Steady:
		if r.CacheHitRatio < 0.5 {
			t.Errorf("cache hit ratio %.2f: the mix is 90%% requests of users in session", r.CacheHitRatio)
		}
	case Drain:
		d := r.Drain
		if d == nil || !d.Respected || d.PlacedAfterDeny != 0 || !(d.ShutdownAt > d.DenyAt) || d.ServedDuringDrain == 0 {
			t.Errorf("drain not respected: %+v", d)
		}
	case Crash:
		c := r.Crash
		if c == nil || !c.Detected || !c.Within {
			t.Errorf("crash not detected within the staleness window: %+v", c)
		}
	case Blip:
		b := r.Blip
		if b == nil || !b.Recovered || b.RecoveredAfterMS > 5000 {
			t.Errorf("no recovery after the blip: %+v", b)
		}
	case Storm:
		s := r.Storm
		if s == nil || s.Latency.Count != int64(cfg.StormUsers) || s.Latency.Errors != 0 {
			t.Fatalf("storm: %+v; errors %v", s, r.Errors)
		}
		var placed int64
		for _, n := range s.Placements {
			placed += n
		}
		if placed != int64(cfg.StormUsers) || s.Skew > 2 {
			t.Errorf("storm placed %d of %d users, skew %.2f: %v", placed, cfg.StormUsers, s.Skew, s.Placements)
		}
	case Ramp:
		// The capacity found is the machine's (a busy one misses the first
		// step's rate): what is checked is that each step is judged by its
		// own figures, the ramp stops at the first miss, and the capacity is
		// the last rate that held.
		rp := r.Ramp
		if rp == nil || len(rp.Steps) == 0 {
			t.Fatalf("ramp: %+v", rp)
		}
		capacity := 0.0
		for i, st := range rp.Steps {
			held := st.P99 <= rp.SLOUS && st.Errors == 0 && st.Achieved >= 0.95*st.Rate
			if st.Held != held || st.Achieved <= 0 {
				t.Errorf("ramp step %d judged held=%v from %+v (SLO %vµs)", i, st.Held, st, rp.SLOUS)
			}
			if !st.Held && i != len(rp.Steps)-1 {
				t.Errorf("ramp went on after step %d missed: %+v", i, rp.Steps)
			}
			if st.Held {
				capacity = st.Rate
			}
		}
		if last := rp.Steps[len(rp.Steps)-1]; last.Held && last.Rate*cfg.RampFactor <= cfg.RampMax {
			t.Errorf("ramp stopped after a step that held, below the ramp's maximum: %+v", rp.Steps)
		}
		if rp.Capacity != capacity {
			t.Errorf("ramp capacity %v, want %v (the last rate that held)", rp.Capacity, capacity)
		}
	}
}

// TestCommandWritesReports runs the command as a user would, with -json and
// -html, and checks the JSON against the report's schema and the HTML for
// well-formed markup with its charts.
func TestCommandWritesReports(t *testing.T) {
	dir := t.TempDir()
	js, page := filepath.Join(dir, "run.json"), filepath.Join(dir, "run.html")
	var stdout, stderr bytes.Buffer
	code := realMain([]string{"-namespace", redistest.Namespace(t), "-duration", "3s", "-warmup", "500ms", "-rate", "300",
		"-users", "1000", "-pods", "2", "-clients", "2", "-heartbeat", "100ms", "-staleness", "400ms", "-refresh", "50ms",
		"-json", js, "-html", page}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	for _, want := range []string{"scenario steady on embedded Redis", "route", "invariants  OK"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "ops/s") {
		t.Errorf("no progress lines on stderr:\n%s", stderr.String())
	}
	checkJSON(t, js)
	checkHTML(t, page)
}

// checkJSON decodes the file strictly into Report and checks that every
// documented top-level key is there with the right JSON type.
func checkJSON(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r Report
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("the JSON does not fit Report: %v", err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for key, kind := range map[string]string{
		"schema": "number", "scenario": "string", "backend": "string", "started": "string", "settings": "object",
		"measured_seconds": "number", "target_rate": "number", "achieved_rate": "number", "ops": "object",
		"cache_hit_ratio": "number", "errors": "object", "error_samples": "object", "invariants": "object", "skew": "object",
		"placements_per_pod": "object", "timeline": "array", "findings": "array",
	} {
		if got := jsonKind(raw[key]); got != kind {
			t.Errorf("key %q is %s, want %s", key, got, kind)
		}
	}
	route, _ := raw["ops"].(map[string]any)["route"].(map[string]any)
	for _, k := range []string{"count", "errors", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us"} {
		if jsonKind(route[k]) != "number" {
			t.Errorf("ops.route.%s is %s", k, jsonKind(route[k]))
		}
	}
	if r.Ops[opRoute].Count == 0 || len(r.Timeline) == 0 || r.Schema != SchemaVersion {
		t.Errorf("report figures: %+v", r.Ops)
	}
}

func jsonKind(v any) string {
	switch v.(type) {
	case float64:
		return "number"
	case string:
		return "string"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case bool:
		return "bool"
	case nil:
		return "missing"
	}
	return "other"
}

// checkHTML parses the page as XML (it is written well-formed) and finds
// its four charts, each with a plotted line, and no external asset.
func checkHTML(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.Strict = true
	charts := map[string]int{}
	inChart := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the page does not parse: %v", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			for _, a := range e.Attr {
				if a.Name.Local == "src" || (a.Name.Local == "href" && e.Name.Local == "link") {
					t.Errorf("external asset: <%s %s=%q>", e.Name.Local, a.Name.Local, a.Value)
				}
				if e.Name.Local == "svg" && a.Name.Local == "id" {
					inChart = a.Value
					charts[inChart] = 0
				}
				if e.Name.Local == "polyline" && a.Name.Local == "points" && strings.Count(a.Value, ",") >= 2 {
					charts[inChart]++
				}
			}
		case xml.EndElement:
			if e.Name.Local == "svg" {
				inChart = ""
			}
		}
	}
	for _, id := range []string{"latency", "users", "hitratio", "errors"} {
		if n, ok := charts[id]; !ok || n == 0 {
			t.Errorf("chart %q: present %v, plotted lines %d", id, ok, n)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-pods", "0"}, {"-zipf", "1"}, {"-scenario", "nope"}, {"-redis", "a:1", "-cluster", "b:2"},
		{"-grace", "1500ms"}, {"-staleness", "1s", "-heartbeat", "500ms"}, {"-warmup", "20s"}, {"extra"},
		{"-scenario", "ramp", "-concurrency", "4"}, {"-scenario", "crash", "-pods", "1"},
	} {
		var out, errw bytes.Buffer
		if code := realMain(args, &out, &errw); code != 2 || !strings.Contains(errw.String(), "loadgen") {
			t.Errorf("%q: exit %d, stderr %q", args, code, errw.String())
		}
	}
}
