package main

import "math"

// The capacity search's precision: it stops when the lowest rate that missed
// is within rampPrecision of the highest that held, or after rampBisections
// steps between them; below rampMinRate it gives up looking for a rate that
// holds.
const (
	rampPrecision  = 1.1
	rampBisections = 4
	rampMinRate    = 1.0
)

// rampSearch finds the highest rate that holds. It rises by factor from the
// first rate while steps hold, up to max. When a step misses before any held
// (the first step may miss), it steps down by factor until one holds. Once
// a rate that held and a higher one that missed bracket the capacity, it
// bisects between them (geometrically: rates span orders of magnitude).
// Each step is judged alone, so a noisy step moves the bracket, never the
// search's direction for good.
type rampSearch struct {
	factor, max float64
	// held is the highest rate that held, missed the lowest that missed
	// (0: none yet).
	held, missed float64
	next         float64
	bisections   int
	done         bool
}

func newRampSearch(first, factor, max float64) *rampSearch {
	return &rampSearch{factor: factor, max: max, next: math.Min(first, max)}
}

// rate returns the rate of the next step; false when the search is over.
func (r *rampSearch) rate() (float64, bool) { return r.next, !r.done }

// judged records whether the step at rate held, and chooses the next rate.
func (r *rampSearch) judged(rate float64, held bool) {
	if held {
		r.held = math.Max(r.held, rate)
	} else if r.missed == 0 || rate < r.missed {
		r.missed = rate
	}
	switch {
	case r.missed == 0: // rising
		if rate >= r.max {
			r.done = true // held at the maximum: the capacity is at least that
			return
		}
		r.next = math.Min(rate*r.factor, r.max)
	case r.held == 0: // stepping down, to rampMinRate at the lowest
		if rate <= rampMinRate {
			r.done = true
			return
		}
		r.next = math.Max(rate/r.factor, rampMinRate)
	case r.missed <= r.held*rampPrecision || r.bisections == rampBisections:
		r.done = true
	default:
		r.bisections++
		r.next = math.Sqrt(r.held * r.missed)
	}
}
