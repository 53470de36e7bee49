package benchmarks

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Re-measuring: even with the noise allowance, a brief check on a busy
// machine sometimes misses a speed goal the code meets (the batch goal, 3.24×
// in RESULTS.md, once came out at 2.30× in CI, against 3.00× less 20%). A
// miss caused by another process seldom comes back when the same rows run
// again a moment later; a regression always does. So the check
// (scripts/bench.sh check sets $STICKYROUTE_BENCH_REMEASURES=3) runs the rows
// of a speed goal missed beyond the allowance again, alone and as the run
// ran them, and judges the goal on each re-measurement in turn: the goal
// passes as soon as one meets it (within the allowance), and fails the check
// when none of them does. Each re-measurement is judged on its own, never
// pooled with the run's samples, so a miss needs a whole run that meets the
// goal to pass.
//
// Only speed goals are re-measured (goal.speed): allocations, invariant
// violations and hit ratios do not depend on the machine's load, so their
// miss fails at once, as does a goal whose rows are missing. make bench
// re-measures nothing: RESULTS.md reports one run, and its goal table must
// agree with the benchstat tables of that run beside it.

// remeasurer runs rows again, each count times, and returns the new run.
type remeasurer func(rows []string, count int) (results, error)

// checker judges goals as TestGoals does; the tests give it a made-up
// remeasurer, so that deciding whether to re-measure, and what, is tested
// without running a benchmark.
type checker struct {
	slack      float64 // the noise allowance (envSlack)
	strict     bool    // known misses fail (envStrict)
	remeasures int     // re-measurements at most per missed speed goal (envRemeasures)
	remeasure  remeasurer
	logf       func(format string, args ...any) // where the re-measurements are told
}

// check judges g on res and, when g is a speed goal that fails the check,
// re-measures it up to c.remeasures times. The verdict is the last
// measurement's, with every figure in measured.
func (c checker) check(res results, g goal) verdict {
	v := res.judge(g)
	v.allow(c.slack)
	if !v.fails(c.strict) || !g.speed() || v.err != "" || c.remeasures == 0 {
		return v
	}
	rows := g.rows()
	count := res.samples(rows, g.unit)
	c.logf("re-measure %q: missed at %.2f× (%s); re-running %s (%d sample%s each), up to %d times",
		g.what, v.got, c.passes(g), strings.Join(rows, ", "), count, plural(count), c.remeasures)
	measured := []float64{v.got}
	for i := 1; i <= c.remeasures; i++ {
		again, err := c.remeasure(rows, count)
		if err != nil {
			v = verdict{goal: g, err: fmt.Sprintf("re-measurement %d of %d could not run: %v", i, c.remeasures, err)}
			break
		}
		v = again.judge(g)
		v.allow(c.slack)
		if v.err != "" {
			v.err = fmt.Sprintf("re-measurement %d of %d: %s", i, c.remeasures, v.err)
			break
		}
		measured = append(measured, v.got)
		c.logf("re-measure %q: re-measurement %d of %d: %.2f× — %s", g.what, i, c.remeasures, v.got, outcome(v, c.strict))
		if !v.fails(c.strict) {
			break
		}
	}
	v.measured = measured
	n := len(measured) - 1
	switch {
	case v.err != "":
		c.logf("re-measure %q: FAIL: %s", g.what, v.err)
	case v.fails(c.strict):
		c.logf("re-measure %q: FAIL: missed in the run and in all %d re-measurements", g.what, n)
	default:
		c.logf("re-measure %q: PASS on re-measurement %d of %d", g.what, n, c.remeasures)
	}
	return v
}

// passes says what a measurement of g must reach to pass the check.
func (c checker) passes(g goal) string {
	s := fmt.Sprintf("goal ≥ %.2f×", g.x)
	if c.slack > 0 && !c.strict {
		s += fmt.Sprintf(", ≥ %.2f× passes with the check's %.0f%% noise allowance", g.x*(1-c.slack), 100*c.slack)
	}
	if g.known != "" && !c.strict {
		s += fmt.Sprintf(", ≥ %.2f× as a known miss", g.floor)
	}
	return s
}

// outcome is one re-measurement's verdict in a word or a few.
func outcome(v verdict, strict bool) string {
	switch {
	case v.ok:
		return "met"
	case v.fails(strict):
		return "MISS"
	case v.inSlack:
		return "missed within the noise allowance, passes"
	}
	return "known miss above its floor, passes"
}

