package lb

import "fmt"

// Strategy decides which eligible pod a pick goes to. The strategies of this
// package are small values (RoundRobin{}, SmoothWeighted{}, LeastConn{},
// LeastTime{}, P2C{}, Maglev{}); a Balancer keeps whatever state they need.
// The interface is sealed: its methods read the balancer's snapshot.
type Strategy interface {
	fmt.Stringer
	// build returns the lookup table the strategy picks from for snapshot s
	// (indices into s.entries), or nil. It runs when membership, weights,
	// eligibility or slow-start shares change, not on every pick.
	build(s *snapshot) []uint16
	// pick returns the index into s.entries of the picked pod, or -1 when none
	// is eligible. sid is the caller's stripe; h is the key's hash when keyed.
	pick(b *Balancer, s *snapshot, sid int, h uint64, keyed bool) int
	// tableFollowsHealth reports whether the table depends on eligibility and
	// slow-start shares, not only on the members and their weights.
	tableFollowsHealth() bool
	// global reports whether the strategy reads each pod's in-flight count
	// over all processors (so picks must keep it).
	global() bool
}

// prober is a strategy with a per-key order of alternatives (consistent
// hashing): a pick that must move on follows it, so every client moves the same key the same way.
type prober interface {
	// probeAt returns the entry index of the k-th alternative (k ≥ 1) for h.
	probeAt(s *snapshot, h uint64, k int) int
}
