package benchmarks

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Goals: every claim the suite makes is a goal registered next to the
// benchmark that measures it (addGoals in each file), comparing rows of the
// same run: a ratio against the best peer row, a difference in points, or
// zero allocations. TestGoals reads the output of a go test -bench run (the
// file named by $STICKYROUTE_BENCH_OUTPUT; make bench-check and make bench
// write it) and fails on the first goal missed, or whose rows are missing.
//
// Noise: the machine is shared, and another process can only make a row
// slower. A row run -count times is therefore judged by its best time (the
// least disturbed run) on both sides of a speed ratio; hit ratios, which
// only vary with the implementation's own randomness, by their median;
// allocations by their worst.
//
// The brief check (make bench-check, in CI) runs each row for 100 ms, and
// there a same-run speed ratio still moves a lot: the cache-hit ratio that
// make bench measured at 1.32× came out at 0.90× in one brief check of the
// same commit. $STICKYROUTE_BENCH_SLACK (a fraction; scripts/bench.sh sets
// 0.2 for the check, 0 for make bench) lets a speed goal missed by less than
// that pass the check, reported as a miss within the allowance: the check
// still fails a regression beyond the noise, and make bench judges exactly.
// A speed goal missed beyond the allowance is re-measured before it fails
// the check (remeasure_test.go says how and why); other goals never are.

// envOutput names the file of go test -bench output TestGoals judges;
// envGoalsMD, when set, names the file it writes its goal table to.
const (
	envOutput  = "STICKYROUTE_BENCH_OUTPUT"
	envGoalsMD = "STICKYROUTE_BENCH_GOALS"
	envStrict  = "STICKYROUTE_BENCH_STRICT"
	envSlack   = "STICKYROUTE_BENCH_SLACK"
	// envRemeasures is how many times at most a missed speed goal is
	// re-measured (scripts/bench.sh: 3 in the check, 0 in make bench);
	// envBenchtimes is how the run timed each benchmark (see benchtimes).
	envRemeasures = "STICKYROUTE_BENCH_REMEASURES"
	envBenchtimes = "STICKYROUTE_BENCH_BENCHTIMES"
)

// goalKind says how a goal compares ours with the peers.
type goalKind uint8

const (
	// faster: the best peer's time over ours is at least x (ns/op, lower is better).
	faster goalKind = iota + 1
	// within: ours is at most x points below the best peer (a percentage, higher is better).
	within
	// zero: ours is 0 (allocs/op).
	zero
	// atLeast: a ratio the row reports itself (the median of its runs) is at least x.
	atLeast
)

// goal is one claim about rows of the same run. Rows are benchmark names
// without "Benchmark" and the -GOMAXPROCS suffix.
//
// A goal the code does not meet yet says so: known names why, and floor is
// the level it does reach with room for noise. Such a goal still shows as
// missed in every report, but fails the check only below its floor (so a
// regression still fails), or always with $STICKYROUTE_BENCH_STRICT=1.
type goal struct {
	what  string
	kind  goalKind
	x     float64
	unit  string
	ours  string
	peers []string
	known string
	floor float64
}

// knownMiss returns g marked as not met yet, for the reason given, failing
// the check only below floor (in g's terms: a ratio, or points).
func (g goal) knownMiss(floor float64, reason string) goal {
	g.known, g.floor = reason, floor
	return g
}

// fasterThan: ours at least x times faster (ns/op) than the fastest of peers.
func fasterThan(what string, x float64, ours string, peers ...string) goal {
	return goal{what: what, kind: faster, x: x, unit: "ns/op", ours: ours, peers: peers}
}

// pointsWithin: ours (unit, a percentage) at most x points below the best of peers.
func pointsWithin(what string, x float64, unit, ours string, peers ...string) goal {
	return goal{what: what, kind: within, x: x, unit: unit, ours: ours, peers: peers}
}

// ratioAtLeast: the ratio metric unit of row, measured within the row (its
// median over the runs), at least x.
func ratioAtLeast(what string, x float64, unit, row string) goal {
	return goal{what: what, kind: atLeast, x: x, unit: unit, ours: row}
}

// noAllocs: ours allocates nothing.
func noAllocs(what, ours string) goal {
	return goal{what: what, kind: zero, unit: "allocs/op", ours: ours}
}

// goals is every registered goal, in registration order.
var goals []goal

