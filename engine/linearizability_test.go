package engine_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/stickyroute/stickyroute/internal/faultproxy"
	"github.com/stickyroute/stickyroute/internal/redisproc"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

// A model of the link operations of SPEC §4 on one (uid, service): the state
// is the link (a pod or none) and whether it is persistent. Temporary links
// live 60 s, longer than the test, so none expires during it.

type linkState struct {
	pod     int
	persist bool
}

type linkOp struct {
	kind     string // set tryset ifabsent replace get getpersist remove removeid
	uid      string
	pod, exp int
	ttl      int
}

// linkOut is an operation's reply; unknown when the call failed (it may or
// may not have taken effect).
type linkOut struct {
	unknown bool
	ok      bool // claimed, replaced, existed, removed
	a, b    int  // previous / owner / actual / pod, as the op replies
}

const tempTTL = 60

func (op linkOp) apply(s linkState) (linkState, linkOut) {
	next := linkState{pod: op.pod, persist: op.ttl == store.Persistent}
	switch op.kind {
	case "set":
		return next, linkOut{a: s.pod}
	case "tryset":
		if s.pod != store.NoPod && s.pod != op.pod && s.persist {
			return s, linkOut{ok: false, a: s.pod, b: s.pod}
		}
		return next, linkOut{ok: true, a: op.pod, b: s.pod}
	case "ifabsent":
		if s.pod == store.NoPod {
			return next, linkOut{a: op.pod}
		}
		return s, linkOut{a: s.pod}
	case "replace":
		if s.pod == op.exp {
			return next, linkOut{ok: true, a: op.pod}
		}
		return s, linkOut{ok: false, a: s.pod}
	case "get":
		return s, linkOut{a: s.pod}
	case "getpersist":
		if s.persist {
			return s, linkOut{a: s.pod}
		}
		return s, linkOut{a: store.NoPod}
	case "remove":
		existed := s.pod != store.NoPod
		if op.ttl == store.Persistent || !existed {
			return linkState{pod: store.NoPod}, linkOut{ok: existed}
		}
		return linkState{pod: s.pod}, linkOut{ok: true}
	case "removeid":
		if s.pod != op.pod || s.pod == store.NoPod {
			return s, linkOut{ok: false}
		}
		if op.ttl == store.Persistent {
			return linkState{pod: store.NoPod}, linkOut{ok: true}
		}
		return linkState{pod: s.pod}, linkOut{ok: true}
	}
	panic("unknown op " + op.kind)
}

var linkModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var order []string
		for _, h := range history {
			u := h.Input.(linkOp).uid
			if _, ok := by[u]; !ok {
				order = append(order, u)
			}
			by[u] = append(by[u], h)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, u := range order {
			out = append(out, by[u])
		}
		return out
	},
	Init: func() any { return linkState{pod: store.NoPod} },
	Step: func(state, input, output any) (bool, any) {
		next, want := input.(linkOp).apply(state.(linkState))
		got := output.(linkOut)
		if got.unknown {
			return true, next
		}
		return got == want, next
	},
	DescribeOperation: func(input, output any) string {
		return fmt.Sprintf("%+v -> %+v", input, output)
	},
}

// do runs op against st and returns its reply.
func (op linkOp) do(ctx context.Context, st *store.Redis, ns string) (linkOut, error) {
	switch op.kind {
	case "set":
		prev, err := st.SetLinkedPod(ctx, ns, op.uid, svc, op.pod, op.ttl)
		return linkOut{a: prev}, err
	case "tryset":
		c, err := st.TrySetLinkedPod(ctx, ns, op.uid, svc, op.pod, op.ttl)
		return linkOut{ok: c.Claimed, a: c.Owner, b: c.Previous}, err
	case "ifabsent":
		actual, err := st.SetLinkedPodIfAbsent(ctx, ns, op.uid, svc, op.pod, op.ttl)
		return linkOut{a: actual}, err
	case "replace":
		ok, actual, err := st.ReplaceLinkedPod(ctx, ns, op.uid, svc, op.exp, op.pod, op.ttl)
		return linkOut{ok: ok, a: actual}, err
	case "get":
		pod, err := st.GetLinkedPod(ctx, ns, op.uid, svc)
		return linkOut{a: pod}, err
	case "getpersist":
		pod, err := st.GetLinkedPodIfPersist(ctx, ns, op.uid, svc)
		return linkOut{a: pod}, err
	case "remove":
		ok, err := st.RemoveLinkedPod(ctx, ns, op.uid, svc, op.ttl)
		return linkOut{ok: ok}, err
	case "removeid":
		ok, err := st.RemoveLinkedPodWithId(ctx, ns, op.uid, svc, op.pod, op.ttl)
		return linkOut{ok: ok}, err
	}
	panic("unknown op " + op.kind)
}

func randomOp(rnd *rand.Rand, uids []string) linkOp {
	kinds := []string{"set", "tryset", "ifabsent", "replace", "get", "getpersist", "remove", "removeid", "get", "ifabsent"}
	op := linkOp{kind: kinds[rnd.IntN(len(kinds))], uid: uids[rnd.IntN(len(uids))],
		pod: rnd.IntN(3), exp: rnd.IntN(4) - 1, ttl: tempTTL}
	if rnd.IntN(2) == 0 {
		op.ttl = store.Persistent
	}
	if op.kind == "ifabsent" {
		op.ttl = tempTTL
	}
	return op
}

