package fuzz

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/rueidis"

	"github.com/stickyroute/stickyroute/internal/testkit"
	"github.com/stickyroute/stickyroute/store"
)

// FuzzStoreModel runs a program of store operations on the embedded Redis
// and on model, a plain in-memory reading of SPEC §4, and fails at the first
// answer that differs, or when the stored links differ after a clock jump and
// at the end.
//
// The program: each byte starts an operation (byte % storeOps), followed by
// its arguments; a program that runs out reads zeros, so every byte string is
// a valid program. Arguments index small domains, so that operations meet on
// the same keys: uid (byte % 4) from fuzzUIDs, service (% 2) from fuzzSvcs,
// pod (% 4), expected pod (% 5 - 1, so NoPod too), ttl (% 3) from fuzzTTLs.
const (
	opSet       = 0  // uid, svc, pod, ttl: SetLinkedPod
	opTrySet    = 1  // uid, svc, pod, ttl: TrySetLinkedPod
	opIfAbsent  = 2  // uid, svc, pod, ttl: SetLinkedPodIfAbsent
	opReplace   = 3  // uid, svc, expected, pod, ttl: ReplaceLinkedPod
	opGet       = 4  // uid, svc: GetLinkedPod
	opGetPers   = 5  // uid, svc: GetLinkedPodIfPersist
	opRemove    = 6  // uid, svc, ttl: RemoveLinkedPod
	opRemoveID  = 7  // uid, svc, pod, ttl: RemoveLinkedPodWithId
	opService   = 8  // uid: GetLinkService
	opBatch     = 9  // svc: BatchGetLinkedPod of every uid
	opAdvance   = 10 // seconds: the clock jumps 1 + seconds%12 s, then every link is compared
	opSetState  = 11 // svc, pod, load, routing: SetServiceState
	opGetState  = 12 // svc: GetServiceState
	opRmState   = 13 // svc, pod: RemoveServiceState
	storeOps    = 14
	storeMaxOps = 64
)

var (
	// fuzzUIDs includes a uid of bytes the key escaping rewrites, and one
	// that is a prefix of another.
	fuzzUIDs = []string{"u1", "u", "{x}%7B", "0"}
	fuzzSvcs = []string{"room", "chat"}
	fuzzTTLs = []int{store.Persistent, 3, 10}
	// fuzzRouting indexes the routing states a pod can publish.
	fuzzRouting = []store.RoutingState{store.Ready, store.DenyNewCall, store.Shutdown}
)

// model is SPEC §4 in memory: the links, with their expiry on the model's
// clock in seconds, and the pod states.
type model struct {
	now    int64
	links  map[[2]string]modelLink // (uid, svc)
	states map[string]map[int]store.StateValue
}

type modelLink struct {
	pod        int
	persistent bool
	expires    int64 // model seconds; for temporary links
}

func newModel() *model {
	return &model{links: map[[2]string]modelLink{}, states: map[string]map[int]store.StateValue{}}
}

// get returns the live link of (uid, svc), dropping an expired one.
func (m *model) get(uid, svc string) (modelLink, bool) {
	k := [2]string{uid, svc}
	l, ok := m.links[k]
	if ok && !l.persistent && l.expires <= m.now {
		delete(m.links, k)
		return modelLink{}, false
	}
	return l, ok
}

// pod is the linked pod or NoPod.
func (m *model) pod(uid, svc string) int {
	if l, ok := m.get(uid, svc); ok {
		return l.pod
	}
	return store.NoPod
}

// write links uid to pod: persistent for ttl -1, else for ttl seconds.
func (m *model) write(uid, svc string, pod, ttl int) {
	m.links[[2]string{uid, svc}] = modelLink{pod: pod, persistent: ttl == store.Persistent, expires: m.now + int64(ttl)}
}

// services is GetLinkService's answer: the persistent links of uid.
func (m *model) services(uid string) map[string]int {
	out := map[string]int{}
	for _, svc := range fuzzSvcs {
		if l, ok := m.get(uid, svc); ok && l.persistent {
			out[svc] = l.pod
		}
	}
	return out
}

// The embedded Redis is shared by the runs of one process (starting one per
// run would cost more than the run); each run starts by flushing it.
var shared struct {
	once sync.Once
	mini *miniredis.Miniredis
	rc   rueidis.Client
	st   *store.Redis
	err  error
	// closers of the routing fuzzer's real-server stores.
	mu      sync.Mutex
	closers []func()
}

