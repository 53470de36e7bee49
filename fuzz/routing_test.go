package fuzz

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/internal/testkit"
	"github.com/stickyroute/stickyroute/store"
)

// FuzzRouting runs a program against two engine clients, each on its own
// tracked connection to the real standalone Redis (as two gateway processes
// would be), while a third connection plays the server pods: it publishes
// pod states and claims or releases users. The model is what Redis holds
// (every link and pod state, written by the program or read back after a
// client placed a user), and every answer is checked against it:
//
//   - eligible: a user without a link is placed on an accepting pod inside the
//     load band (Ready, load ≤ least + max(10, least/4)), or gets
//     ErrNoAvailablePod when there is none;
//   - sticky: a user linked to a routable pod (Ready or DenyNewCall) gets that
//     pod, from either client, however the other pods change;
//   - coherent: after a pod claims or releases a user, both clients' caches
//     settle (within a deadline) on what Redis holds, and from then on the
//     two clients answer the same pod.
//
// Program bytes: an opcode (byte % routingOps) and its arguments; the first
// four bytes are the initial routing of pods 0..3 (% 3: Ready, DenyNewCall,
// Shutdown). Users are fuzzUIDs (byte % 4), clients 0 and 1 (byte % 2).
const (
	rtCompute    = 0 // client, uid: ComputeLinkedPod, checked against the model
	rtState      = 1 // pod, routing, load: a pod publishes (load % 30); both clients wait to see it
	rtClaim      = 2 // uid, pod: the pod claims the user (persistent link); caches settle
	rtRelease    = 3 // uid: the user's link is removed; caches settle
	rtExpire     = 4 // client, uid: CacheExpired
	rtAgree      = 5 // uid: both clients compute the user; they must agree
	routingOps   = 6
	routingPods  = 4
	routingMax   = 24 // operations per program
	routingSvc   = "room"
	settleWithin = 5 * time.Second
)

// routingStores are the three connections, shared by the runs of a process:
// dialing per run would cost more than the run.
var routingStores struct {
	once    sync.Once
	clients [2]*store.Redis
	writer  *store.Redis
	err     error
}

func realStores(t *testing.T) ([2]*store.Redis, *store.Redis) {
	t.Helper()
	addrs := redistest.Addrs(t, redistest.Standalone)
	s := &routingStores
	s.once.Do(func() {
		dial := func() *store.Redis {
			if s.err != nil {
				return nil
			}
			st, err := store.Dial(store.DialConfig{Addrs: addrs, ClientName: "stickyroute-fuzz"})
			if err != nil {
				s.err = err
				return nil
			}
			shared.mu.Lock()
			shared.closers = append(shared.closers, st.Close)
			shared.mu.Unlock()
			return st
		}
		s.clients[0], s.clients[1], s.writer = dial(), dial(), dial()
	})
	if s.err != nil {
		t.Fatalf("dialing the standalone Redis: %v", s.err)
	}
	return s.clients, s.writer
}

// routingModel is what Redis holds for the program's namespace.
type routingModel struct {
	routing [routingPods]store.RoutingState
	load    [routingPods]int
	links   map[string]modelLink
}

func (m *routingModel) routable(p int) bool {
	return p >= 0 && p < routingPods && (m.routing[p] == store.Ready || m.routing[p] == store.DenyNewCall)
}

// eligible reports whether a new user may be placed on p: accepting, and
// inside the load band of the client's default configuration.
func (m *routingModel) eligible(p int) bool {
	least := -1
	for q := range routingPods {
		if m.routing[q] == store.Ready && (least < 0 || m.load[q] < least) {
			least = m.load[q]
		}
	}
	return p >= 0 && p < routingPods && m.routing[p] == store.Ready && m.load[p] <= least+max(10, least/4)
}

func (m *routingModel) anyEligible() bool {
	for p := range routingPods {
		if m.eligible(p) {
			return true
		}
	}
	return false
}

