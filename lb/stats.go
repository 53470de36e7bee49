package lb

import "time"

// Stats is a reading of a balancer (the old API's GetStats). Counters are
// read one by one while picks go on, so they are each exact but not taken at
// one instant.
type Stats struct {
	// Strategy is the strategy's name.
	Strategy string
	// Pods are the members, sorted by pod index.
	Pods []PodStats
	// Picks is the number of picks over every member.
	Picks uint64
	// Skew is the largest member's picks over the mean picks per eligible
	// member (1 is perfectly even); 0 before any pick.
	Skew float64
	// Unhealthy is the number of members marked unhealthy with SetHealthy.
	Unhealthy int
	// Ejected is the number of members ejected by passive health checking.
	Ejected int
}

// PodStats is one member's part of Stats.
type PodStats struct {
	Pod    int
	Weight int
	// Load is the published load.
	Load int64
	// Picks counts the picks the pod got while it was a member of this balancer.
	Picks uint64
	// InFlight counts picks whose Done has not been called.
	InFlight int64
	// Conns is the connection count reported with UpdateStats.
	Conns int64
	// ResponseTime is the response-time average (not decayed).
	ResponseTime time.Duration
	// Failures counts consecutive failures.
	Failures int
	// Healthy is false when marked unhealthy with SetHealthy.
	Healthy bool
	// Ejected is true while passive health checking keeps the pod out.
	Ejected bool
	// Share is the pod's current slow-start share, 1 when at full share.
	Share float64
}

// Stats reads the balancer's statistics.
func (b *Balancer) Stats() Stats {
	b.mu.Lock()
	s := b.snap.Load()
	st := Stats{Strategy: b.strategy.String(), Pods: make([]PodStats, 0, len(s.entries))}
	for i := range s.entries {
		e := &s.entries[i]
		m := b.members[e.pod]
		picks, inflight := s.counts(i, b.local)
		ps := PodStats{
			Pod: e.pod, Weight: e.weight, Load: e.load,
			Picks: picks, InFlight: inflight,
			Conns:        e.state.conns.Load(),
			ResponseTime: time.Duration(e.state.ewma.Load()),
			Failures:     int(e.state.fails.Load()),
			Healthy:      m == nil || !m.down,
			Ejected:      m != nil && m.ejected,
			Share:        float64(e.ramp) / rampOne,
		}
		if !ps.Healthy {
			st.Unhealthy++
		}
		if ps.Ejected {
			st.Ejected++
		}
		st.Picks += ps.Picks
		st.Pods = append(st.Pods, ps)
	}
	b.mu.Unlock()
	if n := len(s.eligible); n > 0 && st.Picks > 0 {
		var most uint64
		for _, p := range st.Pods {
			most = max(most, p.Picks)
		}
		st.Skew = float64(most) / (float64(st.Picks) / float64(n))
	}
	return st
}
