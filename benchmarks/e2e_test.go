package benchmarks

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/internal/redistest"
)

// The end-to-end row: the load generator's steady scenario (cmd/loadgen: a
// fleet of 4 server pods and 4 clients in one process, Zipf users with
// sessions, 10% of operations starting one) at a fixed 2,000 routing calls
// per second on the real standalone Redis, for e2eDuration. It reports the
// routing call's p50 and p99 (timed from each operation's intended start),
// the CPU the whole simulated fleet spent per scheduled operation (user +
// system time of the loadgen process, Redis excluded), the share of the
// target rate achieved, and the invariant violations the generator counted.
//
// Goals: the rate is held (≥ 0.95 of the target) with no violation. The row
// has no peer: the end-to-end latency is the sum of what the rows above
// compare.

const (
	e2eRate     = 2000
	e2eDuration = 6 * time.Second
	e2eWarmup   = time.Second
)

var _ = addGoals(
	ratioAtLeast("end to end: steady scenario holds 2,000 ops/s", 0.95, "achieved/target", "EndToEnd"),
	goal{what: "end to end: no invariant violated", kind: zero, unit: "violations", ours: "EndToEnd"},
)

// e2eReport is the part of the loadgen's JSON report the row reads.
type e2eReport struct {
	AchievedRate float64 `json:"achieved_rate"`
	Ops          map[string]struct {
		Count int64   `json:"count"`
		P50   float64 `json:"p50_us"`
		P99   float64 `json:"p99_us"`
	} `json:"ops"`
	Invariants struct {
		DoubleLinked     int64 `json:"double_linked"`
		UnroutableRoutes int64 `json:"unroutable_routes"`
		DrainViolations  int64 `json:"drain_violations"`
	} `json:"invariants"`
}

// BenchmarkEndToEnd runs the load generator once per iteration (run it with
// -benchtime 1x: each run lasts e2eDuration).
func BenchmarkEndToEnd(b *testing.B) {
	addr := redistest.Addrs(b, redistest.Standalone)[0]
	dir := b.TempDir()
	bin := filepath.Join(dir, "loadgen")
	build := exec.Command("go", "build", "-o", bin, "./cmd/loadgen")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building the load generator: %v\n%s", err, out)
	}
	for i := range b.N {
		js := filepath.Join(dir, "run"+strconv.Itoa(i)+".json")
		run := exec.Command(bin, "-redis", addr, "-namespace", redistest.Namespace(b), "-scenario", "steady",
			"-rate", strconv.Itoa(e2eRate), "-duration", e2eDuration.String(), "-warmup", e2eWarmup.String(),
			"-quiet", "-json", js)
		out, err := run.CombinedOutput()
		if err != nil && run.ProcessState.ExitCode() != 1 { // 1: a violation, reported below
			b.Fatalf("loadgen: %v\n%s", err, out)
		}
		raw, err := os.ReadFile(js)
		if err != nil {
			b.Fatal(err)
		}
		var r e2eReport
		if err := json.Unmarshal(raw, &r); err != nil {
			b.Fatal(err)
		}
		route := r.Ops["route"]
		cpu := run.ProcessState.UserTime() + run.ProcessState.SystemTime()
		scheduled := float64(e2eRate) * e2eDuration.Seconds()
		b.ReportMetric(route.P50*1e3, "p50-ns")
		b.ReportMetric(route.P99*1e3, "p99-ns")
		b.ReportMetric(float64(cpu.Nanoseconds())/scheduled, "cpu-ns/op")
		b.ReportMetric(r.AchievedRate/e2eRate, "achieved/target")
		b.ReportMetric(float64(r.Invariants.DoubleLinked+r.Invariants.UnroutableRoutes+r.Invariants.DrainViolations), "violations")
	}
}