// samples is how many samples of unit the run has of rows (the most of
// any): a re-measurement takes as many, so that it is judged as the run was.
func (r results) samples(rows []string, unit string) int {
	n := 1
	for _, row := range rows {
		n = max(n, len(r[row][unit]))
	}
	return n
}

// benchtimes is the -benchtime each benchmark ran with, by its top-level
// name ("EndToEnd"); "*" stands for the others. scripts/bench.sh passes it
// as "EndToEnd=1x *=100ms" in $STICKYROUTE_BENCH_BENCHTIMES, from the
// settings it ran the benchmarks with.
type benchtimes map[string]string

// parseBenchtimes reads name=benchtime pairs separated by spaces.
func parseBenchtimes(s string) (benchtimes, error) {
	bt := benchtimes{}
	for _, f := range strings.Fields(s) {
		name, t, ok := strings.Cut(f, "=")
		if !ok || name == "" || t == "" {
			return nil, fmt.Errorf("%q: want name=benchtime", f)
		}
		bt[name] = t
	}
	if len(bt) == 0 {
		return nil, fmt.Errorf("empty")
	}
	return bt, nil
}

// of is the -benchtime of the benchmark named top.
func (bt benchtimes) of(top string) (string, error) {
	if t, ok := bt[top]; ok {
		return t, nil
	}
	if t, ok := bt["*"]; ok {
		return t, nil
	}
	return "", fmt.Errorf("no benchtime for %s, nor a default (*=)", top)
}

// benchPattern is the -bench pattern that runs rows and, as go test splits a
// pattern at slashes, each of its levels matches exactly the names the rows
// have there: every combination of them runs, which for the goals
// registered (rows that differ in one level) is the rows alone. The rows
// must be of one benchmark and of one depth. top is that benchmark.
func benchPattern(rows []string) (pattern, top string, err error) {
	var levels [][]string
	for _, row := range rows {
		elems := strings.Split(row, "/")
		if levels == nil {
			levels = make([][]string, len(elems))
		}
		if len(elems) != len(levels) {
			return "", "", fmt.Errorf("rows %q are not of one depth", rows)
		}
		for i, e := range elems {
			if !slices.Contains(levels[i], e) {
				levels[i] = append(levels[i], e)
			}
		}
	}
	if len(levels) == 0 {
		return "", "", fmt.Errorf("no rows")
	}
	if len(levels[0]) != 1 {
		return "", "", fmt.Errorf("rows %q are not of one benchmark", rows)
	}
	parts := make([]string, len(levels))
	for i, names := range levels {
		quoted := make([]string, len(names))
		for j, n := range names {
			quoted[j] = regexp.QuoteMeta(n)
		}
		if i == 0 {
			quoted[0] = "Benchmark" + quoted[0]
		}
		if len(quoted) == 1 {
			parts[i] = "^" + quoted[0] + "$"
		} else {
			parts[i] = "^(?:" + strings.Join(quoted, "|") + ")$"
		}
	}
	return strings.Join(parts, "/"), levels[0][0], nil
}

// rerun is TestGoals' remeasurer: it runs the rows with this very test
// binary (the code the run measured, and nothing to build again), with the
// -benchtime the run gave their benchmark, and tells their lines through
// logf as go test prints them.
func rerun(bt benchtimes, logf func(format string, args ...any)) remeasurer {
	return func(rows []string, count int) (results, error) {
		pattern, top, err := benchPattern(rows)
		if err != nil {
			return nil, err
		}
		benchtime, err := bt.of(top)
		if err != nil {
			return nil, err
		}
		bin, err := os.Executable()
		if err != nil {
			return nil, err
		}
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, "-test.run=^$", "-test.bench="+pattern, "-test.benchtime="+benchtime,
			"-test.count="+strconv.Itoa(count), "-test.timeout=10m")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("-bench %s: %v: %s", pattern, err, tail(stdout.String()+stderr.String(), 10))
		}
		for line := range strings.Lines(stdout.String()) {
			if strings.HasPrefix(line, "Benchmark") {
				logf("    %s", strings.TrimRight(line, "\n"))
			}
		}
		return parseResults(&stdout)
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// fakeRemeasurer serves made-up runs in turn and records what it was asked
// to run.
type fakeRemeasurer struct {
	runs   []string // go test -bench output, one per re-measurement
	err    error    // returned instead, when set
	rows   [][]string
	counts []int
}