// addGoals registers gs; files call it in a package-level var, next to their
// benchmarks.
func addGoals(gs ...goal) bool {
	goals = append(goals, gs...)
	return true
}

// speed reports whether g is a speed goal: a ratio of times, which another
// process on the machine can move. Only these get the check's noise
// allowance and re-measurements; allocations, invariants and hit ratios do
// not depend on the machine's load, so a miss there is a real one.
func (g goal) speed() bool { return g.kind == faster || g.kind == atLeast }

// rows is every row g reads: ours, then the peers.
func (g goal) rows() []string { return append([]string{g.ours}, g.peers...) }

// results holds each row's samples per unit: results[row][unit].
type results map[string]map[string][]float64

var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// parseResults reads go test -bench output; other lines are ignored.
func parseResults(r io.Reader) (results, error) {
	res := results{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		if len(f)%2 != 0 {
			return nil, fmt.Errorf("odd value/unit fields in %q", sc.Text())
		}
		if res[m[1]] == nil {
			res[m[1]] = map[string][]float64{}
		}
		for i := 0; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("value %q in %q: %v", f[i], sc.Text(), err)
			}
			res[m[1]][f[i+1]] = append(res[m[1]][f[i+1]], v)
		}
	}
	return res, sc.Err()
}

// value is the estimate of row's unit the goal uses: best time, median
// percentage, worst allocations (see the comment at the top).
func (r results) value(row, unit string) (float64, bool) {
	s := slices.Clone(r[row][unit])
	if len(s) == 0 {
		return 0, false
	}
	slices.Sort(s)
	switch unit {
	case "ns/op":
		return s[0], true
	case "allocs/op", "B/op":
		return s[len(s)-1], true
	}
	return (s[(len(s)-1)/2] + s[len(s)/2]) / 2, true // median
}

// verdict is a goal judged on one run.
type verdict struct {
	goal
	ok         bool // the goal is met
	aboveFloor bool // a known miss still at its floor or above
	inSlack    bool // a speed goal missed by less than the check's allowance
	slack      float64
	ours       float64
	peer       string  // the best peer row
	peerVal    float64 // its value
	got        float64 // the ratio, difference or value compared with x
	err        string  // why it could not be judged
	// measured is, for a goal re-measured, the figure (got) of the run and
	// of each re-measurement in turn; the verdict is that of the last one.
	measured []float64
}

// judge evaluates g on r.
func (r results) judge(g goal) verdict {
	v := verdict{goal: g}
	ours, ok := r.value(g.ours, g.unit)
	if !ok {
		v.err = "row " + g.ours + " (" + g.unit + ") missing from the run"
		return v
	}
	v.ours = ours
	switch g.kind {
	case zero:
		v.got = ours
		v.ok = ours == 0
		return v
	case atLeast:
		v.got = ours
		v.ok = ours >= g.x
		v.aboveFloor = g.known != "" && ours >= g.floor
		return v
	}
	v.peerVal = math.NaN()
	for _, p := range g.peers {
		pv, ok := r.value(p, g.unit)
		if !ok {
			v.err = "row " + p + " (" + g.unit + ") missing from the run"
			return v
		}
		better := g.kind == faster && (math.IsNaN(v.peerVal) || pv < v.peerVal) ||
			g.kind == within && (math.IsNaN(v.peerVal) || pv > v.peerVal)
		if better {
			v.peer, v.peerVal = p, pv
		}
	}
	switch g.kind {
	case faster:
		v.got = v.peerVal / ours
		v.ok = v.got >= g.x
		v.aboveFloor = g.known != "" && v.got >= g.floor
	case within:
		v.got = ours - v.peerVal
		v.ok = v.got >= -g.x
		v.aboveFloor = g.known != "" && v.got >= -g.floor
	}
	return v
}

// allow lets a speed goal (a ratio) missed by less than the fraction slack
// of its target pass the check (see envSlack).
func (v *verdict) allow(slack float64) {
	if v.ok || v.err != "" || slack <= 0 || !v.speed() {
		return
	}
	v.slack = slack
	v.inSlack = v.got >= v.x*(1-slack)
}

// fails reports whether v fails the check: a miss, unless it is a known one
// still above its floor, or a speed miss within the allowance, and strict is
// off.
func (v verdict) fails(strict bool) bool {
	return !v.ok && (strict || !v.aboveFloor && !v.inSlack)
}

