package lb_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stickyroute/stickyroute/internal/testkit"
	"github.com/stickyroute/stickyroute/lb"
)

// TestHerding: 64 goroutines place 10,000 users on 16 pods whose published
// loads stay stale for the whole run. Picking the least loaded pod sends every
// user to the same pod; P2C with the in-flight picks (placements that stay)
// spreads them evenly.
func TestHerding(t *testing.T) {
	const users, n, workers = 10000, 16, 64
	stale := make([]lb.Pod, n)
	for i := range stale {
		stale[i] = lb.Pod{Index: i, Load: int64(100 + i)} // never refreshed
	}
	place := func(pick func() int) float64 {
		var counts [n]atomic.Int64
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for u := w; u < users; u += workers {
					counts[pick()].Add(1)
				}
			})
		}
		wg.Wait()
		most := int64(0)
		for i := range counts {
			most = max(most, counts[i].Load())
		}
		return float64(most) / (users / n)
	}

	b := newBalancer(t, lb.Config{Strategy: lb.P2C{}, Pods: stale})
	p2c := place(func() int { return pick(t, b).Pod }) // no Done: the user stays
	leastLoaded := place(func() int {
		best := 0
		for i, p := range stale {
			if p.Load < stale[best].Load {
				best = i
			}
		}
		return best
	})
	t.Logf("max/mean users per pod: P2C + in-flight %.3f, least loaded %.3f", p2c, leastLoaded)
	if p2c > 1.10 {
		t.Fatalf("P2C max/mean %.3f, want ≤ 1.10", p2c)
	}
	if leastLoaded < 10 {
		t.Fatalf("least loaded max/mean %.3f: the baseline was expected to herd", leastLoaded)
	}
}

// keysOn maps every key to its pod with PickKey.
func keysOn(t *testing.T, b *lb.Balancer, keys []string) []int {
	t.Helper()
	out := make([]int, len(keys))
	for i, k := range keys {
		r, err := b.PickKey(k)
		if err != nil {
			t.Fatal(err)
		}
		r.Done(lb.DoneInfo{})
		out[i] = r.Pod
	}
	return out
}

// TestMaglevStability measures how many keys move when a pod of 16 leaves, a
// pod joins, or a pod turns unhealthy.
func TestMaglevStability(t *testing.T) {
	const n, nkeys = 16, 100000
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = "user-" + strconv.Itoa(i)
	}
	b := newBalancer(t, lb.Config{Strategy: lb.Maglev{}, Pods: podsOf(n)})
	before := keysOn(t, b, keys)

	// Balance: every pod holds close to 1/16 of the keys.
	per := make([]int, n)
	for _, p := range before {
		per[p]++
	}
	mean := float64(nkeys) / n
	if lo, hi := float64(slices.Min(per)), float64(slices.Max(per)); lo < 0.92*mean || hi > 1.08*mean {
		t.Fatalf("keys per pod %d..%d, mean %.0f: not balanced", slices.Min(per), slices.Max(per), mean)
	}

	// A pod leaves: its keys must move, the others should stay.
	b.Remove(5)
	after := keysOn(t, b, keys)
	total, others := 0, 0
	for i := range keys {
		if after[i] == 5 {
			t.Fatalf("key %s still on removed pod 5", keys[i])
		}
		if before[i] != after[i] {
			total++
			if before[i] != 5 {
				others++
			}
		}
	}
	t.Logf("pod 5 of 16 leaves: %.2f%% of keys move (ideal %.2f%%), %.2f%% from pods that stayed",
		100*float64(total)/nkeys, 100.0/n, 100*float64(others)/nkeys)
	if float64(total)/nkeys > 1.5/n {
		t.Fatalf("%d keys moved, more than 1.5/N", total)
	}

	// A pod joins: about 1/17 of the keys move to it.
	if err := b.Add(5, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(16, 1); err != nil {
		t.Fatal(err)
	}
	back := keysOn(t, b, keys)
	total, others = 0, 0
	for i := range keys {
		if before[i] != back[i] {
			total++
			if back[i] != 16 {
				others++
			}
		}
	}
	t.Logf("pod 16 joins 16 pods: %.2f%% of keys move (ideal %.2f%%), %.2f%% between old pods",
		100*float64(total)/nkeys, 100.0/(n+1), 100*float64(others)/nkeys)
	if float64(total)/nkeys > 1.5/(n+1) {
		t.Fatalf("%d keys moved, more than 1.5/N", total)
	}

	// A pod turns unhealthy: only its keys move, and they come back.
	if !b.Remove(16) {
		t.Fatal("Remove(16)")
	}
	base := keysOn(t, b, keys)
	if err := b.SetHealthy(3, false); err != nil {
		t.Fatal(err)
	}
	sick := keysOn(t, b, keys)
	for i := range keys {
		if base[i] != 3 && sick[i] != base[i] {
			t.Fatalf("key %s moved from healthy pod %d to %d when pod 3 turned unhealthy", keys[i], base[i], sick[i])
		}
		if sick[i] == 3 {
			t.Fatalf("key %s still on unhealthy pod 3", keys[i])
		}
	}
	if err := b.SetHealthy(3, true); err != nil {
		t.Fatal(err)
	}
	if healed := keysOn(t, b, keys); !slices.Equal(healed, base) {
		t.Fatal("keys did not return when pod 3 recovered")
	}
}

