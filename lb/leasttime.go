package lb

import (
	"github.com/stickyroute/stickyroute/internal/xruntime"
	"time"
)

// LeastTime picks the eligible pod with the lowest expected wait: its
// response-time average (fed by Done and UpdateStats) times its in-flight
// picks over every processor, plus its reported connections, plus one, per
// unit of weight. The average decays while a pod gets no
// samples (it counts half after Config.DecayTime idle), so a pod that was slow
// once is tried again. A pod without samples counts as 1µs. Ties go to the
// first pod after a random starting point; a pod that slow-starts is skipped
// with probability 1 - its share. The in-flight picks are weighed by
// SetPickWeight.
type LeastTime struct{}

func (LeastTime) tableFollowsHealth() bool { return false }

func (LeastTime) global() bool { return true }

// String returns "least_time".
func (LeastTime) String() string { return "least_time" }

func (LeastTime) build(*snapshot) []uint16 { return nil }

// unknownTime is the response time assumed for a pod without samples.
const unknownTime = int64(time.Microsecond)

func (LeastTime) pick(b *Balancer, s *snapshot, _ int, _ uint64, _ bool) int {
	cs := s.cands
	n := len(cs)
	if n == 0 {
		return -1
	}
	now := b.now()
	pw := b.weight.Load()
	start := int(uint64(xruntime.Rand32()) * uint64(n) >> 32)
	best, bestScore, bestWeight := -1, 0.0, 1.0
	for _, part := range [2][]cand{cs[start:], cs[:start]} {
		for k := range part {
			c := &part[k]
			if c.ramp < rampOne && !admit(c.ramp, xruntime.Rand64()) {
				continue
			}
			t := max(c.state.decayedEWMA(now, b.tau), unknownTime)
			sc, w := float64(t)*float64(pw*c.inflight.Load()+c.conns.Load()+1), float64(c.weight)
			if best < 0 || sc*bestWeight < bestScore*w {
				best, bestScore, bestWeight = int(c.i), sc, w
			}
		}
	}
	if best < 0 { // every candidate was a slow-starting pod sitting this one out
		return int(cs[start].i)
	}
	return best
}
