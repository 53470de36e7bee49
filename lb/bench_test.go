// The pick benchmarks compare each strategy of the lock-free balancer (ours)
// with a plain mutex-guarded implementation of the same strategy (mutex), in
// the same run, row after row, so a noisy machine moves both sides alike.
// Targets (the lb issue):
//   - at 16 pods: round_robin, p2c and maglev ≤ 25 ns/op; smooth_weighted and
//     least_conn ≤ 40 ns/op; every strategy 0 allocs/op;
//   - under RunParallel on 2 cores: p2c and maglev reach ≥ 1.7× their
//     single-goroutine throughput (parallel ns/op ≤ single ns/op / 1.7);
//     round_robin and smooth_weighted lose none (parallel ns/op ≤ single ns/op);
//   - at 256 pods: no O(1) strategy (round_robin, smooth_weighted, p2c, maglev)
//     slower than 1.5× its 16-pod figure.
//
// BenchmarkPick rows are <strategy>/<pods>/<ours|mutex>/<single|parallel>;
// BenchmarkPickDone measures a pick plus its Done (ours, 16 pods).

package lb_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/stickyroute/stickyroute/lb"
)

// benchStrategies are the strategies measured, in report order.
var benchStrategies = []lb.Strategy{lb.RoundRobin{}, lb.SmoothWeighted{}, lb.LeastConn{}, lb.LeastTime{}, lb.P2C{}, lb.Maglev{}}

// benchPodCounts are the pod-set sizes measured.
var benchPodCounts = []int{16, 256}

// keyStep steps the key hash from one keyed pick to the next.
const keyStep = 0x9E3779B97F4A7C15

// hashTableSize is the size of the consistent-hashing tables (Maglev's).
const hashTableSize = 65521

// pickByKey reports whether s picks by key, so the benchmarks pick by hash.
func pickByKey(s lb.Strategy) bool {
	_, ok := s.(lb.Maglev)
	return ok
}

// benchWeight is the weight of the i-th pod under s: 1 + i%3 for smooth
// weighted round robin, 1 otherwise.
func benchWeight(s lb.Strategy, i int) int {
	if _, ok := s.(lb.SmoothWeighted); ok {
		return 1 + i%3
	}
	return 1
}

// newBenchBalancer returns a balancer over n pods for s, closed when tb ends.
func newBenchBalancer(tb testing.TB, s lb.Strategy, n int) *lb.Balancer {
	tb.Helper()
	pods := make([]lb.Pod, n)
	for i := range pods {
		pods[i] = lb.Pod{Index: i, Weight: benchWeight(s, i)}
	}
	bal, err := lb.New(lb.Config{Strategy: s, Pods: pods})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(bal.Close)
	return bal
}

// benchPicker makes TestPickAllocs' picks: by a changing hash for Maglev, else unkeyed.
type benchPicker struct {
	bal   *lb.Balancer
	keyed bool
	h     uint64
}

// next makes one pick.
func (p *benchPicker) next() (lb.PickResult, error) {
	if p.keyed {
		p.h += keyStep
		return p.bal.PickHash(p.h)
	}
	return p.bal.Pick()
}

func BenchmarkPick(b *testing.B) {
	for _, s := range benchStrategies {
		b.Run(s.String(), func(b *testing.B) {
			for _, n := range benchPodCounts {
				b.Run(strconv.Itoa(n), func(b *testing.B) {
					b.Run("ours", func(b *testing.B) {
						b.Run("single", func(b *testing.B) { benchOurs(b, s, n, false, false) })
						b.Run("parallel", func(b *testing.B) { benchOurs(b, s, n, true, false) })
					})
					b.Run("mutex", func(b *testing.B) {
						b.Run("single", func(b *testing.B) { benchMutex(b, s, n, false) })
						b.Run("parallel", func(b *testing.B) { benchMutex(b, s, n, true) })
					})
				})
			}
		})
	}
}

func BenchmarkPickDone(b *testing.B) {
	const n = 16
	for _, s := range benchStrategies {
		b.Run(fmt.Sprintf("%s/%d/ours", s, n), func(b *testing.B) {
			b.Run("single", func(b *testing.B) { benchOurs(b, s, n, false, true) })
			b.Run("parallel", func(b *testing.B) { benchOurs(b, s, n, true, true) })
		})
	}
}

