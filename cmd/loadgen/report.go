package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stickyroute/stickyroute/obs"
)

// SchemaVersion is the version of the JSON report's layout.
const SchemaVersion = 1

// Report is every figure of a run; -json writes it as is.
type Report struct {
	Schema   int    `json:"schema"`
	Scenario string `json:"scenario"`
	Backend  string `json:"backend"`
	// Proxied says the real servers were reached through the tool's own TCP
	// proxies (the blip scenario cuts them there): latencies include a hop.
	Proxied  bool      `json:"proxied"`
	Started  time.Time `json:"started"`
	Settings Settings  `json:"settings"`
	// MeasuredSeconds is the part of the run after the warm-up.
	MeasuredSeconds float64 `json:"measured_seconds"`
	// TargetRate is the open-loop rate (0 in the closed loop);
	// AchievedRate the routing calls per second measured.
	TargetRate   float64 `json:"target_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	// Ops are the latencies per operation, each timed from its intended
	// start (in the open loop, from its release when the generator released
	// it within 2 ms of its slot: its own timer granularity is not the
	// system's latency). GeneratorLate counts operations released later than
	// that, timed from their slot, of GeneratorReleased released by the open
	// loop (both over the whole run).
	Ops               map[string]Latency `json:"ops"`
	GeneratorLate     int64              `json:"generator_late"`
	GeneratorReleased int64              `json:"generator_released"`
	// CacheHitRatio is over the clients' caches in the measured part.
	CacheHitRatio float64 `json:"cache_hit_ratio"`
	// Errors counts failed operations by class (obs.ErrorClass, or
	// "pod_down" for a claim on a crashed pod), over the whole run.
	Errors map[string]int64 `json:"errors"`
	// ErrorSamples holds the first message of each error class.
	ErrorSamples map[string]string `json:"error_samples"`
	Invariants   Invariants        `json:"invariants"`
	// Skew is max/mean users per accepting pod, over the intervals.
	Skew       SkewStats        `json:"skew"`
	Placements map[string]int64 `json:"placements_per_pod"`
	Drain      *DrainReport     `json:"drain,omitempty"`
	Crash      *CrashReport     `json:"crash,omitempty"`
	Blip       *BlipReport      `json:"blip,omitempty"`
	Storm      *StormReport     `json:"storm,omitempty"`
	Ramp       *RampReport      `json:"ramp,omitempty"`
	Timeline   []Interval       `json:"timeline"`
	Findings   []obs.Finding    `json:"findings"`
}

// Settings echo the configuration that shaped the figures.
type Settings struct {
	Pods        int     `json:"pods"`
	Clients     int     `json:"clients"`
	Users       int     `json:"users"`
	Zipf        float64 `json:"zipf"`
	SessionMS   float64 `json:"session_ms"`
	NewSessions float64 `json:"new_sessions"`
	Mode        string  `json:"mode"` // "open" or "closed"
	Rate        float64 `json:"rate"`
	Concurrency int     `json:"concurrency"`
	DurationMS  float64 `json:"duration_ms"`
	WarmupMS    float64 `json:"warmup_ms"`
	Seed        uint64  `json:"seed"`
	HeartbeatMS float64 `json:"heartbeat_ms"`
	StaleMS     float64 `json:"staleness_ms"`
	RefreshMS   float64 `json:"refresh_ms"`
	// SLOMS is the p99 bound (-slo) of the ramp and the analyzer.
	SLOMS float64 `json:"slo_ms"`
}

// Invariants count what must never happen; all zero in a good run. Each is
// judged against what the answering client knew when it decided: a pod's
// DenyNewCall or Shutdown once a refresh that began after the publish had
// ended, and a crashed pod's staleness by its own clock (with ToleranceMS of
// slack). A pod that merely
// looked dead to a client (its heartbeats late under overload) may lose its
// users: that is the contract, not a violation.
type Invariants struct {
	// DoubleLinked counts answers naming another pod than the one holding
	// the user's session while the client saw that pod routable (before and
	// after the call) and the session stayed on it, and claims refused because another pod the client saw
	// routable held the user from before the routing call began.
	DoubleLinked int64 `json:"double_linked"`
	// UnroutableRoutes counts answers naming a pod whose Shutdown was in the
	// client's view, or a crashed pod past its staleness window.
	UnroutableRoutes int64 `json:"unroutable_routes"`
	// DrainViolations counts picks, for new users, of a pod whose
	// DenyNewCall was in the picking client's view.
	DrainViolations int64   `json:"drain_violations"`
	ToleranceMS     float64 `json:"tolerance_ms"`
}

// Total is the number of violations of every kind.
func (i Invariants) Total() int64 { return i.DoubleLinked + i.UnroutableRoutes + i.DrainViolations }

// SkewStats is max/mean users per accepting pod: the mean and the worst over
// the measured intervals.
type SkewStats struct {
	Mean float64 `json:"mean"`
	Max  float64 `json:"max"`
}

// Interval is one second of the run, for the timeline charts.
type Interval struct {
	T           float64 `json:"t_s"` // end of the interval, seconds since the start
	Ops         int64   `json:"ops"`
	Rate        float64 `json:"rate"` // routing calls per second in the interval
	Errors      int64   `json:"errors"`
	P50         float64 `json:"p50_us"`
	P90         float64 `json:"p90_us"`
	P99         float64 `json:"p99_us"`
	Max         float64 `json:"max_us"`
	HitRatio    float64 `json:"hit_ratio"`
	UsersPerPod []int64 `json:"users_per_pod"`
	Sessions    int64   `json:"sessions"`
}

// DrainReport is the drain scenario: Pod goes DenyNewCall at DenyAt, its
// remaining users are released after the drain window, and it shuts down at
// ShutdownAt (seconds since the start).
type DrainReport struct {
	Pod        int     `json:"pod"`
	DenyAt     float64 `json:"deny_at_s"`
	ShutdownAt float64 `json:"shutdown_at_s"`
	// PlacedAfterDeny counts new users placed on the pod once clients had
	// time to see DenyNewCall (must be 0).
	PlacedAfterDeny int64 `json:"placed_after_deny"`
	// ServedDuringDrain counts answers naming the pod for its existing users
	// while it drained: they stayed, as they must.
	ServedDuringDrain int64 `json:"served_during_drain"`
	Released          int64 `json:"released"`
	Respected         bool  `json:"respected"`
}

// CrashReport is the crash scenario: Pod stops heartbeating at At; every
// client stopped routing to it DetectedAfterMS later, within BoundMS
// (staleness + refresh + slack) when Within.
type CrashReport struct {
	Pod             int     `json:"pod"`
	At              float64 `json:"at_s"`
	Detected        bool    `json:"detected"`
	DetectedAfterMS float64 `json:"detected_after_ms"`
	BoundMS         float64 `json:"bound_ms"`
	Within          bool    `json:"within"`
	UsersLost       int64   `json:"users_lost"`
}

// BlipReport is the store-blip scenario.
type BlipReport struct {
	At           float64 `json:"at_s"`
	ForMS        float64 `json:"for_ms"`
	ErrorsDuring int64   `json:"errors_during"`
	ErrorsAfter  int64   `json:"errors_after"`
	// RecoveredAfterMS is the time from the end of the outage to the first
	// routing call started after it that succeeded.
	RecoveredAfterMS float64 `json:"recovered_after_ms"`
	Recovered        bool    `json:"recovered"`
}

// StormReport is the login storm: Users new users at At.
type StormReport struct {
	Users            int     `json:"users"`
	At               float64 `json:"at_s"`
	CompletedAfterMS float64 `json:"completed_after_ms"`
	Latency          Latency `json:"latency"`
	// InSession are the users in session per pod when the storm began;
	// Placements the storm's users per pod that claimed them.
	InSession  map[string]int64 `json:"in_session_per_pod"`
	Placements map[string]int64 `json:"placements_per_pod"`
	// Skew is max/mean over the pods of the users right after the storm
	// (in session when it began plus those it placed); PlacedSkew the same
	// over the storm's placements alone.
	Skew       float64 `json:"skew"`
	PlacedSkew float64 `json:"placed_skew"`
}

// RampReport is the capacity search: the highest rate whose p99 held the
// SLO (Capacity, 0 when none did) and the lowest that missed (Missed, 0 when
// none did: the capacity is at least the ramp's maximum).
type RampReport struct {
	SLOUS float64 `json:"slo_us"`
	// StepMS is the time spent at each rate (-ramp-step).
	StepMS   float64    `json:"step_ms"`
	Steps    []RampStep `json:"steps"`
	Capacity float64    `json:"capacity"`
	Missed   float64    `json:"missed"`
	// Floor is the same search with routing replaced by a fixed in-memory
	// table (-floor), and FloorRatio Capacity / Floor.Capacity: the share of
	// the floor's capacity left with routing.
	Floor      *RampReport `json:"floor,omitempty"`
	FloorRatio float64     `json:"floor_ratio,omitempty"`
}

// RampStep is one rate of the ramp, begun At seconds into the run. Retry
// marks a step that ran its rate again after the step before it missed: the
// rate is judged by the retry.
type RampStep struct {
	Rate     float64 `json:"rate"`
	At       float64 `json:"at_s"`
	Achieved float64 `json:"achieved"`
	P99      float64 `json:"p99_us"`
	Errors   int64   `json:"errors"`
	Held     bool    `json:"held"`
	Retry    bool    `json:"retry,omitempty"`
	// Late is the share of the step's operations that left the generator
	// late (see Report.GeneratorLate): where it is high, the step measured
	// the generator as much as the system.
	Late float64 `json:"late_share"`
}

// maxLateShare is the share of operations released late above which the
// report warns that the generator, not the system, set the figures.
const maxLateShare = 0.01

// lateShare is the share of the open loop's operations released late.
func (r *Report) lateShare() float64 {
	if r.GeneratorReleased == 0 {
		return 0
	}
	return float64(r.GeneratorLate) / float64(r.GeneratorReleased)
}

// WriteTable writes the report for people, as a table.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format+"\n", a...) }
	p("stickyroute loadgen\tscenario %s on %s Redis, %d pods, %d clients, %d users, seed %d",
		r.Scenario, r.Backend, r.Settings.Pods, r.Settings.Clients, r.Settings.Users, r.Settings.Seed)
	if r.Proxied {
		p("\tthrough a local TCP proxy per Redis node (the blip cuts them): latencies include that hop")
	}
	load := fmt.Sprintf("open loop at %.0f ops/s", r.TargetRate)
	if r.Settings.Mode == "closed" {
		load = fmt.Sprintf("closed loop, %d workers", r.Settings.Concurrency)
	}
	p("load\t%s; measured %.1fs after %.1fs warm-up; p99 bound %s (-slo)", load, r.MeasuredSeconds, r.Settings.WarmupMS/1e3,
		time.Duration(r.Settings.SLOMS*float64(time.Millisecond)))
	p("achieved\t%.0f routing calls/s, cache hit ratio %.1f%%, %d of %d operations released late by the generator",
		r.AchievedRate, 100*r.CacheHitRatio, r.GeneratorLate, r.GeneratorReleased)
	if share := r.lateShare(); share > maxLateShare {
		p("warning\t%.1f%% of the operations left the generator more than %v after their slot: the generator fell behind", 100*share, generatorSlack)
		p("\t(this machine could not send at the rate asked). Those are timed from their slot, so their latency includes the")
		p("\tgenerator's own delay, and the rate achieved is a limit of the generator, not of the system under test.")
	}
	p("")
	p("op\tcount\terrors\tp50\tp90\tp99\tp99.9\tmax")
	for _, name := range opNames {
		l := r.Ops[name]
		p("%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s", name, l.Count, l.Errors, us(l.P50), us(l.P90), us(l.P99), us(l.P999), us(l.Max))
	}
	p("")
	inv := r.Invariants
	verdict := "OK"
	if inv.Total() > 0 {
		verdict = "VIOLATED"
	}
	p("invariants\t%s: double-linked %d, routed to unroutable pod %d, drain violations %d (tolerance %.0fms)",
		verdict, inv.DoubleLinked, inv.UnroutableRoutes, inv.DrainViolations, inv.ToleranceMS)
	p("skew\tusers per pod max/mean: mean %.2f, worst %.2f", r.Skew.Mean, r.Skew.Max)
	p("placements\t%s", perPod(r.Placements))
	p("errors\t%s", byClass(r.Errors))
	for _, k := range sortedKeys(r.ErrorSamples) {
		p("\t%s: %s", k, r.ErrorSamples[k])
	}
	if d := r.Drain; d != nil {
		p("drain\tpod %d DenyNewCall at %.1fs, Shutdown at %.1fs; new users placed on it after deny %d; existing users served %d; released %d; respected %v",
			d.Pod, d.DenyAt, d.ShutdownAt, d.PlacedAfterDeny, d.ServedDuringDrain, d.Released, d.Respected)
	}
	if c := r.Crash; c != nil {
		p("crash\tpod %d stopped at %.1fs; detected by every client after %.0fms (bound %.0fms, within %v); %d sessions lost",
			c.Pod, c.At, c.DetectedAfterMS, c.BoundMS, c.Within, c.UsersLost)
	}
	if b := r.Blip; b != nil {
		p("blip\tstore unreachable at %.1fs for %.0fms; errors during %d, after %d; recovered %.0fms after (%v)",
			b.At, b.ForMS, b.ErrorsDuring, b.ErrorsAfter, b.RecoveredAfterMS, b.Recovered)
	}
	if s := r.Storm; s != nil {
		p("storm\t%d new users at %.1fs, all placed after %.0fms; p99 %s, errors %d; skew %.3f (in session %s + placed %s; placed alone %.3f)",
			s.Users, s.At, s.CompletedAfterMS, us(s.Latency.P99), s.Latency.Errors, s.Skew, perPod(s.InSession), perPod(s.Placements), s.PlacedSkew)
	}
	if rp := r.Ramp; rp != nil {
		rampTable(p, "ramp", rp)
		if f := rp.Floor; f != nil {
			rampTable(p, "floor", f)
			p("routing\tcapacity with routing %.0f ops/s = %.2f × the floor's %.0f ops/s (the same run with routing replaced by a fixed in-memory table)",
				rp.Capacity, rp.FloorRatio, f.Capacity)
		}
	}
	for _, f := range r.Findings {
		subject := ""
		if f.Subject != "" {
			subject = " (" + f.Subject + ")"
		}
		p("analyzer\t[%s] %s%s: %s", f.Severity, f.Rule, subject, f.Summary)
	}
	return tw.Flush()
}

// rampTable writes the steps of a capacity search and what it established.
func rampTable(p func(string, ...any), name string, rp *RampReport) {
	p("")
	p("%s rate\tachieved\tp99\terrors\tlate\theld (p99 ≤ %s)", name, us(rp.SLOUS))
	late := 0.0 // of the last step that held at the capacity
	for _, st := range rp.Steps {
		retry := ""
		if st.Retry {
			retry = " (again)"
		}
		p("%.0f%s\t%.0f\t%s\t%d\t%.1f%%\t%v", st.Rate, retry, st.Achieved, us(st.P99), st.Errors, 100*st.Late, st.Held)
		if st.Held && st.Rate == rp.Capacity {
			late = st.Late
		}
	}
	p("%s capacity\t%s", name, rp.capacityText())
	if late > maxLateShare {
		p("\t%.1f%% of that step's operations left the generator late: the capacity found is partly the generator's", 100*late)
	}
}

// capacityText says what the search established.
func (rp *RampReport) capacityText() string {
	slo := us(rp.SLOUS)
	switch {
	case rp.Capacity == 0 && rp.Missed == 0:
		return "not measured: the run ended before the first step"
	case rp.Capacity == 0:
		return fmt.Sprintf("below %.0f ops/s: no rate tried held p99 ≤ %s", rp.Missed, slo)
	case rp.Missed == 0:
		return fmt.Sprintf("at least %.0f ops/s with p99 ≤ %s: the ramp's maximum held", rp.Capacity, slo)
	}
	return fmt.Sprintf("%.0f ops/s with p99 ≤ %s (held; %.0f ops/s missed)", rp.Capacity, slo, rp.Missed)
}

// us formats microseconds for people.
func us(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fs", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.2fms", v/1e3)
	}
	return fmt.Sprintf("%.0fµs", v)
}

func perPod(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if len(keys[i]) != len(keys[j]) {
			return len(keys[i]) < len(keys[j])
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("pod %s: %d", k, m[k])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func byClass(m map[string]int64) string {
	keys := sortedKeys(m)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
