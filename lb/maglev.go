package lb

import "github.com/stickyroute/stickyroute/internal/xruntime"

// Maglev is consistent hashing by key with a Maglev lookup table (Eisenbud et
// al., NSDI 2016): every member fills slots of a 65,521-entry table in the
// order of its own permutation, in turns proportional to its weight, so a pick
// is one hash and one table read at any number of pods, and a member joining or
// leaving moves only about its share of the keys. The table is built over the
// members, not their health: a pod that is ejected or unhealthy is skipped by
// probing the next slots, so its keys spread over the others and come back
// when it does, while every other key stays put. Use Balancer.PickKey; an
// unkeyed Pick is spread at random by weight.
type Maglev struct{}

func (Maglev) tableFollowsHealth() bool { return false }

func (Maglev) global() bool { return false }

// String returns "maglev".
func (Maglev) String() string { return "maglev" }

// maglevSize is the table size: a prime, so every skip visits every slot.
const maglevSize = 65521

func (Maglev) build(s *snapshot) []uint16 {
	n := len(s.entries)
	if n == 0 {
		return nil
	}
	const empty = 0xFFFF
	table := make([]uint16, maglevSize)
	for i := range table {
		table[i] = empty
	}
	pos := make([]uint64, n)
	skip := make([]uint64, n)
	credit := make([]int64, n)
	var wmax int64
	for i := range s.entries {
		p := uint64(s.entries[i].pod)
		pos[i] = mix64(p*2+1) % maglevSize
		skip[i] = mix64(p*2+2)%(maglevSize-1) + 1
		wmax = max(wmax, int64(s.entries[i].weight))
	}
	for filled := 0; filled < maglevSize; {
		for i := range s.entries {
			// Weighted turns: a member of weight w fills w/wmax slots per round.
			credit[i] += int64(s.entries[i].weight)
			if credit[i] < wmax {
				continue
			}
			credit[i] -= wmax
			for table[pos[i]] != empty {
				pos[i] = step(pos[i], skip[i])
			}
			table[pos[i]] = uint16(i)
			pos[i] = step(pos[i], skip[i])
			if filled++; filled == maglevSize {
				break
			}
		}
	}
	return table
}

// step advances a permutation position: (p + skip) mod maglevSize, both
// already below maglevSize, without a division.
func step(p, skip uint64) uint64 {
	if p += skip; p >= maglevSize {
		p -= maglevSize
	}
	return p
}

func (m Maglev) pick(_ *Balancer, s *snapshot, _ int, h uint64, keyed bool) int {
	t := s.table
	if len(s.eligible) == 0 || len(t) == 0 {
		return -1
	}
	if !keyed {
		h = xruntime.Rand64()
	}
	for k := 0; k < len(t); k++ {
		i := m.probeAt(s, h, k)
		if e := &s.entries[i]; e.ok && admit(e.ramp, mix64(h+uint64(k))) {
			return i
		}
	}
	return int(s.eligible[0]) // only ramping pods, each declining: take one
}

func (Maglev) probeAt(s *snapshot, h uint64, k int) int {
	return int(s.table[(h%maglevSize+uint64(k))%maglevSize])
}

// mix64 is the SplitMix64 finalizer: a fast, well-spread 64-bit hash.
func mix64(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x = (x ^ x>>30) * 0xBF58476D1CE4E5B9
	x = (x ^ x>>27) * 0x94D049BB133111EB
	return x ^ x>>31
}
