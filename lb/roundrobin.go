package lb

// RoundRobin sends picks to the eligible pods in turn, ignoring weights and
// loads. Each processor stripe keeps its own cursor, so the rotation seen by
// one goroutine is exact and parallel picks share no counter. While a pod
// slow-starts, the rotation follows a table in which it appears in proportion
// to its current share.
type RoundRobin struct{}

func (RoundRobin) global() bool { return false }

// String returns "round_robin".
func (RoundRobin) String() string { return "round_robin" }

func (RoundRobin) build(s *snapshot) []uint16 {
	if !s.ramping {
		return nil
	}
	return smoothTable(s, func(e *entry) int64 { return int64(e.ramp) })
}

func (RoundRobin) pick(b *Balancer, s *snapshot, sid int, _ uint64, _ bool) int {
	if t := s.table; t != nil {
		return int(t[b.stripes[sid].cursor.Add(1)%uint64(len(t))])
	}
	n := len(s.eligible)
	if n == 0 {
		return -1
	}
	return int(s.eligible[b.stripes[sid].cursor.Add(1)%uint64(n)])
}