func embedded(t *testing.T) (*miniredis.Miniredis, *store.Redis) {
	t.Helper()
	shared.once.Do(func() {
		m := miniredis.NewMiniRedis()
		if shared.err = m.StartAddr("127.0.0.1:0"); shared.err != nil {
			return
		}
		shared.mini = m
		shared.rc, shared.err = rueidis.NewClient(rueidis.ClientOption{
			InitAddress: []string{m.Addr()}, ForceSingleClient: true, DisableCache: true,
		})
		if shared.err == nil {
			shared.st = store.New(shared.rc)
		}
	})
	if shared.err != nil {
		t.Fatalf("embedded Redis: %v", shared.err)
	}
	shared.mini.FlushAll()
	return shared.mini, shared.st
}

// closeShared stops what the fuzzers shared; TestMain calls it.
func closeShared() {
	if shared.rc != nil {
		shared.rc.Close()
	}
	if shared.mini != nil {
		shared.mini.Close()
	}
	shared.mu.Lock()
	for _, c := range shared.closers {
		c()
	}
	shared.mu.Unlock()
}

func FuzzStoreModel(f *testing.F) {
	// Seeds, one per story (bytes: opcode, then arguments).
	f.Add([]byte{})
	// Persistent link, then a refused claim by another pod, then an accepted
	// one by the owner: SetLinkedPod u1/room→2 persistent; TrySet →1 refused; TrySet →2.
	f.Add([]byte{opSet, 0, 0, 2, 0, opTrySet, 0, 0, 1, 0, opTrySet, 0, 0, 2, 1, opService, 0})
	// Temporary link expires: IfAbsent {x}%7B/chat→3 ttl 3, advance 3 s, Get.
	f.Add([]byte{opIfAbsent, 2, 1, 3, 1, opAdvance, 2, opGet, 2, 1, opIfAbsent, 2, 1, 1, 2})
	// Compare-and-set from no link (expected NoPod), then from the wrong pod.
	f.Add([]byte{opReplace, 1, 0, 0, 2, 0, opReplace, 1, 0, 3, 1, 0, opReplace, 1, 0, 3, 1, 1, opGetPers, 1, 0})
	// Grace period: a persistent link removed with ttl 10 stays readable, not
	// persistent, then expires.
	f.Add([]byte{opSet, 3, 0, 1, 0, opRemove, 3, 0, 2, opGetPers, 3, 0, opGet, 3, 0, opAdvance, 9, opGet, 3, 0})
	// Remove with id: wrong pod refused, right pod removed now.
	f.Add([]byte{opSet, 0, 1, 2, 0, opRemoveID, 0, 1, 1, 0, opRemoveID, 0, 1, 2, 0, opService, 0})
	// Batch over every uid, two pods, one temporary link.
	f.Add([]byte{opSet, 0, 0, 1, 0, opSet, 1, 0, 2, 1, opSet, 3, 0, 1, 0, opBatch, 0, opBatch, 1})
	// Pod states: publish, overwrite, remove, read.
	f.Add([]byte{opSetState, 0, 1, 7, 0, opSetState, 0, 2, 3, 1, opSetState, 0, 1, 9, 2, opRmState, 0, 2, opGetState, 0})
	f.Fuzz(func(t *testing.T, prog []byte) {
		mini, st := embedded(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		const ns = "fz"
		m := newModel()
		r := testkit.NewProgram(prog)
		for n := 0; r.More() && n < storeMaxOps; n++ {
			op := r.Int() % storeOps
			step := func(format string, args ...any) string {
				return fmt.Sprintf("op %d (%s): ", n, fmt.Sprintf(format, args...))
			}
			uid := func() string { return fuzzUIDs[r.Int()%len(fuzzUIDs)] }
			svc := func() string { return fuzzSvcs[r.Int()%len(fuzzSvcs)] }
			pod := func() int { return r.Int() % 4 }
			ttl := func() int { return fuzzTTLs[r.Int()%len(fuzzTTLs)] }
			switch op {
			case opSet:
				u, s, p, tl := uid(), svc(), pod(), ttl()
				got, err := st.SetLinkedPod(ctx, ns, u, s, p, tl)
				want := m.pod(u, s)
				m.write(u, s, p, tl)
				check(t, step("SetLinkedPod %s %s %d %d", u, s, p, tl), got, want, err)
			case opTrySet:
				u, s, p, tl := uid(), svc(), pod(), ttl()
				got, err := st.TrySetLinkedPod(ctx, ns, u, s, p, tl)
				cur, linked := m.get(u, s)
				var want store.Claim
				if linked && cur.persistent && cur.pod != p {
					want = store.Claim{Claimed: false, Owner: cur.pod, Previous: cur.pod}
				} else {
					want = store.Claim{Claimed: true, Owner: p, Previous: m.pod(u, s)}
					m.write(u, s, p, tl)
				}
				check(t, step("TrySetLinkedPod %s %s %d %d", u, s, p, tl), got, want, err)
			case opIfAbsent:
				u, s, p, tl := uid(), svc(), pod(), ttl()
				got, err := st.SetLinkedPodIfAbsent(ctx, ns, u, s, p, tl)
				want := m.pod(u, s)
				if want == store.NoPod {
					m.write(u, s, p, tl)
					want = p
				}
				check(t, step("SetLinkedPodIfAbsent %s %s %d %d", u, s, p, tl), got, want, err)
			case opReplace:
				u, s, exp, p, tl := uid(), svc(), r.Int()%5-1, pod(), ttl()
				replaced, actual, err := st.ReplaceLinkedPod(ctx, ns, u, s, exp, p, tl)
				want := [2]any{false, m.pod(u, s)}
				if m.pod(u, s) == exp {
					m.write(u, s, p, tl)
					want = [2]any{true, p}
				}
				check(t, step("ReplaceLinkedPod %s %s %d→%d %d", u, s, exp, p, tl), [2]any{replaced, actual}, want, err)
			case opGet:
				u, s := uid(), svc()
				got, err := st.GetLinkedPod(ctx, ns, u, s)
				check(t, step("GetLinkedPod %s %s", u, s), got, m.pod(u, s), err)
			case opGetPers:
				u, s := uid(), svc()
				got, err := st.GetLinkedPodIfPersist(ctx, ns, u, s)
				want := store.NoPod
				if l, ok := m.get(u, s); ok && l.persistent {
					want = l.pod
				}
				check(t, step("GetLinkedPodIfPersist %s %s", u, s), got, want, err)
			case opRemove:
				u, s, tl := uid(), svc(), ttl()
				got, err := st.RemoveLinkedPod(ctx, ns, u, s, tl)
				l, want := m.get(u, s)
				if want {
					removeModel(m, u, s, l, tl)
				}
				check(t, step("RemoveLinkedPod %s %s %d", u, s, tl), got, want, err)
			case opRemoveID:
				u, s, p, tl := uid(), svc(), pod(), ttl()
				got, err := st.RemoveLinkedPodWithId(ctx, ns, u, s, p, tl)
				l, linked := m.get(u, s)
				want := linked && l.pod == p
				if want {
					removeModel(m, u, s, l, tl)
				}
				check(t, step("RemoveLinkedPodWithId %s %s %d %d", u, s, p, tl), got, want, err)
			case opService:
				u := uid()
				got, err := st.GetLinkService(ctx, ns, u)
				check(t, step("GetLinkService %s", u), got, m.services(u), err)
			case opBatch:
				s := svc()
				got, err := st.BatchGetLinkedPod(ctx, ns, fuzzUIDs, s)
				want := map[int][]string{}
				for _, u := range fuzzUIDs {
					if p := m.pod(u, s); p != store.NoPod {
						want[p] = append(want[p], u)
					}
				}
				check(t, step("BatchGetLinkedPod %s", s), got, want, err)
			case opAdvance:
				d := 1 + r.Int()%12
				mini.FastForward(time.Duration(d) * time.Second)
				m.now += int64(d)
				compareAll(ctx, t, st, m, ns, step("after %d s", d))
			case opSetState:
				s, p, load, rt := svc(), pod(), r.Int()%50, fuzzRouting[r.Int()%len(fuzzRouting)]
				_, err := st.SetServiceState(ctx, ns, s, p, load, rt)
				check(t, step("SetServiceState %s %d %d %v", s, p, load, rt), 0, 0, err)
				if m.states[s] == nil {
					m.states[s] = map[int]store.StateValue{}
				}
				m.states[s][p] = store.StateValue{Load: load, Routing: rt}
			case opGetState:
				s := svc()
				got, err := st.GetServiceState(ctx, ns, s)
				var pods []int
				gotStates := map[int]store.StateValue{}
				for _, ps := range got.Pods {
					pods = append(pods, ps.Pod)
					if ps.Updated > got.Now || ps.Updated <= 0 {
						t.Fatalf("%spod %d updated at %d, read at %d", step("GetServiceState %s", s), ps.Pod, ps.Updated, got.Now)
					}
					gotStates[ps.Pod] = store.StateValue{Load: ps.Load, Routing: ps.Routing}
				}
				if !slices.IsSorted(pods) {
					t.Fatalf("%spods not sorted: %v", step("GetServiceState %s", s), pods)
				}
				want := maps.Clone(m.states[s])
				if want == nil {
					want = map[int]store.StateValue{}
				}
				check(t, step("GetServiceState %s", s), gotStates, want, err)
			case opRmState:
				s, p := svc(), pod()
				got, err := st.RemoveServiceState(ctx, ns, s, p)
				_, want := m.states[s][p]
				delete(m.states[s], p)
				check(t, step("RemoveServiceState %s %d", s, p), got, want, err)
			}
		}
		compareAll(ctx, t, st, m, ns, "at the end: ")
	})
}

// removeModel applies RemoveLinkedPod (or WithId, once it matched) with ttl
// to the live link l: gone at once, or temporary for ttl seconds.
func removeModel(m *model, uid, svc string, l modelLink, ttl int) {
	if ttl == store.Persistent {
		delete(m.links, [2]string{uid, svc})
		return
	}
	l.persistent, l.expires = false, m.now+int64(ttl)
	m.links[[2]string{uid, svc}] = l
}

// compareAll checks every link and link directory against the model.
func compareAll(ctx context.Context, t *testing.T, st *store.Redis, m *model, ns, where string) {
	t.Helper()
	if d := differences(ctx, st, m, ns); len(d) > 0 {
		t.Fatalf("%sthe store and the model differ: %v", where, d)
	}
}

// differences lists every link and link directory where the store and the
// model disagree (a store error counts as a difference).
func differences(ctx context.Context, st *store.Redis, m *model, ns string) []string {
	var out []string
	for _, u := range fuzzUIDs {
		for _, s := range fuzzSvcs {
			got, err := st.GetLinkedPod(ctx, ns, u, s)
			if want := m.pod(u, s); err != nil || got != want {
				out = append(out, fmt.Sprintf("GetLinkedPod %s %s = %d, %v; model %d", u, s, got, err, want))
			}
		}
		got, err := st.GetLinkService(ctx, ns, u)
		if want := m.services(u); err != nil || !maps.Equal(got, want) {
			out = append(out, fmt.Sprintf("GetLinkService %s = %v, %v; model %v", u, got, err, want))
		}
	}
	return out
}

// check fails t unless err is nil and got equals want (compared as printed:
// maps print sorted by key).
func check(t *testing.T, what string, got, want any, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%serror %v", what, err)
	}
	if g, w := fmt.Sprint(got), fmt.Sprint(want); g != w {
		t.Fatalf("%sgot %s, the model says %s", what, g, w)
	}
}

