package lb

import "sync/atomic"

// rampOne is a full share of picks; a slow-starting pod has ramp in [1, rampOne).
const rampOne = 1024

// entry is one member pod as a snapshot publishes it.
type entry struct {
	pod    int
	weight int
	load   int64
	slot   int
	// ramp is the pod's share of picks while it slow-starts, out of rampOne.
	ramp uint32
	// ok: healthy and not ejected, so picks may go there.
	ok    bool
	state *podState
}

// cand is an eligible member as P2C and LeastConn read it.
type cand struct {
	load            int64
	conns, inflight *atomic.Int64 // state's, one load closer
	state           *podState
	i               int32 // index into entries
	weight          int32
	ramp            uint32
}

// snapshot is the immutable pod set every pick reads. Any change builds a new
// one and swaps it in whole; the live counters it points to outlive it.
type snapshot struct {
	// entries are the members sorted by pod index.
	entries []entry
	// eligible are the indices into entries of the members picks may go to.
	eligible []int32
	// cands are the same members laid out for the sampling and scanning
	// strategies: one read gives what they compare.
	cands []cand
	// loadSum is the published load of the eligible members.
	loadSum int64
	// ramping is true while some eligible member slow-starts.
	ramping bool
	// cells[stripe][i] is the counter cell of entries[i] in that stripe; the
	// cells live in blocks that never move, so they outlive the snapshot.
	cells [][]*cell
	// candCells[stripe][k] is the cell of cands[k]: the scans walk it directly.
	candCells [][]*cell
	// uniform is true when every eligible member has the same weight.
	uniform bool
	// conns is true once some pod reported connections: until then scans
	// skip reading the counts.
	conns bool
	// table is the strategy's lookup table of entry indices (round robin while
	// ramping, weighted round robin, Maglev), or nil.
	table []uint16
}

// counts returns the picks of entries[i] and how many of them are in flight,
// summed over every stripe. local says how the balancer counts picks (see
// Balancer.local).
func (s *snapshot) counts(i int, local bool) (picks uint64, inflight int64) {
	var dones uint64
	for _, row := range s.cells {
		picks += row[i].picks.Load()
		dones += row[i].dones.Load()
	}
	if !local {
		inflight = s.entries[i].state.inflight.Load()
		return dones + uint64(inflight), inflight
	}
	return picks, int64(picks - dones)
}

// admit decides, from random bits r, whether a slow-starting entry takes this
// pick: with probability ramp/rampOne.
func admit(ramp uint32, r uint64) bool {
	return ramp >= rampOne || uint32(r%rampOne) < ramp
}