// TestLoadCapSkewedKeys: with a cap of 1.25 × the mean, a key stream where one
// key is half the traffic still never puts a pod above the cap; without the
// cap the hot pod takes far more.
func TestLoadCapSkewedKeys(t *testing.T) {
	oneProc(t)
	const n, picks, c = 16, 20000, 1.25
	for _, s := range []lb.Strategy{lb.Maglev{}, lb.P2C{}, lb.RoundRobin{}, lb.LeastConn{}} {
		t.Run(s.String(), func(t *testing.T) {
			pods := podsOf(n)
			pods[2].Load = 300 // a published load counts too
			capped := newBalancer(t, lb.Config{Strategy: s, Pods: pods, LoadCap: c})
			free := newBalancer(t, lb.Config{Strategy: s, Pods: pods})
			rng := rand.New(rand.NewPCG(1, 2))
			zipf := rand.NewZipf(rng, 1.1, 1, 1<<20)
			load := make([]int64, n)
			for i, p := range pods {
				load[i] = p.Load
			}
			var total int64 = 300
			freeLoad := slices.Clone(load)
			for i := range picks {
				key := "k" + strconv.FormatUint(zipf.Uint64(), 10)
				if i%2 == 0 {
					key = "hot"
				}
				r, err := capped.PickKey(key)
				if err != nil {
					t.Fatal(err)
				}
				limit := int64(math.Ceil(c * float64(total+1) / n))
				if load[r.Pod]+1 > limit {
					t.Fatalf("pick %d: pod %d at %d + 1 exceeds the cap %d", i, r.Pod, load[r.Pod], limit)
				}
				load[r.Pod]++
				total++
				fr, err := free.PickKey(key)
				if err != nil {
					t.Fatal(err)
				}
				freeLoad[fr.Pod]++
			}
			mean := float64(total) / n
			t.Logf("max/mean load: capped %.2f, uncapped %.2f",
				float64(slices.Max(load))/mean, float64(slices.Max(freeLoad))/mean)
		})
	}
}

// TestEjection: consecutive failures eject a pod for a back-off that doubles
// up to the maximum; at most MaxFraction of the pods are out at once.
func TestEjection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fail := errors.New("boom")
		b := newBalancer(t, lb.Config{
			Strategy: lb.RoundRobin{},
			Pods:     podsOf(10),
			Ejection: lb.Ejection{Failures: 3, Base: 10 * time.Second, Max: 40 * time.Second, MaxFraction: 0.3, Jitter: -1},
		})
		// Every pod fails every call: only 3 of 10 may be ejected.
		for range 300 {
			pick(t, b).Done(lb.DoneInfo{Err: fail})
			if st := b.Stats(); st.Ejected > 3 {
				t.Fatalf("%d pods ejected, cap is 3", st.Ejected)
			}
		}
		if st := b.Stats(); st.Ejected != 3 {
			t.Fatalf("%d pods ejected, want exactly the cap 3", st.Ejected)
		}
		// Failing a chosen pod on purpose: fail it until it is out.
		failPod := func(pod int) {
			t.Helper()
			for range 1000 {
				if podStats(b)[pod].Ejected {
					return
				}
				r := pick(t, b)
				if r.Pod == pod {
					r.Done(lb.DoneInfo{Err: fail})
				} else {
					r.Done(lb.DoneInfo{})
				}
			}
			t.Fatalf("pod %d was never ejected", pod)
		}
		victim := -1
		for _, p := range b.Stats().Pods {
			if p.Ejected {
				victim = p.Pod
				break
			}
		}
		time.Sleep(10*time.Second + time.Millisecond)
		synctest.Wait()
		if st := b.Stats(); st.Ejected != 0 {
			t.Fatalf("after the 10 s back-off: %d still ejected", st.Ejected)
		}
		// The same pod again: each ejection lasts twice the last, up to 40 s.
		for _, want := range []time.Duration{20 * time.Second, 40 * time.Second, 40 * time.Second} {
			failPod(victim)
			start := time.Now()
			for podStats(b)[victim].Ejected {
				time.Sleep(time.Second)
				synctest.Wait()
			}
			if got := time.Since(start); got != want {
				t.Fatalf("pod %d ejected for %v, want %v", victim, got, want)
			}
		}
	})
}

