package lb

import "github.com/stickyroute/stickyroute/internal/xruntime"

// LeastConn picks the eligible pod with the fewest connections per unit of
// weight: its in-flight picks plus the connection count the application
// reported with UpdateStats. Ties go to the first pod after a random starting
// point, so equal pods share the picks. A pod that slow-starts is skipped with
// probability 1 - its share.
//
// As with P2C, the in-flight picks are those of the caller's processor: a
// global count would be written by every core on every pick and read by every
// scan, and the cache lines bouncing between cores make a parallel pick
// several times slower than a mutex. Each processor's picks go to its least
// connected pod, so the pods stay within one pick per processor of each other.
//
// With Config.Shared (or a Band) a pod's connections are its published load
// plus its in-flight picks over every processor (weighed by SetPickWeight)
// plus its reported connections: where picks place long-lived users, the
// pod with the fewest users, counting those this process just placed.
type LeastConn struct{}

func (LeastConn) tableFollowsHealth() bool { return false }

func (LeastConn) global() bool { return false }

// String returns "least_conn".
func (LeastConn) String() string { return "least_conn" }

func (LeastConn) build(*snapshot) []uint16 { return nil }

func (LeastConn) pick(b *Balancer, s *snapshot, sid int, _ uint64, _ bool) int {
	cs := s.cands
	n := len(cs)
	if n == 0 {
		return -1
	}
	start := int(uint64(xruntime.Rand32()) * uint64(n) >> 32)
	if b.shared {
		return leastShared(b, s, start)
	}
	cc := s.candCells[sid]
	if s.uniform && !s.ramping && !s.conns {
		// The common case, kept tight: equal weights, nobody slow-starting,
		// no reported connections.
		best, bestScore := start, cc[start].inflight()
		for k := start + 1; k < n; k++ {
			if sc := cc[k].inflight(); sc < bestScore {
				best, bestScore = k, sc
			}
		}
		for k := 0; k < start; k++ {
			if sc := cc[k].inflight(); sc < bestScore {
				best, bestScore = k, sc
			}
		}
		return int(cs[best].i)
	}
	if s.uniform && !s.ramping {
		best, bestScore := start, cc[start].inflight()+cs[start].conns.Load()
		for k := start + 1; k < n; k++ {
			if sc := cc[k].inflight() + cs[k].conns.Load(); sc < bestScore {
				best, bestScore = k, sc
			}
		}
		for k := 0; k < start; k++ {
			if sc := cc[k].inflight() + cs[k].conns.Load(); sc < bestScore {
				best, bestScore = k, sc
			}
		}
		return int(cs[best].i)
	}
	best, bestScore, bestWeight := -1, int64(0), int64(1)
	for _, r := range [2][2]int{{start, n}, {0, start}} {
		for k := r[0]; k < r[1]; k++ {
			c := &cs[k]
			if c.ramp < rampOne && !admit(c.ramp, xruntime.Rand64()) {
				continue
			}
			sc, w := cc[k].inflight()+c.conns.Load(), int64(c.weight)
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

// leastShared is LeastConn's pick over the shared counts, from start.
func leastShared(b *Balancer, s *snapshot, start int) int {
	cs := s.cands
	n := len(cs)
	w := b.weight.Load()
	best, bestScore, bestWeight := -1, int64(0), int64(1)
	for k := range n {
		c := &cs[(start+k)%n]
		if c.ramp < rampOne && !admit(c.ramp, xruntime.Rand64()) {
			continue
		}
		sc, cw := c.load+w*c.inflight.Load(), int64(c.weight)
		if s.conns {
			sc += c.conns.Load()
		}
		if best < 0 || sc*bestWeight < bestScore*cw {
			best, bestScore, bestWeight = int(c.i), sc, cw
		}
	}
	if best < 0 { // every candidate was a slow-starting pod sitting this one out
		return int(cs[start].i)
	}
	return best
}