// String is the verdict as one line of the report.
func (v verdict) String() string {
	status := "ok  "
	switch {
	case v.aboveFloor && !v.ok:
		status = "MISS (known, above its floor)"
	case v.inSlack && !v.ok:
		status = fmt.Sprintf("MISS (within the check's %.0f%% noise allowance)", 100*v.slack)
	case !v.ok:
		status = "MISS"
	}
	switch {
	case v.err != "":
		return fmt.Sprintf("%s %s: %s%s", status, v.what, v.err, v.remeasuredNote())
	case v.kind == faster:
		return fmt.Sprintf("%s %s: %.2f× (goal ≥ %.2f×): ours %.4g ns/op, best peer %s %.4g ns/op%s%s", status, v.what, v.got, v.x, v.ours, v.peer, v.peerVal, v.knownNote(), v.remeasuredNote())
	case v.kind == within:
		return fmt.Sprintf("%s %s: %+.2f points (goal ≥ %+.2f): ours %.2f %s, best peer %s %.2f%s", status, v.what, v.got, -v.x, v.ours, v.unit, v.peer, v.peerVal, v.knownNote())
	case v.kind == atLeast:
		return fmt.Sprintf("%s %s: %.2f× (goal ≥ %.2f×): %s of %s, median of its runs%s%s", status, v.what, v.got, v.x, v.unit, v.goal.ours, v.knownNote(), v.remeasuredNote())
	}
	return fmt.Sprintf("%s %s: %v %s (goal 0)", status, v.what, v.ours, v.unit)
}

// remeasuredNote is what the report says of a goal that was re-measured:
// every figure in turn, so a pass after a miss is never silent.
func (v verdict) remeasuredNote() string {
	if len(v.measured) == 0 {
		return ""
	}
	note := fmt.Sprintf("; the run measured %.2f×", v.measured[0])
	if len(v.measured) > 1 {
		figs := make([]string, len(v.measured)-1)
		for i, m := range v.measured[1:] {
			figs[i] = fmt.Sprintf("%.2f×", m)
		}
		note += ", re-measured " + strings.Join(figs, ", ")
	}
	return note
}

// plural is "s" unless n is 1.
func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// knownNote is what the report says of a known miss.
func (v verdict) knownNote() string {
	if v.known == "" || v.ok {
		return ""
	}
	if v.kind != within {
		return fmt.Sprintf("; not met yet (floor %.2f×): %s", v.floor, v.known)
	}
	return fmt.Sprintf("; not met yet (floor %+.2f): %s", -v.floor, v.known)
}

// markdown is the verdicts as a Markdown table.
func markdown(vs []verdict) string {
	var b strings.Builder
	b.WriteString("| goal | measured | target | ours | best peer | met |\n|---|---|---|---|---|---|\n")
	for _, v := range vs {
		met := "yes"
		switch {
		case !v.ok && v.aboveFloor:
			met = "**NO** (known, above floor: " + v.known + ")"
		case !v.ok && v.inSlack:
			met = "**NO** (within the check's noise allowance)"
		case !v.ok:
			met = "**NO**"
		}
		if n := len(v.measured) - 1; n > 0 {
			met += fmt.Sprintf(" (re-measured %d time%s; the run measured %.2f×)", n, plural(n), v.measured[0])
		}
		switch {
		case v.err != "":
			fmt.Fprintf(&b, "| %s | %s | | | | %s |\n", v.what, v.err, met)
		case v.kind == faster:
			fmt.Fprintf(&b, "| %s | %.2f× | ≥ %.2f× | %.4g ns/op | %s: %.4g ns/op | %s |\n", v.what, v.got, v.x, v.ours, v.peer, v.peerVal, met)
		case v.kind == within:
			fmt.Fprintf(&b, "| %s | %+.2f points | ≥ %+.2f | %.2f %s | %s: %.2f | %s |\n", v.what, v.got, -v.x, v.ours, v.unit, v.peer, v.peerVal, met)
		case v.kind == atLeast:
			fmt.Fprintf(&b, "| %s | %.2f× | ≥ %.2f× | %s of %s (interleaved in one row) | | %s |\n", v.what, v.got, v.x, v.unit, v.goal.ours, met)
		default:
			fmt.Fprintf(&b, "| %s | %v %s | 0 | | | %s |\n", v.what, v.ours, v.unit, met)
		}
	}
	return b.String()
}

