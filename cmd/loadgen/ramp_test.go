package main

import (
	"flag"
	"testing"
	"time"
)

// TestRampSearch runs the capacity search against systems that hold every
// rate up to a capacity: it must bracket the capacity (the highest rate that
// held is at most it, the lowest that missed above it) to the search's
// precision, whether the first step holds or misses.
func TestRampSearch(t *testing.T) {
	cases := []struct {
		name                 string
		first, factor, max   float64
		capacity             float64
		wantHeld, wantMissed bool // whether a rate held / missed at all
	}{
		{"rises_then_bisects", 100, 2, 1e6, 5000, true, true},
		{"first_step_misses", 10_000, 1.5, 1e6, 700, true, true},
		{"first_step_misses_far", 1e6, 4, 1e6, 3, true, true},
		{"holds_at_the_maximum", 100, 2, 800, 1e9, true, false},
		{"nothing_holds", 100, 2, 1e6, 0.5, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRampSearch(c.first, c.factor, c.max)
			var steps []float64
			for rate, ok := r.rate(); ok; rate, ok = r.rate() {
				if len(steps) == 100 {
					t.Fatalf("no end after 100 steps: %v", steps)
				}
				steps = append(steps, rate)
				r.judged(rate, rate <= c.capacity)
			}
			if (r.held > 0) != c.wantHeld || (r.missed > 0) != c.wantMissed {
				t.Fatalf("held %v, missed %v after %v", r.held, r.missed, steps)
			}
			if r.held > c.capacity || (r.missed > 0 && r.missed <= c.capacity) {
				t.Fatalf("bracket [%v, %v) does not hold capacity %v (steps %v)", r.held, r.missed, c.capacity, steps)
			}
			if r.held > 0 && r.missed > 0 && r.missed > r.held*rampPrecision && r.bisections < rampBisections {
				t.Fatalf("stopped at [%v, %v) after %d bisections (steps %v)", r.held, r.missed, r.bisections, steps)
			}
			if !c.wantMissed && r.held != c.max {
				t.Fatalf("held %v, want the maximum %v", r.held, c.max)
			}
			if steps[0] != c.first {
				t.Fatalf("first step %v, want %v", steps[0], c.first)
			}
		})
	}
}

// TestSLODefault: without -slo the bound is EmbeddedSLO on the embedded
// Redis and 10ms on a real one; -slo always wins.
func TestSLODefault(t *testing.T) {
	for _, c := range []struct {
		args []string
		want time.Duration
	}{
		{nil, EmbeddedSLO},
		{[]string{"-slo", "2ms"}, 2 * time.Millisecond},
		{[]string{"-redis", "127.0.0.1:1"}, 10 * time.Millisecond},
		{[]string{"-cluster", "127.0.0.1:1,127.0.0.1:2", "-slo", "3ms"}, 3 * time.Millisecond},
	} {
		cfg, err := parseFlags(c.args, flag.NewFlagSet("loadgen", flag.ContinueOnError))
		if err != nil || cfg.SLO != c.want {
			t.Errorf("%q: SLO %v (%v), want %v", c.args, cfg.SLO, err, c.want)
		}
	}
}