// TestModelComparisonCanFail: the comparison sees a link written behind the
// model's back, and one that expired on one side only.
func TestModelComparisonCanFail(t *testing.T) {
	mini, st := embedded(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := newModel()
	if d := differences(ctx, st, m, "fz"); len(d) != 0 {
		t.Fatalf("empty store and model differ: %v", d)
	}
	if _, err := st.SetLinkedPod(ctx, "fz", "u1", "room", 2, store.Persistent); err != nil {
		t.Fatal(err)
	}
	if d := differences(ctx, st, m, "fz"); len(d) != 2 { // the link and the directory
		t.Fatalf("a link unknown to the model: %d differences %v, want 2", len(d), d)
	}
	m.write("u1", "room", 2, store.Persistent)
	if _, err := st.SetLinkedPod(ctx, "fz", "0", "chat", 1, 3); err != nil {
		t.Fatal(err)
	}
	m.write("0", "chat", 1, 3)
	mini.FastForward(3 * time.Second) // the model's clock stays behind
	if d := differences(ctx, st, m, "fz"); len(d) != 1 {
		t.Fatalf("a link expired in the store only: %d differences %v, want 1", len(d), d)
	}
	m.now += 3
	if d := differences(ctx, st, m, "fz"); len(d) != 0 {
		t.Fatalf("after the model caught up: %v", d)
	}
}