// remeasure is f as a remeasurer: the next made-up run, or f.err.
func (f *fakeRemeasurer) remeasure(rows []string, count int) (results, error) {
	f.rows = append(f.rows, slices.Clone(rows))
	f.counts = append(f.counts, count)
	if f.err != nil {
		return nil, f.err
	}
	if len(f.rows) > len(f.runs) {
		return nil, fmt.Errorf("re-measurement %d asked for, %d made up", len(f.rows), len(f.runs))
	}
	return parseResults(strings.NewReader(f.runs[len(f.rows)-1]))
}

// batchOutput is a run of the batch row whose goredis/ours ratio, a median
// over five samples, is ratio: at 2.0 it is a deliberately slowed variant
// of ours against the batch goal of 3×.
func batchOutput(ratio float64) string {
	var b strings.Builder
	for _, d := range []float64{-0.2, -0.1, 0, 0.1, 0.2} {
		fmt.Fprintf(&b, "BenchmarkStoreBatch/uids=10000-2 \t      12\t   4000000 ns/op\t %.2f goredis/ours\n", ratio+d)
	}
	return b.String()
}

// pickOutput is a run of the p2c pick rows, ours taking oursNs and Kratos
// kratosNs a pick; five samples each.
func pickOutput(oursNs, kratosNs float64) string {
	var b strings.Builder
	for range 5 {
		fmt.Fprintf(&b, "BenchmarkPick/strategy=p2c/mode=single/impl=ours-2 \t 1000000\t %.2f ns/op\t 0 B/op\t 0 allocs/op\n", oursNs)
		fmt.Fprintf(&b, "BenchmarkPick/strategy=p2c/mode=single/impl=kratos-2 \t 1000000\t %.2f ns/op\t 72 B/op\t 2 allocs/op\n", kratosNs)
	}
	return b.String()
}

