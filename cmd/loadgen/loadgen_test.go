package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/internal/redistest"
)

func TestMain(m *testing.M) { redistest.VerifyTestMain(m) }

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
	// The same on a ramp, which runs two searches up to 800 ops/s: a
	// fresh-clone make test beside stress-ng saw one pod's claim in
	// TestRampFloor/embedded time out (5 s, five staleness windows), every
	// step's routing calls within the SLO and error-free. A routing call
	// that times out fails its step (checkRamp); the report counts the rest.
	Ramp:  {"timeout": true},
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
				r, _ := runLogged(t, cfg)
				check(t, cfg, r)
				if r.Backend != backend {
					t.Errorf("backend %q in the report, want the mode found, %q", r.Backend, backend)
				}
				if proxied := r.Proxied; proxied != (backend != redistest.Embedded && scenario == Blip) {
					t.Errorf("a proxy in front of Redis: %v; want one only for a blip on a real server", proxied)
				}
			})
		}
	}
}

// runLogged runs cfg and logs the report's table, which it returns too.
func runLogged(t *testing.T, cfg Config) (*Report, string) {
	t.Helper()
	r, err := run(redistest.Ctx(t), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
	return r, table.String()
}

// TestRampFirstStepMisses: a ramp whose first rate is out of reach (ten
// million operations a second from one process) steps down until a rate
// holds, bisects, and reports a capacity.
func TestRampFirstStepMisses(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			cfg := quick(t, backend, Ramp)
			// A generous SLO: the search, not the machine's speed, is tested.
			cfg.Rate, cfg.RampMax, cfg.RampFactor, cfg.RampStep, cfg.SLO = 1e7, 1e7, 8, 400*time.Millisecond, 2*time.Second
			r, table := runLogged(t, cfg)
			check(t, cfg, r)
			rp := r.Ramp
			if rp.Steps[0].Held || !(rp.Capacity > 0) || !(rp.Missed > rp.Capacity) {
				t.Fatalf("first step held %v, capacity %v, missed %v; want a miss, then a capacity below the lowest miss", rp.Steps[0].Held, rp.Capacity, rp.Missed)
			}
			if !regexp.MustCompile(fmt.Sprintf(`\nramp capacity +%.0f ops/s`, rp.Capacity)).MatchString(table) {
				t.Errorf("the table does not state the capacity %.0f", rp.Capacity)
			}

		})
	}
}

// TestRampFloor: with -floor, a second fleet routing by a fixed table runs
// beside the first on the same Redis, the two searches take their steps in
// turn (a step and its retry, then the other's), each search is sound on
// its own, and the report gives their ratio.
func TestRampFloor(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			cfg := quick(t, backend, Ramp)
			cfg.Floor = true
			r, table := runLogged(t, cfg)
			check(t, cfg, r)
			rp := r.Ramp
			if rp.Floor == nil {
				t.Fatal("no floor in the report")
			}
			checkRamp(t, cfg, rp.Floor)
			if want := rp.Capacity / rp.Floor.Capacity; rp.FloorRatio != want || !(want > 0) {
				t.Errorf("floor ratio %v, want %v = %v / %v", rp.FloorRatio, want, rp.Capacity, rp.Floor.Capacity)
			}
			// The turns: sides alternate until one search is over.
			type turn struct {
				side int
				at   float64
			}
			var turns []turn
			for side, r := range []*RampReport{rp, rp.Floor} {
				for _, st := range r.Steps {
					if !st.Retry {
						turns = append(turns, turn{side, st.At})
					}
				}
			}
			slices.SortFunc(turns, func(a, b turn) int { return cmp.Compare(a.at, b.at) })
			for i := 1; i < len(turns); i++ {
				if turns[i].side == turns[i-1].side && slices.ContainsFunc(turns[i:], func(u turn) bool { return u.side != turns[i].side }) {
					t.Fatalf("turn %d is the same side's as the one before, while the other had steps to take: %+v", i, turns)
				}
			}
			if !strings.Contains(table, fmt.Sprintf("capacity with routing %.0f ops/s = %.2f × the floor's %.0f ops/s", rp.Capacity, rp.FloorRatio, rp.Floor.Capacity)) {
				t.Errorf("the table does not state the ratio")
			}
		})
	}
}