func FuzzRouting(f *testing.F) {
	// Initial routing of pods 0..3, then the operations.
	const ready, deny, shut = 0, 1, 2
	// Every pod Ready: place a user, read it from the other client, agree.
	f.Add([]byte{ready, ready, ready, ready, rtCompute, 0, 0, rtCompute, 1, 0, rtAgree, 0})
	// The user's pod goes DenyNewCall: the user stays; a new user goes elsewhere.
	f.Add([]byte{ready, deny, ready, ready, rtClaim, 1, 1, rtCompute, 0, 1, rtCompute, 1, 2, rtState, 1, deny, 0, rtCompute, 0, 1})
	// A temporary link's pod shuts down: the user moves to an eligible pod.
	f.Add([]byte{ready, shut, shut, shut, rtCompute, 0, 3, rtState, 1, ready, 0, rtState, 0, shut, 0, rtCompute, 1, 3, rtAgree, 3})
	// A persistent link to a shut pod is an error naming the pod.
	f.Add([]byte{ready, ready, ready, ready, rtClaim, 2, 3, rtState, 3, shut, 0, rtCompute, 0, 2, rtCompute, 1, 2})
	// Nothing accepting: ErrNoAvailablePod; then a pod comes up.
	f.Add([]byte{shut, deny, shut, deny, rtCompute, 0, 0, rtState, 2, ready, 5, rtCompute, 1, 0, rtAgree, 0})
	// A claim moves a cached user; release; both clients follow.
	f.Add([]byte{ready, ready, ready, ready, rtCompute, 0, 1, rtCompute, 1, 1, rtClaim, 1, 2, rtAgree, 1, rtRelease, 1, rtAgree, 1})
	// The load band: pod 0 far above the others takes no new users.
	f.Add([]byte{ready, ready, ready, ready, rtState, 0, ready, 29, rtCompute, 0, 0, rtCompute, 0, 1, rtCompute, 1, 2, rtExpire, 0, 0, rtCompute, 0, 0})
	f.Fuzz(func(t *testing.T, prog []byte) {
		stores, writer := realStores(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ns := redistest.Namespace(t)
		r := testkit.NewProgram(prog)
		m := &routingModel{links: map[string]modelLink{}}
		for p := range routingPods {
			m.routing[p] = fuzzRouting[r.Int()%len(fuzzRouting)]
			if _, err := writer.SetServiceState(ctx, ns, routingSvc, p, 0, m.routing[p]); err != nil {
				t.Fatal(err)
			}
		}
		var clients [2]*engine.Client
		for i := range clients {
			c, err := engine.NewClient(engine.ClientConfig{
				Store: stores[i],
				// Pods never go stale during a run; clients reload states often.
				Timing: engine.Timing{Heartbeat: time.Minute, Refresh: 20 * time.Millisecond},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			clients[i] = c
		}
		// compute checks one ComputeLinkedPod against the model and records a placement.
		compute := func(n, ci int, uid string) (int, error) {
			t.Helper()
			pod, err := clients[ci].ComputeLinkedPod(ctx, ns, uid, routingSvc)
			l, linked := m.links[uid]
			switch {
			case linked && m.routable(l.pod):
				if err != nil || pod != l.pod {
					t.Fatalf("op %d: client %d: %s linked to routable pod %d got (%d, %v): not sticky", n, ci, uid, l.pod, pod, err)
				}
			case linked && l.persistent:
				var pe *engine.PodNotRoutableError
				if !errors.As(err, &pe) || pe.Pod != l.pod {
					t.Fatalf("op %d: client %d: %s persistently linked to unroutable pod %d got (%d, %v), want a PodNotRoutableError for it", n, ci, uid, l.pod, pod, err)
				}
			case !m.anyEligible():
				if !errors.Is(err, engine.ErrNoAvailablePod) {
					t.Fatalf("op %d: client %d: %s with no eligible pod got (%d, %v), want ErrNoAvailablePod", n, ci, uid, pod, err)
				}
			default: // unlinked, or a temporary link to a pod that is gone: placed anew
				if err != nil || !m.eligible(pod) {
					t.Fatalf("op %d: client %d: %s placed on (%d, %v); states %v loads %v: not eligible", n, ci, uid, pod, err, m.routing, m.load)
				}
				m.links[uid] = modelLink{pod: pod}
			}
			return pod, err
		}
		// settle waits until neither client's cache holds a pod for uid
		// other than the one in Redis.
		settle := func(n int, uid string) {
			t.Helper()
			want := store.NoPod
			if l, ok := m.links[uid]; ok {
				want = l.pod
			}
			deadline := time.Now().Add(settleWithin)
			for ci, c := range clients {
				for {
					got := c.GetLinkedInCache(ns, uid, routingSvc)
					if got == engine.NoPod || got == want {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("op %d: client %d still caches %s on pod %d %v after the link became %d", n, ci, uid, got, settleWithin, want)
					}
					time.Sleep(time.Millisecond)
				}
			}
		}
		for n := 0; r.More() && n < routingMax; n++ {
			switch r.Int() % routingOps {
			case rtCompute:
				ci, uid := r.Int()%2, fuzzUIDs[r.Int()%len(fuzzUIDs)]
				compute(n, ci, uid)
			case rtState:
				p, rt, load := r.Int()%routingPods, fuzzRouting[r.Int()%len(fuzzRouting)], r.Int()%30
				if _, err := writer.SetServiceState(ctx, ns, routingSvc, p, load, rt); err != nil {
					t.Fatal(err)
				}
				m.routing[p], m.load[p] = rt, load
				for ci, c := range clients {
					redistest.Poll(t, settleWithin, "client sees the new state of a pod", func() bool {
						snap, err := c.States().Snapshot(ctx, ns, routingSvc)
						if err != nil {
							t.Fatalf("op %d: client %d: %v", n, ci, err)
						}
						for _, ps := range snap.Pods {
							if ps.Pod == p {
								return ps.Routing == rt && ps.Load == int64(load)
							}
						}
						return false
					})
				}
			case rtClaim:
				uid, p := fuzzUIDs[r.Int()%len(fuzzUIDs)], r.Int()%routingPods
				if _, err := writer.SetLinkedPod(ctx, ns, uid, routingSvc, p, store.Persistent); err != nil {
					t.Fatal(err)
				}
				m.links[uid] = modelLink{pod: p, persistent: true}
				settle(n, uid)
			case rtRelease:
				uid := fuzzUIDs[r.Int()%len(fuzzUIDs)]
				if _, err := writer.RemoveLinkedPod(ctx, ns, uid, routingSvc, store.Persistent); err != nil {
					t.Fatal(err)
				}
				delete(m.links, uid)
				settle(n, uid)
			case rtExpire:
				ci, uid := r.Int()%2, fuzzUIDs[r.Int()%len(fuzzUIDs)]
				clients[ci].CacheExpired(ns, uid, routingSvc)
			case rtAgree:
				uid := fuzzUIDs[r.Int()%len(fuzzUIDs)]
				p0, err0 := compute(n, 0, uid)
				p1, err1 := compute(n, 1, uid)
				if p0 != p1 || (err0 == nil) != (err1 == nil) {
					t.Fatalf("op %d: the clients disagree on %s: (%d, %v) and (%d, %v)", n, uid, p0, err0, p1, err1)
				}
			}
		}
	})
}
