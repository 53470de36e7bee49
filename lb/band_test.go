package lb_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stickyroute/stickyroute/lb"
)

// corrected returns each pod's published load plus w × its picks in flight.
func corrected(b *lb.Balancer, w int64) map[int]int64 {
	out := map[int]int64{}
	for _, p := range b.Stats().Pods {
		out[p.Pod] = p.Load + w*p.InFlight
	}
	return out
}

// spread is max/mean of the values of m.
func spread(m map[int]int64) float64 {
	var most, sum int64
	for _, v := range m {
		most, sum = max(most, v), sum+v
	}
	return float64(most) / (float64(sum) / float64(len(m)))
}

// TestBandOnCorrectedLoads: published loads [0, 11, 11, 11] and a band of
// 10. The band is judged at every pick on load + picks in flight, so once
// pod 0 has caught up the others are candidates again: 1,250 placements end
// even, and no pick ever lands above the band.
func TestBandOnCorrectedLoads(t *testing.T) {
	for _, s := range []lb.Strategy{lb.P2C{}, lb.LeastConn{}, lb.RoundRobin{}, lb.SmoothWeighted{}, lb.LeastTime{}, lb.Maglev{}} {
		t.Run(s.String(), func(t *testing.T) {
			pods := []lb.Pod{{Index: 0, Load: 0}, {Index: 1, Load: 11}, {Index: 2, Load: 11}, {Index: 3, Load: 11}}
			b := newBalancer(t, lb.Config{Strategy: s, Pods: pods, Band: lb.Band{Min: 10, Ratio: 0.25}})
			for range 1250 {
				before := corrected(b, 1)
				least := before[0]
				for _, v := range before {
					least = min(least, v)
				}
				r := pick(t, b)
				if band := max(10, least/4); before[r.Pod] > least+band {
					t.Fatalf("picked pod %d at load %d, above the band %d over the least %d (%v)", r.Pod, before[r.Pod], band, least, before)
				}
			}
			// Maglev spreads unkeyed picks at random: 1,250 of them end
			// within about 2.5 standard deviations (± 5% of the mean each).
			bound := 1.10
			if _, random := s.(lb.Maglev); random {
				bound = 1.20
			}
			got := corrected(b, 1)
			if sp := spread(got); sp > bound {
				t.Fatalf("users per pod %v: max/mean %.3f, want ≤ %.2f", got, sp, bound)
			}
		})
	}
}

// TestSharedCountsAcrossProcessors: 16 goroutines pick at once from
// published loads [0, 100, 100, 100]. Counted per processor, each processor
// fills pod 0 on its own; shared, pod 0 gets its deficit once.
func TestSharedCountsAcrossProcessors(t *testing.T) {
	pods := []lb.Pod{{Index: 0, Load: 0}, {Index: 1, Load: 100}, {Index: 2, Load: 100}, {Index: 3, Load: 100}}
	for _, s := range []lb.Strategy{lb.P2C{}, lb.LeastConn{}} {
		t.Run(s.String(), func(t *testing.T) {
			b := newBalancer(t, lb.Config{Strategy: s, Pods: pods, Shared: true})
			var wg sync.WaitGroup
			for range 16 {
				wg.Go(func() {
					for range 50 {
						pick(t, b)
					}
				})
			}
			wg.Wait()
			// 800 picks: even at 275 each (pod 0 takes 275, the others 175).
			got := corrected(b, 1)
			if sp := spread(got); sp > 1.05 {
				t.Fatalf("load + in flight %v: max/mean %.3f, want ≤ 1.05", got, sp)
			}
		})
	}
}

// TestPickWeight: with a weight of w a pick in flight counts w load units.
// From [0, 100, 100, 100], 400 picks equalize load + w × in-flight: pod 0
// takes 100 + 75 = 175 of them at weight 1, and 25 + 93.75 ≈ 119 at weight 4
// (the share of one of four clients that see the same loads).
func TestPickWeight(t *testing.T) {
	pods := []lb.Pod{{Index: 0, Load: 0}, {Index: 1, Load: 100}, {Index: 2, Load: 100}, {Index: 3, Load: 100}}
	for _, c := range []struct {
		w    int64
		want int64
	}{{1, 175}, {4, 119}} {
		t.Run(fmt.Sprint("w=", c.w), func(t *testing.T) {
			b := newBalancer(t, lb.Config{Strategy: lb.P2C{}, Pods: pods, Shared: true})
			b.SetPickWeight(c.w)
			for range 400 {
				pick(t, b)
			}
			got := podStats(b)[0].InFlight
			if got < c.want-12 || got > c.want+12 {
				t.Fatalf("pod 0 took %d of 400 picks at weight %d, want %d ± 12", got, c.w, c.want)
			}
		})
	}
}

// TestBandPickAllocs: a pick with a band, shared counts and a weight still
// allocates nothing.
func TestBandPickAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	pods := []lb.Pod{{Index: 0, Load: 0}, {Index: 1, Load: 50}, {Index: 2, Load: 5}, {Index: 3, Load: 7}}
	for _, s := range []lb.Strategy{lb.P2C{}, lb.LeastConn{}} {
		b := newBalancer(t, lb.Config{Strategy: s, Pods: pods, Band: lb.Band{Min: 10, Ratio: 0.25}})
		b.SetPickWeight(3)
		if n := testing.AllocsPerRun(1000, func() { pick(t, b).Done(lb.DoneInfo{}) }); n != 0 {
			t.Errorf("%s: %v allocs per pick+Done, want 0", s, n)
		}
	}
}
