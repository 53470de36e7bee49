package main

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The operations timed: a client's routing call, a server's claim of a user
// at session start, and its release at session end.
const (
	opRoute   = "route"
	opClaim   = "claim"
	opRelease = "release"
)

var opNames = []string{opRoute, opClaim, opRelease}

// newHist returns a histogram of latencies in microseconds, 1 µs to 1 min,
// 3 significant digits.
func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) }

// recorder holds the latencies of one operation: over the measured part of
// the run, over the current interval (for the timeline) and over the current
// ramp step. Each operation is timed from its intended start, so a stalled
// system shows in the latencies instead of slowing the generator down.
type recorder struct {
	mu                      sync.Mutex
	total, interval, step   *hdrhistogram.Histogram
	count, errors           int64 // measured part
	intervalN, intervalErrs int64
	stepN, stepErrs         int64
}

func newRecorder() *recorder {
	return &recorder{total: newHist(), interval: newHist(), step: newHist()}
}

// record adds one operation that took d; measured is false during warm-up,
// step whether it counts in the current ramp step (it was meant to start
// within the step).
func (r *recorder) record(d time.Duration, failed, measured, step bool) {
	us := max(d.Microseconds(), 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.interval.RecordValue(us)
	r.intervalN++
	if failed {
		r.intervalErrs++
	}
	if step {
		_ = r.step.RecordValue(us)
		r.stepN++
		if failed {
			r.stepErrs++
		}
	}
	if !measured {
		return
	}
	_ = r.total.RecordValue(us)
	r.count++
	if failed {
		r.errors++
	}
}

// Latency is a latency summary, in microseconds.
type Latency struct {
	Count  int64   `json:"count"`
	Errors int64   `json:"errors"`
	P50    float64 `json:"p50_us"`
	P90    float64 `json:"p90_us"`
	P99    float64 `json:"p99_us"`
	P999   float64 `json:"p999_us"`
	Max    float64 `json:"max_us"`
	Mean   float64 `json:"mean_us"`
}

func summarize(h *hdrhistogram.Histogram, n, errs int64) Latency {
	if h.TotalCount() == 0 {
		return Latency{Count: n, Errors: errs}
	}
	return Latency{Count: n, Errors: errs,
		P50: float64(h.ValueAtQuantile(50)), P90: float64(h.ValueAtQuantile(90)),
		P99: float64(h.ValueAtQuantile(99)), P999: float64(h.ValueAtQuantile(99.9)),
		Max: float64(h.Max()), Mean: h.Mean()}
}

// totals summarizes the measured part.
func (r *recorder) totals() Latency {
	r.mu.Lock()
	defer r.mu.Unlock()
	return summarize(r.total, r.count, r.errors)
}

// cutInterval summarizes the interval and starts the next.
func (r *recorder) cutInterval() Latency { return r.cut(r.interval, &r.intervalN, &r.intervalErrs) }

// cutStep summarizes the ramp step and starts the next.
func (r *recorder) cutStep() Latency { return r.cut(r.step, &r.stepN, &r.stepErrs) }

// cut summarizes h with its counts and resets them.
func (r *recorder) cut(h *hdrhistogram.Histogram, n, errs *int64) Latency {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := summarize(h, *n, *errs)
	h.Reset()
	*n, *errs = 0, 0
	return l
}
