package lb_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/stickyroute/stickyroute/lb"
)

// A balancer over three pods with their published loads; each request reports
// back through Done.
func Example() {
	b, err := lb.New(lb.Config{
		Strategy: lb.P2C{},
		Pods:     []lb.Pod{{Index: 0, Load: 40}, {Index: 1, Load: 0}, {Index: 2, Load: 90}},
	})
	if err != nil {
		panic(err)
	}
	defer b.Close()

	counts := map[int]int{}
	for range 30 {
		r, err := b.Pick()
		if err != nil {
			panic(err)
		}
		counts[r.Pod]++
		// The requests stay open (think: users placed on the pod), so each pick
		// weighs on the next ones.
	}
	// Two random candidates, the less loaded wins: pod 2 (load 90) loses
	// to either other pod as long as 30 open requests cannot lift pod 0
	// (load 40) above it.
	fmt.Println("pod 2, the most loaded, got no pick:", counts[2] == 0)
	fmt.Println("pods 0 and 1 took all 30:", counts[0]+counts[1] == 30)
	// Output:
	// pod 2, the most loaded, got no pick: true
	// pods 0 and 1 took all 30: true
}

// Smooth weighted round robin gives every pod exactly its weight over each
// period, interleaved. (Each processor keeps its own rotation, so a goroutine
// that moves between processors sees whole periods only per processor: the
// shares below hold to within a period.)
func ExampleSmoothWeighted() {
	b, err := lb.New(lb.Config{
		Strategy: lb.SmoothWeighted{},
		Pods:     []lb.Pod{{Index: 0, Weight: 5}, {Index: 1, Weight: 1}, {Index: 2, Weight: 1}},
	})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	counts := map[int]int{}
	for range 7000 {
		r, _ := b.Pick()
		counts[r.Pod]++
		r.Done(lb.DoneInfo{})
	}
	fmt.Printf("%.0f%% %.0f%% %.0f%%\n", pct(counts[0]), pct(counts[1]), pct(counts[2]))
	// Output:
	// 71% 14% 14%
}

func pct(n int) float64 { return float64(n) * 100 / 7000 }

// Consistent hashing keeps a key on its pod; a pod that fails its calls is
// ejected for a while and its keys go elsewhere meanwhile.
func ExampleBalancer_PickKey() {
	b, err := lb.New(lb.Config{
		Strategy: lb.Maglev{},
		Pods:     []lb.Pod{{Index: 0}, {Index: 1}, {Index: 2}},
		Ejection: lb.Ejection{Failures: 3, Base: time.Minute},
	})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	first, _ := b.PickKey("user-42")
	again, _ := b.PickKey("user-42")
	fmt.Println("same pod twice:", first.Pod == again.Pod)
	for range 3 {
		r, _ := b.PickKey("user-42")
		r.Done(lb.DoneInfo{Duration: time.Millisecond, Err: errors.New("unavailable")})
	}
	moved, _ := b.PickKey("user-42")
	fmt.Println("moved while its pod is ejected:", moved.Pod != first.Pod)
	// Output:
	// same pod twice: true
	// moved while its pod is ejected: true
}
