package lb

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// report is what Done does after releasing the in-flight count.
func (b *Balancer) report(st *podState, info DoneInfo) {
	if info.Err != nil && errors.Is(info.Err, context.Canceled) {
		return // the caller gave up; says nothing about the pod
	}
	if info.Duration > 0 {
		st.observe(info.Duration, b.now())
	}
	if info.Err == nil {
		if st.fails.Load() != 0 {
			st.fails.Store(0)
		}
		return
	}
	threshold := int32(b.cfg.Ejection.Failures)
	if threshold <= 0 {
		return
	}
	// At the threshold, and again every threshold failures while the ejection
	// cap keeps the pod in, try to eject it.
	if f := st.fails.Add(1); f >= threshold && f%threshold == 0 {
		b.eject(st.pod)
	}
}

// eject takes pod out of the picks for a back-off, unless that would eject
// more than the configured fraction of the members.
func (b *Balancer) eject(pod int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.members[pod]
	if !ok || b.closed || m.ejected || m.down {
		return
	}
	if b.ejectedLocked()+1 > b.maxEjectedLocked() {
		return
	}
	e := b.cfg.Ejection
	now := time.Now()
	if !m.readmitted.IsZero() && now.Sub(m.readmitted) > e.Max {
		m.ejections = 0 // it behaved for a whole maximum back-off: start over
	}
	d := e.Base << min(m.ejections, 30)
	if d > e.Max || d <= 0 {
		d = e.Max
	}
	if e.Jitter > 0 {
		d += time.Duration((rand.Float64()*2 - 1) * e.Jitter * float64(d))
	}
	m.ejections++
	m.ejected = true
	m.until = now.Add(d)
	m.timer = time.AfterFunc(d, func() { b.readmit(pod, m) })
	b.healthChangedLocked()
	b.publishLocked()
}

// readmit ends m's ejection when its back-off is over, unless m left the
// set or its ejection ended otherwise meanwhile.
func (b *Balancer) readmit(pod int, m *member) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.members[pod] != m || !m.ejected {
		return
	}
	b.endEjectionLocked(m)
	b.publishLocked()
}

// endEjectionLocked puts m back in the picks (slow-starting).
func (b *Balancer) endEjectionLocked(m *member) {
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	m.ejected = false
	m.readmitted = time.Now()
	m.state.fails.Store(0)
	b.startRampLocked(m)
	b.healthChangedLocked()
}

// ejectedLocked counts the members out on an ejection.
func (b *Balancer) ejectedLocked() int {
	n := 0
	for _, m := range b.members {
		if m.ejected {
			n++
		}
	}
	return n
}

// maxEjectedLocked is how many members may be ejected at once: the floor of
// MaxFraction × members, so a lone pod is never ejected.
func (b *Balancer) maxEjectedLocked() int {
	return int(b.cfg.Ejection.MaxFraction * float64(len(b.members)))
}

// capEjectionsLocked ends the ejections that the cap no longer allows after
// the set shrank, those due to end soonest first.
func (b *Balancer) capEjectionsLocked() {
	for over := b.ejectedLocked() - b.maxEjectedLocked(); over > 0; over-- {
		var first *member
		for _, m := range b.members {
			if m.ejected && (first == nil || m.until.Before(first.until)) {
				first = m
			}
		}
		b.endEjectionLocked(first)
	}
}

// SetHealthy marks pod healthy or unhealthy by hand (the old API's
// SetPodHealth). An unhealthy pod gets no picks until marked healthy again,
// when it slow-starts; the ejection cap does not apply to it.
func (b *Balancer) SetHealthy(pod int, healthy bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.members[pod]
	if !ok {
		return invalidf("pod %d is not a member", pod)
	}
	if m.down == !healthy {
		return nil
	}
	m.down = !healthy
	if m.ejected {
		// The mark by hand supersedes the ejection: one reason to be out at a time.
		b.endEjectionLocked(m)
	}
	if healthy {
		m.state.fails.Store(0)
		b.startRampLocked(m)
	}
	b.healthChangedLocked()
	b.publishLocked()
	return nil
}

// healthChangedLocked notes that eligibility or slow-start shares changed:
// the strategy's table is rebuilt only if it depends on them (Maglev's does
// not: it is built over the members, and picks skip the ineligible).
func (b *Balancer) healthChangedLocked() {
	if b.strategy.tableFollowsHealth() {
		b.tableOK = false
	}
}

// rampSteps is how many steps a slow start takes.
const rampSteps = 10

// startRampLocked begins m's slow start, when configured and when some other
// member takes picks meanwhile (a lone pod has nothing to ramp against).
func (b *Balancer) startRampLocked(m *member) {
	if b.cfg.SlowStart <= 0 || b.closed {
		return
	}
	others := false
	for _, o := range b.members {
		if o != m && o.eligible() {
			others = true
			break
		}
	}
	if !others {
		m.ramp = rampOne
		return
	}
	m.rampStart = time.Now()
	m.ramp = rampOne / rampSteps
	if b.ramper == nil {
		b.ramper = time.AfterFunc(b.cfg.SlowStart/rampSteps, b.rampTick)
	}
}

// rampTick raises the share of every slow-starting member by the time passed.
func (b *Balancer) rampTick() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ramper = nil
	if b.closed {
		return
	}
	now := time.Now()
	window := b.cfg.SlowStart
	pending := false
	for _, m := range b.members {
		if m.ramp >= rampOne {
			continue
		}
		elapsed := now.Sub(m.rampStart)
		if elapsed >= window {
			m.ramp = rampOne
			continue
		}
		m.ramp = max(uint32(int64(rampOne)*int64(elapsed)/int64(window)), rampOne/rampSteps)
		pending = true
	}
	b.healthChangedLocked()
	b.publishLocked()
	if pending {
		b.ramper = time.AfterFunc(window/rampSteps, b.rampTick)
	}
}
