package main

import (
	"context"
	"math"
	"sync"
)

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

// turns has two runs take their ramp steps in turn (-floor): a step of one
// (with its retry), then a step of the other, so that whatever the machine
// and Redis go through reaches both searches alike. Only the side whose
// turn it is sends load; the other is paused, its backlog drained.
type turns struct {
	mu    sync.Mutex
	next  int     // the side whose step is next
	ready [2]bool // the side has warmed up and paused
	out   [2]bool // the side takes no more steps
	wake  chan struct{}
}

func newTurns() *turns { return &turns{wake: make(chan struct{})} }

// change applies f and wakes the waiting side.
func (t *turns) change(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f()
	close(t.wake)
	t.wake = make(chan struct{})
}

// quit records that side takes no more steps (its search is over, or its
// run failed): the other goes on alone.
func (t *turns) quit(side int) { t.change(func() { t.out[side] = true }) }

// turn is one side of turns.
type turn struct {
	t    *turns
	side int
}

// begin records that this side has warmed up and paused: the steps start
// once both have (the first side first).
func (tn *turn) begin() { tn.t.change(func() { tn.t.ready[tn.side] = true }) }

// pass gives the next step to the other side.
func (tn *turn) pass() { tn.t.change(func() { tn.t.next = 1 - tn.side }) }

// wait blocks until this side may take its step; false when ctx ended.
func (tn *turn) wait(ctx context.Context) bool {
	t, other := tn.t, 1-tn.side
	for {
		t.mu.Lock()
		ok := t.out[other] || (t.ready[other] && t.next == tn.side)
		wake := t.wake
		t.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return false
		}
	}
}