// benchOurs measures picks from a balancer over n pods for s, from one
// goroutine or under RunParallel; done also reports the end of each pick. The
// loops call Pick or PickHash directly (the branch between them is loop
// invariant): a helper call would add about a nanosecond to every pick.
func benchOurs(b *testing.B, s lb.Strategy, n int, parallel, done bool) {
	bal := newBenchBalancer(b, s, n)
	keyed := pickByKey(s)
	b.ReportAllocs()
	if !parallel {
		var h uint64
		for b.Loop() {
			var r lb.PickResult
			var err error
			if keyed {
				h += keyStep
				r, err = bal.PickHash(h)
			} else {
				r, err = bal.Pick()
			}
			if err != nil {
				b.Fatal(err)
			}
			if done {
				r.Done(lb.DoneInfo{})
			}
		}
		return
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		h := rand.Uint64()
		for pb.Next() {
			var r lb.PickResult
			var err error
			if keyed {
				h += keyStep
				r, err = bal.PickHash(h)
			} else {
				r, err = bal.Pick()
			}
			if err != nil {
				b.Error(err)
				return
			}
			if done {
				r.Done(lb.DoneInfo{})
			}
		}
	})
}

// benchMutex is benchOurs for the mutex baseline of s.
func benchMutex(b *testing.B, s lb.Strategy, n int, parallel bool) {
	m := newMutexBaseline(s, n)
	k, byKey := m.(mutexKeyedBaseline)
	b.ReportAllocs()
	if !parallel {
		var h uint64
		for b.Loop() {
			if byKey {
				h += keyStep
				k.pickKey(h)
			} else {
				m.pick()
			}
		}
		return
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		h := rand.Uint64()
		for pb.Next() {
			if byKey {
				h += keyStep
				k.pickKey(h)
			} else {
				m.pick()
			}
		}
	})
}

func TestPickAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, s := range benchStrategies {
		for _, n := range benchPodCounts {
			t.Run(fmt.Sprintf("%s/%d", s, n), func(t *testing.T) {
				p := benchPicker{bal: newBenchBalancer(t, s, n), keyed: pickByKey(s)}
				var err error
				pick := testing.AllocsPerRun(1000, func() {
					if _, e := p.next(); e != nil {
						err = e
					}
				})
				pickDone := testing.AllocsPerRun(1000, func() {
					r, e := p.next()
					if e != nil {
						err = e
						return
					}
					r.Done(lb.DoneInfo{})
				})
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("allocs per pick: %v; per pick+Done: %v", pick, pickDone)
				if pick != 0 || pickDone != 0 {
					t.Errorf("allocs per pick = %v, per pick+Done = %v; want 0 and 0", pick, pickDone)
				}
			})
		}
	}
}

// Mutex baselines: the plain way to write each strategy, one mutex around
// plain ints.

// mutexBaseline is a mutex-guarded strategy; pick returns a pod index.
type mutexBaseline interface {
	pick() int
}

// mutexKeyedBaseline is a baseline that also picks by key hash.
type mutexKeyedBaseline interface {
	mutexBaseline
	pickKey(h uint64) int
}

// newMutexBaseline returns the baseline of s over n pods weighted as the
// balancer's are.
func newMutexBaseline(s lb.Strategy, n int) mutexBaseline {
	switch s.(type) {
	case lb.RoundRobin:
		return &mutexRoundRobin{n: n}
	case lb.SmoothWeighted:
		m := &mutexSmoothWeighted{weight: make([]int, n), current: make([]int, n)}
		for i := range n {
			m.weight[i] = benchWeight(s, i)
			m.total += m.weight[i]
		}
		return m
	case lb.LeastConn:
		return &mutexLeastConn{inflight: make([]int, n)}
	case lb.LeastTime:
		m := &mutexLeastTime{ewma: make([]float64, n), inflight: make([]int, n)}
		for i := range m.ewma {
			m.ewma[i] = 1000 // ns, as the balancer assumes for a pod without samples
		}
		return m
	case lb.P2C:
		return &mutexP2C{rng: rand.New(rand.NewPCG(1, 2)), load: make([]int, n), inflight: make([]int, n)}
	case lb.Maglev:
		return newMutexHashRing(n)
	}
	panic("no baseline for " + s.String())
}

// mutexRoundRobin is round robin: a counter mod n.
type mutexRoundRobin struct {
	mu   sync.Mutex
	n    int
	next int
}

func (m *mutexRoundRobin) pick() int {
	m.mu.Lock()
	i := m.next
	m.next = (m.next + 1) % m.n
	m.mu.Unlock()
	return i
}