// TestSlowStart: a pod added to a running set weighs a tenth of a full pod at
// first, half after half the window, a full pod at the end; with four full
// pods beside it, its fraction of the picks is r / (4 + r) at weight r.
func TestSlowStart(t *testing.T) {
	oneProc(t)
	synctest.Test(t, func(t *testing.T) {
		b := newBalancer(t, lb.Config{Strategy: lb.RoundRobin{}, Pods: podsOf(4), SlowStart: 10 * time.Second})
		if err := b.Add(4, 1); err != nil {
			t.Fatal(err)
		}
		// share picks the pod's fraction of 41,000 picks (whole periods of the ramp table).
		share := func() float64 {
			before := podStats(b)[4].Picks
			for range 41000 {
				pick(t, b).Done(lb.DoneInfo{})
			}
			return float64(podStats(b)[4].Picks-before) / 41000
		}
		last := time.Duration(0)
		for _, step := range []struct {
			at time.Duration
			r  float64 // weight relative to a full pod
		}{{0, 0.1}, {5 * time.Second, 0.5}, {10 * time.Second, 1}} {
			time.Sleep(step.at - last)
			last = step.at
			synctest.Wait()
			if s := podStats(b)[4].Share; math.Abs(s-step.r) > 0.01 {
				t.Fatalf("at %v Stats share %.3f, want %.2f", step.at, s, step.r)
			}
			want := step.r / (4 + step.r)
			if got := share(); math.Abs(got-want) > 0.005 {
				t.Fatalf("at %v the new pod got %.4f of the picks, want %.4f", step.at, got, want)
			}
		}
	})
}

// TestReadmittedPodSlowStarts: after its ejection a pod ramps up again.
func TestReadmittedPodSlowStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBalancer(t, lb.Config{
			Strategy: lb.P2C{}, Pods: podsOf(4), SlowStart: 10 * time.Second,
			Ejection: lb.Ejection{Failures: 1, Base: time.Second, Jitter: -1},
		})
		for !podStats(b)[0].Ejected {
			r := pick(t, b)
			if r.Pod == 0 {
				r.Done(lb.DoneInfo{Err: errors.New("down")})
			} else {
				r.Done(lb.DoneInfo{})
			}
		}
		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		p := podStats(b)[0]
		if p.Ejected || math.Abs(p.Share-0.1) > 0.01 {
			t.Fatalf("after the back-off: %+v, want readmitted at a tenth of its share", p)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if p := podStats(b)[0]; p.Share != 1 {
			t.Fatalf("after the window: share %v, want 1", p.Share)
		}
	})
}

