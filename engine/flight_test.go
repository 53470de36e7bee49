package engine

import (
	"sync"
	"testing"
)

// TestFlights: one call per key in flight; callers of the same key join it,
// a key of equal hash has its own, and a key that left can fly again.
func TestFlights(t *testing.T) {
	var f flights
	a := &call{h: 7, ns: "ns", svc: "svc", uid: "a"}
	if got := f.join(a); got != nil {
		t.Fatalf("first join of a: joined %v, want to lead", got)
	}
	if got := f.join(&call{h: 7, ns: "ns", svc: "svc", uid: "a"}); got != a {
		t.Fatalf("second join of a: %v, want a's call", got)
	}
	// Same hash, other keys: each leads its own flight.
	b := &call{h: 7, ns: "ns", svc: "svc", uid: "b"}
	other := &call{h: 7 + flightShards, ns: "ns", svc: "other", uid: "a"}
	for _, c := range []*call{b, other} {
		if got := f.join(c); got != nil {
			t.Fatalf("join of %s/%s: joined %s's call, want to lead", c.svc, c.uid, got.uid)
		}
	}
	f.leave(a)
	if got := f.join(&call{h: 7, ns: "ns", svc: "svc", uid: "b"}); got != b {
		t.Fatalf("join of b after a left: %v, want b's call", got)
	}
	a2 := &call{h: 7, ns: "ns", svc: "svc", uid: "a"}
	if got := f.join(a2); got != nil {
		t.Fatalf("join of a after it left: joined %v, want to lead", got)
	}
	for _, c := range []*call{b, other, a2} {
		f.leave(c)
	}
	for i := range f.shards {
		if f.shards[i].head != nil {
			t.Fatalf("shard %d still holds a call after every one left", i)
		}
	}
}

// TestFlightsConcurrent: callers of one key racing to join get one leader
// per flight, and every other caller joins the leader of its time.
func TestFlightsConcurrent(t *testing.T) {
	var f flights
	const callers, rounds = 16, 200
	for range rounds {
		var mu sync.Mutex
		var leaders, joined []*call
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range callers {
			wg.Go(func() {
				<-start
				mine := &call{h: 42, ns: "ns", svc: "svc", uid: "u"}
				other := f.join(mine)
				mu.Lock()
				defer mu.Unlock()
				if other == nil {
					leaders = append(leaders, mine)
				} else {
					joined = append(joined, other)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(leaders) != 1 {
			t.Fatalf("%d leaders for one key that never left, want 1", len(leaders))
		}
		for _, c := range joined {
			if c != leaders[0] {
				t.Fatal("a caller joined a call that is not the one in flight")
			}
		}
		f.leave(leaders[0])
	}
}
