package lb

import (
	"sync/atomic"
	"time"
)

// Live counters. A pick writes exactly one counter, in the stripe of the
// processor it runs on, so two cores picking at once never write the same
// cache line: per-pod pick counts live in per-stripe blocks of cells, not in
// one shared struct per pod. Counters belong to a pod's slot for the
// balancer's lifetime, so they survive every snapshot swap.

const (
	blockShift = 6
	blockSize  = 1 << blockShift // cells per block
	cacheLine  = 64
)

// cell counts the picks of one pod made in one stripe, and the Done calls of
// those picks. Its in-flight count is picks - dones.
type cell struct {
	picks atomic.Uint64
	dones atomic.Uint64
	// done is the Done callback handed out with picks counted here, built once
	// so that a pick allocates nothing.
	done func(DoneInfo)
	_    [8]byte // 32 bytes: two cells per cache line, all written by one stripe
}

func (c *cell) inflight() int64 { return int64(c.picks.Load() - c.dones.Load()) }

// block holds the cells of 64 consecutive slots in one stripe. Blocks are
// allocated when a slot range is first used and never move.
type block [blockSize]cell

// stripe is the per-processor state of a balancer.
type stripe struct {
	// cursor is the position of round robin and weighted round robin.
	cursor atomic.Uint64
	_      [cacheLine - 8]byte
}

// podState is the per-pod state that is not written on the pick path: what
// Done reports and what the application sets directly.
type podState struct {
	pod  int
	slot int
	// conns points at the connection count the application reported
	// (UpdateStats), and inflight at the picks not yet done over every
	// processor (kept only when the balancer is global, see Balancer.local).
	// Both live in dense blocks beside the other pods' counters, so a scan over
	// the pods reads a few cache lines, not one per pod.
	conns, inflight *atomic.Int64
	// ewma is the response time average in nanoseconds; 0 before any sample.
	ewma atomic.Int64
	// last is when ewma was last updated, in nanoseconds since the balancer's epoch.
	last atomic.Int64
	// fails counts consecutive failures.
	fails atomic.Int32
	_     [12]byte // one cache line per pod, with the fields above
}

// dense holds one counter for each of 64 consecutive slots, side by side.
type dense [blockSize]atomic.Int64

// ewmaWeight is the weight of a new sample in the response-time average.
const ewmaWeight = 0.3

// observe folds a response time into the average.
func (p *podState) observe(d time.Duration, now int64) {
	for {
		old := p.ewma.Load()
		next := int64(d)
		if old != 0 {
			next = old + int64(float64(int64(d)-old)*ewmaWeight)
		}
		if next <= 0 {
			next = 1 // 0 means "no sample"
		}
		if p.ewma.CompareAndSwap(old, next) {
			p.last.Store(now)
			return
		}
	}
}

// decayedEWMA returns the average decayed by idleness: after tau without a
// sample it counts half, so a pod that was slow once is tried again.
func (p *podState) decayedEWMA(now, tau int64) int64 {
	e := p.ewma.Load()
	if e == 0 {
		return 0
	}
	idle := now - p.last.Load()
	if idle <= 0 || tau <= 0 {
		return e
	}
	return int64(float64(e) * float64(tau) / float64(tau+idle))
}
