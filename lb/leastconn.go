package lb

import "github.com/stickyroute/stickyroute/internal/xruntime"

// LeastConn picks the eligible pod with the fewest connections per unit of
// weight: its in-flight picks over every processor plus the connection count
// the application reported with UpdateStats. Ties go to the first pod after a
// random starting point, so equal pods share the picks. A pod that slow-starts
// is skipped with probability 1 - its share.
type LeastConn struct{}

func (LeastConn) global() bool { return true }

// String returns "least_conn".
func (LeastConn) String() string { return "least_conn" }

func (LeastConn) build(*snapshot) []uint16 { return nil }

func (LeastConn) pick(_ *Balancer, s *snapshot, _ int, _ uint64, _ bool) int {
	cs := s.cands
	n := len(cs)
	if n == 0 {
		return -1
	}
	start := int(uint64(xruntime.Rand32()) * uint64(n) >> 32)
	if s.uniform && !s.ramping {
		// The common case, kept tight: equal weights, nobody slow-starting.
		best, bestScore := start, cs[start].state.active.Load()
		for k := start + 1; k < n; k++ {
			if sc := cs[k].state.active.Load(); sc < bestScore {
				best, bestScore = k, sc
			}
		}
		for k := 0; k < start; k++ {
			if sc := cs[k].state.active.Load(); sc < bestScore {
				best, bestScore = k, sc
			}
		}
		return int(cs[best].i)
	}
	best, bestScore, bestWeight := -1, int64(0), int64(1)
	for _, part := range [2][]cand{cs[start:], cs[:start]} {
		for k := range part {
			c := &part[k]
			if c.ramp < rampOne && !admit(c.ramp, xruntime.Rand64()) {
				continue
			}
			sc, w := c.state.active.Load(), int64(c.weight)
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