// TestLinearizable: five clients, each through its own fault proxy to one
// Redis, run random link operations on three users while the proxies add
// latency, cut connections mid-command, refuse and black-hole them. Every
// history must be linearizable against the model of SPEC §4: a failed call
// may or may not have taken effect (it returns "at the end of time"), a
// successful one must fit.
func TestLinearizable(t *testing.T) {
	srv := redisproc.Start(t)
	ns := redistest.Namespace(t)
	uids := []string{"a", "b", "c"}
	const clients = 5
	run := 4 * time.Second
	var proxies []*faultproxy.Proxy
	var stores []*store.Redis
	for range clients {
		p := proxied(t, srv.Addr)
		proxies = append(proxies, p)
		stores = append(stores, dialStore(t, p.Addr(), true, nil))
	}

	var mu sync.Mutex
	var history []porcupine.Operation
	failed := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	base := time.Now()
	for i := range clients {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for {
				select {
				case <-stop:
					return
				default:
				}
				op := randomOp(rnd, uids)
				ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
				call := time.Since(base).Nanoseconds()
				out, err := op.do(ctx, stores[i], ns)
				ret := time.Since(base).Nanoseconds()
				cancel()
				if err != nil {
					out, ret = linkOut{unknown: true}, math.MaxInt64
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: i, Input: op, Call: call, Output: out, Return: ret})
				if err != nil {
					failed++
				}
				mu.Unlock()
			}
		})
	}
	// Faults, each on a random proxy, for the whole run.
	rnd := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	faults := map[string]int{}
	for end := time.Now().Add(run); time.Now().Before(end); {
		p := proxies[rnd.IntN(clients)]
		switch k := rnd.IntN(5); k {
		case 0:
			p.SetLatency(time.Duration(rnd.IntN(30)) * time.Millisecond)
			faults["latency"]++
		case 1:
			p.ResetAfter(int64(10 + rnd.IntN(300)))
			faults["reset mid-command"]++
		case 2:
			p.Set(faultproxy.Refuse)
			faults["refuse"]++
		case 3:
			p.Set(faultproxy.BlackHole)
			faults["black-hole"]++
		default:
			p.Set(faultproxy.Pass)
		}
		// Let the fault act on the traffic for a moment.
		time.Sleep(time.Duration(20+rnd.IntN(80)) * time.Millisecond)
		if rnd.IntN(2) == 0 {
			p.Set(faultproxy.Pass)
		}
	}
	for _, p := range proxies {
		p.Set(faultproxy.Pass)
		p.SetLatency(0)
	}
	close(stop)
	wg.Wait()

	ok := len(history) - failed
	if ok < 500 {
		t.Fatalf("only %d operations succeeded: the faults left too little to check", ok)
	}
	res, info := porcupine.CheckOperationsVerbose(linkModel, history, 2*time.Minute)
	t.Logf("LINEARIZABILITY | %d operations from %d clients on %d users, %d succeeded, %d failed (outcome unknown) | faults %v | result %s",
		len(history), clients, len(uids), ok, failed, faults, res)
	if res != porcupine.Ok {
		path := t.TempDir() + "/history.html"
		if err := porcupine.VisualizePath(linkModel, info, path); err == nil {
			t.Logf("visualization: %s", path)
		}
		t.Fatalf("history not linearizable against the SPEC §4 model: %s", res)
	}

}

// TestLinkModelRejects: the model is strict enough to fail a history: a read
// that misses a write finished before it began, or a refused claim that names
// no persistent owner.
func TestLinkModelRejects(t *testing.T) {
	set := linkOp{kind: "set", uid: "a", pod: 2, ttl: store.Persistent}
	get := linkOp{kind: "get", uid: "a"}
	stale := []porcupine.Operation{
		{Input: set, Call: 0, Output: linkOut{a: store.NoPod}, Return: 10},
		{Input: get, Call: 20, Output: linkOut{a: store.NoPod}, Return: 30},
	}
	if porcupine.CheckOperations(linkModel, stale) {
		t.Fatal("a stale read passed the model")
	}
	fresh := []porcupine.Operation{stale[0], {Input: get, Call: 20, Output: linkOut{a: 2}, Return: 30}}
	if !porcupine.CheckOperations(linkModel, fresh) {
		t.Fatal("a fresh read failed the model")
	}
	// A failed write may have happened: both readings are fine.
	unknown := []porcupine.Operation{
		{Input: set, Call: 0, Output: linkOut{unknown: true}, Return: math.MaxInt64},
		{Input: get, Call: 20, Output: linkOut{a: store.NoPod}, Return: 30},
		{Input: get, Call: 40, Output: linkOut{a: 2}, Return: 50},
	}
	if !porcupine.CheckOperations(linkModel, unknown) {
		t.Fatal("a write of unknown outcome could not be placed")
	}
	refused := []porcupine.Operation{
		{Input: linkOp{kind: "ifabsent", uid: "a", pod: 1, ttl: tempTTL}, Call: 0, Output: linkOut{a: 1}, Return: 10},
		{Input: linkOp{kind: "tryset", uid: "a", pod: 2, ttl: store.Persistent}, Call: 20, Output: linkOut{ok: false, a: 1, b: 1}, Return: 30},
	}
	if porcupine.CheckOperations(linkModel, refused) {
		t.Fatal("a claim refused by a temporary link passed the model")
	}
}