// TestLeastTimeTriesSlowPodAgain: a pod that answered slowly once is avoided,
// then tried again once it has been idle long enough.
func TestLeastTimeTriesSlowPodAgain(t *testing.T) {
	oneProc(t)
	synctest.Test(t, func(t *testing.T) {
		b := newBalancer(t, lb.Config{Strategy: lb.LeastTime{}, Pods: podsOf(2), DecayTime: 10 * time.Second})
		if err := b.UpdateStats(0, 0, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := b.UpdateStats(1, 0, 10*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for {
			r := pick(t, b)
			if r.Pod == 0 {
				break
			}
			r.Done(lb.DoneInfo{Duration: 10 * time.Millisecond})
			if time.Since(start) > 5*time.Minute {
				t.Fatal("the slow pod was never tried again")
			}
			time.Sleep(time.Second)
		}
		// Pod 1 is sampled every second, so it always counts 10 ms × 10/(10+1);
		// pod 0's 100 ms falls below that after 100 s idle: 100 × 10/(10+idle).
		if waited := time.Since(start); waited < 95*time.Second || waited > 105*time.Second {
			t.Fatalf("slow pod tried again after %v, want about 100 s", waited)
		}
	})
}

// TestConcurrentPicksAndChanges runs picks and Done calls on many goroutines
// while another changes the pod set; every pick is a pod that was a member.
func TestConcurrentPicksAndChanges(t *testing.T) {
	for _, s := range allStrategies {
		t.Run(s.String(), func(t *testing.T) {
			b := newBalancer(t, lb.Config{Strategy: s, Pods: podsOf(8), LoadCap: 1.5, SlowStart: time.Millisecond})
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := range 4 {
				testkit.Loop(&wg, stop, func(i int) bool {
					r, err := b.PickKey(strconv.Itoa(w*1000 + i%1000))
					if errors.Is(err, lb.ErrNoPod) {
						return true
					}
					if err != nil || r.Pod < 0 || r.Pod >= 12 {
						t.Errorf("pick = (%d, %v)", r.Pod, err)
						return false
					}
					r.Done(lb.DoneInfo{Duration: time.Microsecond})
					return true
				})
			}
			for i := range 100 {
				switch i % 5 {
				case 0:
					_ = b.Add(8+i%4, 1+i%3)
				case 1:
					b.Remove(8 + (i/5)%4)
				case 2:
					_ = b.SetHealthy(i%8, i%3 == 0)
				case 3:
					_ = b.SetLoad(i%8, int64(i))
				case 4:
					_ = b.Update(podsOf(8 + i%4))
				}
			}
			close(stop)
			wg.Wait()
		})
	}
}

// TestFirstUpdateDoesNotSlowStart: pods that arrive together in an empty set,
// or replace the whole set, have nothing to ramp against and start at full share.
func TestFirstUpdateDoesNotSlowStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBalancer(t, lb.Config{Strategy: lb.P2C{}, SlowStart: time.Minute})
		check := func(when string) {
			t.Helper()
			for _, p := range b.Stats().Pods {
				if p.Share != 1 {
					t.Fatalf("%s: pod %d at share %v, want 1", when, p.Pod, p.Share)
				}
			}
		}
		if err := b.Update(podsOf(4)); err != nil {
			t.Fatal(err)
		}
		check("first Update")
		if err := b.Update([]lb.Pod{{Index: 10}, {Index: 11}}); err != nil {
			t.Fatal(err)
		}
		check("whole set replaced")
		if err := b.Update([]lb.Pod{{Index: 10}, {Index: 11}, {Index: 12}}); err != nil {
			t.Fatal(err)
		}
		if s := podStats(b)[12].Share; math.Abs(s-0.1) > 0.01 {
			t.Fatalf("pod joining a running set: share %v, want 0.1", s)
		}
	})
}

// TestEjectionJitter: with the default jitter an ejection lasts its back-off
// ±10%, and the lengths differ from pod to pod.
func TestEjectionJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 20
		b := newBalancer(t, lb.Config{
			Strategy: lb.RoundRobin{}, Pods: podsOf(n),
			Ejection: lb.Ejection{Failures: 1, Base: 10 * time.Second, MaxFraction: 1},
		})
		// Every call fails until every pod is out (all at the same instant).
		for {
			r, err := b.Pick()
			if errors.Is(err, lb.ErrNoPod) {
				break
			}
			r.Done(lb.DoneInfo{Err: errors.New("down")})
		}
		start := time.Now()
		back := map[int]time.Duration{}
		for len(back) < n {
			time.Sleep(10 * time.Millisecond)
			synctest.Wait()
			for _, p := range b.Stats().Pods {
				if _, seen := back[p.Pod]; !seen && !p.Ejected {
					back[p.Pod] = time.Since(start)
				}
			}
			if time.Since(start) > time.Minute {
				t.Fatalf("only %d of %d pods came back within a minute", len(back), n)
			}
		}
		distinct := map[time.Duration]bool{}
		for pod, d := range back {
			if d < 9*time.Second || d > 11*time.Second+10*time.Millisecond {
				t.Fatalf("pod %d was out for %v, want 10 s ± 10%%", pod, d)
			}
			distinct[d] = true
		}
		if len(distinct) < n/2 {
			t.Fatalf("only %d distinct ejection lengths among %d pods: no jitter", len(distinct), n)
		}
	})
}