// TestGoals judges every registered goal on the run in $STICKYROUTE_BENCH_OUTPUT,
// re-measuring a missed speed goal up to $STICKYROUTE_BENCH_REMEASURES times.
func TestGoals(t *testing.T) {
	path := os.Getenv(envOutput)
	if path == "" {
		t.Skipf("%s is not set: make bench-check runs the benchmarks and then this test on their output", envOutput)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parseResults(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(goals) == 0 {
		t.Fatal("no goals registered")
	}
	c := checker{strict: os.Getenv(envStrict) == "1", logf: t.Logf}
	if e := os.Getenv(envSlack); e != "" {
		if c.slack, err = strconv.ParseFloat(e, 64); err != nil || c.slack < 0 || c.slack >= 1 {
			t.Fatalf("%s=%q: want a fraction in [0, 1)", envSlack, e)
		}
	}
	if e := os.Getenv(envRemeasures); e != "" {
		if c.remeasures, err = strconv.Atoi(e); err != nil || c.remeasures < 0 {
			t.Fatalf("%s=%q: want a count ≥ 0", envRemeasures, e)
		}
	}
	if c.remeasures > 0 {
		bt, err := parseBenchtimes(os.Getenv(envBenchtimes))
		if err != nil {
			t.Fatalf("%s: %v (scripts/bench.sh sets it with %s)", envBenchtimes, err, envRemeasures)
		}
		c.remeasure = rerun(bt, t.Logf)
	}
	var vs []verdict
	missed, failed, remeasured, rescued := 0, 0, 0, 0
	for _, g := range goals {
		v := c.check(res, g)
		vs = append(vs, v)
		t.Log(v)
		if !v.ok {
			missed++
		}
		if v.fails(c.strict) {
			failed++
		}
		if len(v.measured) > 0 {
			remeasured++
			if !v.fails(c.strict) {
				rescued++
			}
		}
	}
	if md := os.Getenv(envGoalsMD); md != "" {
		if err := os.WriteFile(md, []byte(markdown(vs)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if remeasured > 0 {
		t.Logf("%d speed goal%s missed beyond the allowance and re-measured: %d passed on a re-measurement, %d still failed",
			remeasured, plural(remeasured), rescued, remeasured-rescued)
	}
	if failed > 0 {
		t.Fatalf("%d of %d goals missed, %d of them failing the check (lines marked MISS above; strict %v)", missed, len(vs), failed, c.strict)
	}
	if missed > 0 {
		known := 0
		for _, v := range vs {
			if !v.ok && v.aboveFloor {
				known++
			}
		}
		t.Logf("%d of %d goals met; %d known misses above their floors, %d speed misses within the noise allowance (%s=1 fails them)",
			len(vs)-missed, len(vs), known, missed-known, envStrict)
		return
	}
	t.Logf("all %d goals met", len(vs))
}

// TestJudge checks the estimators and the three kinds of goal on a made-up run.
func TestJudge(t *testing.T) {
	const out = `goos: linux
BenchmarkX/impl=ours-2      	1000	  10.0 ns/op	  0 B/op	  0 allocs/op	  80.0 hit%
BenchmarkX/impl=ours-2      	1000	  30.0 ns/op	  0 B/op	  0 allocs/op	  81.0 hit%
BenchmarkX/impl=ours-2      	1000	  11.0 ns/op	  0 B/op	  1 allocs/op	  79.0 hit%
BenchmarkX/impl=a-2         	1000	  25.0 ns/op	  8 B/op	  1 allocs/op	  84.0 hit%
BenchmarkX/impl=a-2         	1000	  21.0 ns/op	  8 B/op	  1 allocs/op	  84.5 hit%
BenchmarkX/impl=b           	1000	  40.0 ns/op	 16 B/op	  2 allocs/op	  90.0 hit%
BenchmarkZ-2                	  10	  1000 ns/op	  3.5 peer/ours
BenchmarkZ-2                	  10	  1000 ns/op	  2.0 peer/ours
BenchmarkZ-2                	  10	  1000 ns/op	  2.5 peer/ours
PASS
`
	res, err := parseResults(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		g    goal
		ok   bool
		got  float64
		peer string
	}{
		// Best times: ours 10, a 21 (b 40): 2.1×.
		{fasterThan("2x", 2, "X/impl=ours", "X/impl=a", "X/impl=b"), true, 2.1, "X/impl=a"},
		{fasterThan("3x", 3, "X/impl=ours", "X/impl=a", "X/impl=b"), false, 2.1, "X/impl=a"},
		// Median hit%: ours 80, best peer b 90: -10 points.
		{pointsWithin("10pt", 10, "hit%", "X/impl=ours", "X/impl=a", "X/impl=b"), true, -10, "X/impl=b"},
		// a's median of two is their mean, 84.25.
		{pointsWithin("5pt", 5, "hit%", "X/impl=ours", "X/impl=a"), true, -4.25, "X/impl=a"},
		{pointsWithin("3pt", 3, "hit%", "X/impl=ours", "X/impl=a"), false, -4.25, "X/impl=a"},
		// Worst allocs: one of ours' runs allocated.
		{noAllocs("0 allocs", "X/impl=ours"), false, 1, ""},
		{noAllocs("missing", "X/impl=c"), false, 0, ""},
		{fasterThan("missing peer", 1, "X/impl=ours", "X/impl=c"), false, 0, ""},
	} {
		v := res.judge(c.g)
		if v.ok != c.ok || math.Abs(v.got-c.got) > 1e-9 || v.peer != c.peer {
			t.Errorf("%s: ok %v got %v peer %q, want ok %v got %v peer %q (%v)", c.g.what, v.ok, v.got, v.peer, c.ok, c.got, c.peer, v)
		}
	}
	// A ratio measured within a row: the median of its runs (2.0, 2.5, 3.5).
	if v := res.judge(ratioAtLeast("ratio", 2.5, "peer/ours", "Z")); !v.ok || v.got != 2.5 {
		t.Errorf("median ratio: ok %v got %v, want true 2.5", v.ok, v.got)
	}
	if v := res.judge(ratioAtLeast("ratio", 3, "peer/ours", "Z")); v.ok {
		t.Error("a median ratio of 2.5 met a goal of 3")
	}
	// A known miss above its floor fails only when strict; below it, always.
	known := res.judge(fasterThan("3x known", 3, "X/impl=ours", "X/impl=a").knownMiss(2, "why"))
	if known.ok || known.fails(false) || !known.fails(true) {
		t.Errorf("known miss at 2.1× with floor 2×: ok %v, fails %v (strict %v)", known.ok, known.fails(false), known.fails(true))
	}
	below := res.judge(fasterThan("3x known", 3, "X/impl=ours", "X/impl=a").knownMiss(2.5, "why"))
	if !below.fails(false) {
		t.Error("a known miss below its floor does not fail")
	}
	pts := res.judge(pointsWithin("3pt known", 3, "hit%", "X/impl=ours", "X/impl=a").knownMiss(4.5, "why"))
	if pts.ok || pts.fails(false) {
		t.Errorf("known miss at -4.25 points with floor -4.5: ok %v fails %v", pts.ok, pts.fails(false))
	}
	// Within the check's allowance a speed miss passes; beyond it, or when
	// strict, it fails. Points goals have no allowance.
	for _, c := range []struct {
		g     goal
		slack float64
		fails bool
	}{
		{fasterThan("2.3x", 2.3, "X/impl=ours", "X/impl=a"), 0.1, false}, // 2.1 ≥ 2.07
		{fasterThan("2.4x", 2.4, "X/impl=ours", "X/impl=a"), 0.1, true},  // 2.1 < 2.16
		{fasterThan("2.3x", 2.3, "X/impl=ours", "X/impl=a"), 0, true},    // no allowance
		{ratioAtLeast("ratio", 2.7, "peer/ours", "Z"), 0.1, false},       // 2.5 ≥ 2.43
		{pointsWithin("3pt", 3, "hit%", "X/impl=ours", "X/impl=a"), 0.5, true},
	} {
		v := res.judge(c.g)
		v.allow(c.slack)
		if v.ok || v.fails(false) != c.fails || !v.fails(true) {
			t.Errorf("%s with allowance %v: ok %v, fails %v (strict %v), want fails %v", c.g.what, c.slack, v.ok, v.fails(false), v.fails(true), c.fails)
		}
	}
	if _, err := parseResults(strings.NewReader("BenchmarkY-2 10 5 ns/op 3\n")); err == nil {
		t.Error("a line with a value and no unit parsed")
	}
}