// TestRemeasure feeds the checker made-up runs and re-measurements (among
// them a deliberately slowed variant of ours) and checks what it decides:
// whether it re-measures, which rows and how often, and the verdict.
func TestRemeasure(t *testing.T) {
	const (
		batchRow  = "StoreBatch/uids=10000"
		oursPick  = "Pick/strategy=p2c/mode=single/impl=ours"
		kratosRow = "Pick/strategy=p2c/mode=single/impl=kratos"
	)
	batch := ratioAtLeast("batch vs go-redis", 3, "goredis/ours", batchRow)
	pick := fasterThan("p2c pick vs Kratos", 2, oursPick, kratosRow)
	for _, c := range []struct {
		name     string
		g        goal
		run      string   // the run
		again    []string // the re-measurements the fake serves
		err      error    // the fake fails instead
		fails    bool
		calls    int      // re-measurements asked for
		rows     []string // the rows re-run, each time
		measured []float64
	}{
		{
			name: "slowed: missed beyond the allowance in the run and in every re-measurement",
			g:    batch, run: batchOutput(2.3), again: []string{batchOutput(2.0), batchOutput(2.1), batchOutput(1.9)},
			fails: true, calls: 3, rows: []string{batchRow}, measured: []float64{2.3, 2.0, 2.1, 1.9},
		},
		{
			name: "slowed: ours barely faster than the peer, in the run and every re-measurement",
			g:    pick, run: pickOutput(300, 340), again: []string{pickOutput(290, 345), pickOutput(310, 340), pickOutput(300, 350)},
			fails: true, calls: 3, rows: []string{oursPick, kratosRow}, measured: []float64{340.0 / 300, 345.0 / 290, 340.0 / 310, 350.0 / 300},
		},
		{
			name: "noise: the second re-measurement meets the goal",
			g:    batch, run: batchOutput(2.3), again: []string{batchOutput(2.35), batchOutput(3.1), batchOutput(1)},
			fails: false, calls: 2, rows: []string{batchRow}, measured: []float64{2.3, 2.35, 3.1},
		},
		{
			name: "noise: a re-measurement within the allowance passes",
			g:    pick, run: pickOutput(30, 40), again: []string{pickOutput(20, 38)},
			fails: false, calls: 1, rows: []string{oursPick, kratosRow}, measured: []float64{40.0 / 30, 1.9},
		},
		{
			name: "a miss within the allowance is not re-measured",
			g:    batch, run: batchOutput(2.45),
		},
		{
			name: "met: not re-measured",
			g:    batch, run: batchOutput(3.2),
		},
		{
			name:  "allocations are never re-measured",
			g:     noAllocs("p2c pick allocations", oursPick),
			run:   pickOutput(20, 340) + "BenchmarkPick/strategy=p2c/mode=single/impl=ours-2 \t 1000000\t 25 ns/op\t 8 B/op\t 1 allocs/op\n",
			fails: true,
		},
		{
			name:  "hit ratio points are never re-measured",
			g:     pointsWithin("hit ratio", 5, "hit%", "HitRatio/impl=ours", "HitRatio/impl=otter"),
			run:   "BenchmarkHitRatio/impl=ours-2 1 1 ns/op 70.0 hit%\nBenchmarkHitRatio/impl=otter-2 1 1 ns/op 80.0 hit%\n",
			fails: true,
		},
		{
			name: "rows missing from the run: failed at once",
			g:    fasterThan("missing", 2, oursPick, "Pick/strategy=p2c/mode=single/impl=absent"), run: pickOutput(300, 340),
			fails: true,
		},
		{
			name: "a re-measurement that cannot run fails the goal at once",
			g:    batch, run: batchOutput(2.0), err: fmt.Errorf("exit status 1"),
			fails: true, calls: 1, rows: []string{batchRow}, measured: []float64{2.0},
		},
		{
			name: "a re-measurement without the goal's rows fails it at once",
			g:    batch, run: batchOutput(2.0), again: []string{pickOutput(20, 340), batchOutput(3.5)},
			fails: true, calls: 1, rows: []string{batchRow}, measured: []float64{2.0},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := parseResults(strings.NewReader(c.run))
			if err != nil {
				t.Fatal(err)
			}
			f := &fakeRemeasurer{runs: c.again, err: c.err}
			var log []string
			ch := checker{slack: 0.2, remeasures: 3, remeasure: f.remeasure,
				logf: func(format string, args ...any) { log = append(log, fmt.Sprintf(format, args...)) }}
			v := ch.check(res, c.g)
			t.Log(v)
			for _, l := range log {
				t.Log(l)
			}
			if v.fails(false) != c.fails {
				t.Errorf("fails %v, want %v", v.fails(false), c.fails)
			}
			if len(f.rows) != c.calls {
				t.Fatalf("%d re-measurements, want %d", len(f.rows), c.calls)
			}
			for i, rows := range f.rows {
				if !slices.Equal(rows, c.rows) || f.counts[i] != 5 {
					t.Errorf("re-measurement %d ran %q × %d, want %q × 5", i+1, rows, f.counts[i], c.rows)
				}
			}
			if len(v.measured) != len(c.measured) {
				t.Fatalf("measured %v, want %v", v.measured, c.measured)
			}
			for i := range c.measured {
				if math.Abs(v.measured[i]-c.measured[i]) > 1e-9 {
					t.Errorf("measured %v, want %v", v.measured, c.measured)
					break
				}
			}
			if c.calls == 0 && len(log) != 0 {
				t.Errorf("told %q without re-measuring", log)
			}
		})
	}
	// make bench re-measures nothing: a miss fails at once.
	res, err := parseResults(strings.NewReader(batchOutput(2.0)))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRemeasurer{runs: []string{batchOutput(3.5)}}
	if v := (checker{remeasure: f.remeasure}).check(res, batch); !v.fails(false) || len(f.rows) != 0 {
		t.Errorf("without re-measurements: fails %v after %d re-measurements, want true after 0", v.fails(false), len(f.rows))
	}
}