// checkRamp asserts that each step of a capacity search was judged by its own
// figures, that the steps are the ones rampSearch chooses from those
// judgements, and that the capacity is the highest rate that held (the
// capacity found is the machine's: a busy one misses the first step).
func checkRamp(t *testing.T, cfg Config, rp *RampReport) {
	t.Helper()
	if rp == nil || len(rp.Steps) == 0 {
		t.Fatalf("ramp: %+v", rp)
	}
	search := newRampSearch(cfg.Rate, cfg.RampFactor, cfg.RampMax)
	for i, st := range rp.Steps {
		held := st.P99 <= rp.SLOUS && st.Errors == 0 && st.Achieved >= 0.95*st.Rate
		if st.Held != held || st.Achieved <= 0 {
			t.Errorf("ramp step %d judged held=%v from %+v (SLO %vµs)", i, st.Held, st, rp.SLOUS)
		}
		last := i+1 == len(rp.Steps)
		if !st.Held && !st.Retry && last {
			t.Errorf("ramp step %d missed and was not run again: %+v", i, rp.Steps)
		}
		if st.Retry != (i > 0 && !rp.Steps[i-1].Held && !rp.Steps[i-1].Retry) || (st.Retry && st.Rate != rp.Steps[i-1].Rate) {
			t.Errorf("ramp step %d: retry %v after %+v", i, st.Retry, rp.Steps[max(i-1, 0)])
		}
		if !st.Held && !st.Retry {
			continue // judged by the retry that follows
		}
		if want, ok := search.rate(); !ok || want != st.Rate {
			t.Fatalf("ramp step %d at %v, want %v (more: %v); steps %+v", i, st.Rate, want, ok, rp.Steps)
		}
		search.judged(st.Rate, st.Held)
	}
	if _, more := search.rate(); more {
		t.Errorf("ramp stopped before the search was over: %+v", rp.Steps)
	}
	if rp.Capacity != search.held || rp.Missed != search.missed {
		t.Errorf("ramp capacity %v, missed %v; want %v, %v from its steps", rp.Capacity, rp.Missed, search.held, search.missed)
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
		if r.ErrorSamples[class] == "" {
			t.Errorf("%d errors of class %s and no sample of one", n, class)
		}
	}
	// The timeline is cut every second.
	if len(r.Timeline) < 2 || r.Backend == "" || r.Schema != SchemaVersion {
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
		checkRamp(t, cfg, r.Ramp)
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
		"generator_late": "number", "generator_released": "number", "proxied": "bool",
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

// TestWrongAddress: a Redis address nobody listens on is an error naming it,
// with exit status 2.
func TestWrongAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // a free port: nothing answers there
	for _, scenario := range []string{Steady, Blip} {
		var out, errw bytes.Buffer
		code := realMain([]string{"-redis", addr, "-scenario", scenario, "-quiet"}, &out, &errw)
		if want := "loadgen: connecting to Redis at " + addr + ": "; code != 2 || !strings.HasPrefix(errw.String(), want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", scenario, code, errw.String(), want)
		}
	}
}

// TestLateWarning: the table warns when more than 1% of the operations left
// the generator late, and not otherwise.
func TestLateWarning(t *testing.T) {
	for _, c := range []struct {
		late, released int64
		warn           bool
	}{{10, 1000, false}, {11, 1000, true}, {0, 0, false}} {
		r := &Report{GeneratorLate: c.late, GeneratorReleased: c.released}
		var b bytes.Buffer
		if err := r.WriteTable(&b); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(b.String(), "the generator fell behind"); got != c.warn {
			t.Errorf("%d late of %d: warned %v, want %v:\n%s", c.late, c.released, got, c.warn, b.String())
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
