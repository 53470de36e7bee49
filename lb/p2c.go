package lb

import "github.com/stickyroute/stickyroute/internal/xruntime"

// P2C is the power of two choices: it samples two distinct eligible pods at
// random and picks the one with the lower load + in-flight picks per unit of
// weight. It is the engine's default for placing new users: unlike "pick the
// least loaded", it does not send every client to the same pod while the
// published loads are stale, and the in-flight count corrects them locally.
//
// The in-flight count is that of the caller's processor stripe (the picks made
// on this processor that have not reported Done), so a pick reads and writes
// only memory its own core owns; each processor balances its own picks, and
// the sum of balanced streams is balanced. A pod that slow-starts wins its
// comparisons only in proportion to its current share.
//
// With Config.Shared (or a Band) it compares the in-flight picks over every
// processor instead, weighed by SetPickWeight: each processor filling the
// least loaded pod on its own would overfill it when picks stand for
// long-lived work.
type P2C struct{}

func (P2C) tableFollowsHealth() bool { return false }

func (P2C) global() bool { return false }

// String returns "p2c".
func (P2C) String() string { return "p2c" }

func (P2C) build(*snapshot) []uint16 { return nil }

func (P2C) pick(b *Balancer, s *snapshot, sid int, _ uint64, _ bool) int {
	cs := s.cands
	n := uint32(len(cs))
	switch n {
	case 0:
		return -1
	case 1:
		return int(cs[0].i)
	}
	r := xruntime.Rand64()
	// Two distinct indices from one random word, by multiply-shift (no division).
	i := uint32(uint64(uint32(r)) * uint64(n) >> 32)
	j := uint32(r >> 32 * uint64(n-1) >> 32)
	if j >= i {
		j++
	}
	x, y := &cs[i], &cs[j]
	var sx, sy int64
	if b.shared {
		w := b.weight.Load()
		sx, sy = x.load+w*x.inflight.Load(), y.load+w*y.inflight.Load()
	} else {
		cc := s.candCells[sid]
		sx, sy = x.load+cc[i].inflight(), y.load+cc[j].inflight()
	}
	// sy/wy < sx/wx without division.
	if sy*int64(x.weight) < sx*int64(y.weight) {
		x, y = y, x
	}
	if x.ramp < rampOne && !admit(x.ramp, xruntime.Rand64()) {
		return int(y.i)
	}
	return int(x.i)
}
