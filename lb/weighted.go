package lb

// SmoothWeighted is smooth weighted round robin (the nginx algorithm): over
// every period of Σweight picks each pod gets exactly its weight, spread out
// rather than in bursts (weights 5:1:1 give a a b a c a a, not a a a a a b c).
// The period is computed once per change into a table, so a pick is a cursor
// step and a table read, with no lock. As with RoundRobin, each processor
// keeps its own cursor: its picks follow the period exactly. Weights are reduced by their greatest
// common divisor; a period above 65,536 picks is scaled down to that length,
// which keeps shares exact to within one pick per pod per period.
type SmoothWeighted struct{}

func (SmoothWeighted) tableFollowsHealth() bool { return true }

func (SmoothWeighted) global() bool { return false }

// String returns "smooth_weighted".
func (SmoothWeighted) String() string { return "smooth_weighted" }

func (SmoothWeighted) build(s *snapshot) []uint16 {
	return smoothTable(s, func(e *entry) int64 { return int64(e.weight) * int64(e.ramp) })
}

func (SmoothWeighted) pick(b *Balancer, s *snapshot, sid int, _ uint64, _ bool) int {
	t := s.table
	if len(t) == 0 {
		return -1
	}
	return int(t[b.stripes[sid].cursor.Add(1)%uint64(len(t))])
}

// maxPeriod bounds a smooth weighted period (and its table).
const maxPeriod = 1 << 16

// smoothTable lays out one period of smooth weighted round robin over the
// eligible entries, weighted by weight(e).
func smoothTable(s *snapshot, weight func(*entry) int64) []uint16 {
	n := len(s.eligible)
	if n == 0 {
		return nil
	}
	w := make([]int64, n)
	var g, total int64
	for k, i := range s.eligible {
		w[k] = max(weight(&s.entries[i]), 1)
		g = gcd(g, w[k])
	}
	for k := range w {
		w[k] /= g
		total += w[k]
	}
	if total > maxPeriod {
		total = 0
		scaled := maxPeriod - int64(n) // room for the max(…, 1) below
		var sum int64
		for k := range w {
			sum += w[k]
		}
		for k := range w {
			w[k] = max(w[k]*scaled/sum, 1)
			total += w[k]
		}
	}
	table := make([]uint16, total)
	cur := make([]int64, n)
	for t := range table {
		best := 0
		for k := range cur {
			cur[k] += w[k]
			if cur[k] > cur[best] {
				best = k
			}
		}
		cur[best] -= total
		table[t] = uint16(s.eligible[best])
	}
	return table
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