// TestRemeasureReport checks what a CI log shows of a re-measured goal: the
// miss, each re-measurement's figure and the final verdict.
func TestRemeasureReport(t *testing.T) {
	res, err := parseResults(strings.NewReader(batchOutput(2.3)))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		again []string
		log   []string
		line  string
	}{
		{
			again: []string{batchOutput(2.0), batchOutput(2.1), batchOutput(1.9)},
			log: []string{
				`re-measure "batch": missed at 2.30× (goal ≥ 3.00×, ≥ 2.40× passes with the check's 20% noise allowance); re-running StoreBatch/uids=10000 (5 samples each), up to 3 times`,
				`re-measure "batch": re-measurement 1 of 3: 2.00× — MISS`,
				`re-measure "batch": re-measurement 2 of 3: 2.10× — MISS`,
				`re-measure "batch": re-measurement 3 of 3: 1.90× — MISS`,
				`re-measure "batch": FAIL: missed in the run and in all 3 re-measurements`,
			},
			line: "MISS batch: 1.90× (goal ≥ 3.00×): goredis/ours of StoreBatch/uids=10000, median of its runs; the run measured 2.30×, re-measured 2.00×, 2.10×, 1.90×",
		},
		{
			again: []string{batchOutput(2.5)},
			log: []string{
				`re-measure "batch": missed at 2.30× (goal ≥ 3.00×, ≥ 2.40× passes with the check's 20% noise allowance); re-running StoreBatch/uids=10000 (5 samples each), up to 3 times`,
				`re-measure "batch": re-measurement 1 of 3: 2.50× — missed within the noise allowance, passes`,
				`re-measure "batch": PASS on re-measurement 1 of 3`,
			},
			line: "MISS (within the check's 20% noise allowance) batch: 2.50× (goal ≥ 3.00×): goredis/ours of StoreBatch/uids=10000, median of its runs; the run measured 2.30×, re-measured 2.50×",
		},
	} {
		f := &fakeRemeasurer{runs: c.again}
		var log []string
		ch := checker{slack: 0.2, remeasures: 3, remeasure: f.remeasure,
			logf: func(format string, args ...any) { log = append(log, fmt.Sprintf(format, args...)) }}
		v := ch.check(res, ratioAtLeast("batch", 3, "goredis/ours", "StoreBatch/uids=10000"))
		if !slices.Equal(log, c.log) {
			t.Errorf("told\n%s\nwant\n%s", strings.Join(log, "\n"), strings.Join(c.log, "\n"))
		}
		if v.String() != c.line {
			t.Errorf("verdict line\n%s\nwant\n%s", v, c.line)
		}
	}
}

// TestBenchPattern checks the -bench pattern of a goal's rows: one per
// level, exact names, quoted.
func TestBenchPattern(t *testing.T) {
	for _, c := range []struct {
		rows    []string
		pattern string
	}{
		{[]string{"StoreBatch/uids=10000"}, `^BenchmarkStoreBatch$/^uids=10000$`},
		{[]string{"CacheVersus/stream=zipf0.9/mode=single"}, `^BenchmarkCacheVersus$/^stream=zipf0\.9$/^mode=single$`},
		{[]string{"Pick/strategy=p2c/mode=single/impl=ours", "Pick/strategy=p2c/mode=single/impl=kratos"},
			`^BenchmarkPick$/^strategy=p2c$/^mode=single$/^(?:impl=ours|impl=kratos)$`},
		{[]string{"EndToEnd"}, `^BenchmarkEndToEnd$`},
		{[]string{"Pick/a", "Cache/a"}, ""},
		{[]string{"Pick/a", "Pick/a/b"}, ""},
		{nil, ""},
	} {
		p, _, err := benchPattern(c.rows)
		if p != c.pattern || (err != nil) != (c.pattern == "") {
			t.Errorf("%q: pattern %q (%v), want %q", c.rows, p, err, c.pattern)
		}
	}
	bt, err := parseBenchtimes("EndToEnd=1x *=100ms")
	if err != nil {
		t.Fatal(err)
	}
	if e2e, _ := bt.of("EndToEnd"); e2e != "1x" {
		t.Errorf("EndToEnd's benchtime %q, want 1x", e2e)
	}
	if pick, _ := bt.of("Pick"); pick != "100ms" {
		t.Errorf("Pick's benchtime %q, want the default 100ms", pick)
	}
	for _, bad := range []string{"", "EndToEnd", "=1x", "Pick="} {
		if _, err := parseBenchtimes(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestRerun re-runs two real rows with this test binary, as TestGoals does,
// and checks that exactly they ran, as many times as asked.
func TestRerun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a benchmark")
	}
	rows := []string{"Pick/strategy=p2c/mode=single/impl=ours", "Pick/strategy=p2c/mode=single/impl=kratos"}
	res, err := rerun(benchtimes{"*": "1000x"}, t.Logf)(rows, 2)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for row := range res {
		got = append(got, row)
	}
	slices.Sort(got)
	if want := []string{rows[1], rows[0]}; !slices.Equal(got, want) {
		t.Fatalf("rows %q ran, want %q", got, want)
	}
	for _, row := range rows {
		if n := len(res[row]["ns/op"]); n != 2 {
			t.Errorf("%s: %d samples, want 2", row, n)
		}
	}
}