// mutexSmoothWeighted is nginx's smooth weighted round robin, O(n) per pick.
type mutexSmoothWeighted struct {
	mu      sync.Mutex
	weight  []int
	current []int
	total   int
}

func (m *mutexSmoothWeighted) pick() int {
	m.mu.Lock()
	best := 0
	for i, w := range m.weight {
		m.current[i] += w
		if m.current[i] > m.current[best] {
			best = i
		}
	}
	m.current[best] -= m.total
	m.mu.Unlock()
	return best
}

// mutexLeastConn picks the pod with the fewest picks in flight.
type mutexLeastConn struct {
	mu       sync.Mutex
	inflight []int
}

func (m *mutexLeastConn) pick() int {
	m.mu.Lock()
	best := 0
	for i := 1; i < len(m.inflight); i++ {
		if m.inflight[i] < m.inflight[best] {
			best = i
		}
	}
	m.inflight[best]++
	m.mu.Unlock()
	return best
}

// mutexLeastTime picks the lowest response-time average × (in-flight picks + 1).
type mutexLeastTime struct {
	mu       sync.Mutex
	ewma     []float64
	inflight []int
}

func (m *mutexLeastTime) pick() int {
	m.mu.Lock()
	best, bestScore := 0, m.ewma[0]*float64(m.inflight[0]+1)
	for i := 1; i < len(m.ewma); i++ {
		if sc := m.ewma[i] * float64(m.inflight[i]+1); sc < bestScore {
			best, bestScore = i, sc
		}
	}
	m.inflight[best]++
	m.mu.Unlock()
	return best
}

// mutexP2C picks the lower load + in-flight picks of two distinct random pods.
type mutexP2C struct {
	mu       sync.Mutex
	rng      *rand.Rand
	load     []int
	inflight []int
}

func (m *mutexP2C) pick() int {
	m.mu.Lock()
	n := len(m.load)
	i, j := m.rng.IntN(n), m.rng.IntN(n-1)
	if j >= i {
		j++
	}
	if m.load[j]+m.inflight[j] < m.load[i]+m.inflight[i] {
		i = j
	}
	m.inflight[i]++
	m.mu.Unlock()
	return i
}

// mutexHashRing is consistent hashing: a sorted hash ring expanded into a table.
type mutexHashRing struct {
	mu    sync.Mutex
	rng   *rand.Rand
	table []uint16
}

// ringPoint is a virtual node of a pod on the hash ring.
type ringPoint struct {
	hash uint64
	pod  uint16
}

// newMutexHashRing builds the ring of n pods, 100 virtual nodes each, and
// maps every table slot to the pod of the first point at or after it. The
// table has Maglev's size and element type, so a pick does the same lookup.
func newMutexHashRing(n int) *mutexHashRing {
	const vnodes = 100
	ring := make([]ringPoint, 0, n*vnodes)
	for pod := range n {
		for v := range vnodes {
			ring = append(ring, ringPoint{hash: ringHash(uint64(pod)<<32 | uint64(v)), pod: uint16(pod)})
		}
	}
	slices.SortFunc(ring, func(x, y ringPoint) int { return cmp.Compare(x.hash, y.hash) })
	m := &mutexHashRing{rng: rand.New(rand.NewPCG(3, 4)), table: make([]uint16, hashTableSize)}
	step := ^uint64(0) / hashTableSize
	for slot := range m.table {
		at, _ := slices.BinarySearchFunc(ring, uint64(slot)*step, func(p ringPoint, h uint64) int {
			return cmp.Compare(p.hash, h)
		})
		m.table[slot] = ring[at%len(ring)].pod
	}
	return m
}

func (m *mutexHashRing) pickKey(h uint64) int {
	m.mu.Lock()
	pod := int(m.table[h%hashTableSize])
	m.mu.Unlock()
	return pod
}

// pick picks by a random key.
func (m *mutexHashRing) pick() int {
	m.mu.Lock()
	pod := int(m.table[m.rng.Uint64()%hashTableSize])
	m.mu.Unlock()
	return pod
}

// ringHash is the SplitMix64 finalizer: it spreads ring points over the ring.
func ringHash(x uint64) uint64 {
	x = (x ^ x>>30) * 0xBF58476D1CE4E5B9
	x = (x ^ x>>27) * 0x94D049BB133111EB
	return x ^ x>>31
}
