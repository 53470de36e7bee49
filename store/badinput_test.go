package store_test

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

// everyOp calls every operation that takes (ns, uid, svc, pod, ttl) with the
// given arguments and returns each one's error, by operation name.
func everyOp(e *env, ns, uid, svc string, pod, ttl int) map[string]error {
	errs := map[string]error{}
	_, errs["SetLinkedPod"] = e.s.SetLinkedPod(e.ctx, ns, uid, svc, pod, ttl)
	_, errs["TrySetLinkedPod"] = e.s.TrySetLinkedPod(e.ctx, ns, uid, svc, pod, ttl)
	_, errs["SetLinkedPodIfAbsent"] = e.s.SetLinkedPodIfAbsent(e.ctx, ns, uid, svc, pod, ttl)
	_, _, errs["ReplaceLinkedPod"] = e.s.ReplaceLinkedPod(e.ctx, ns, uid, svc, store.NoPod, pod, ttl)
	_, errs["RemoveLinkedPodWithId"] = e.s.RemoveLinkedPodWithId(e.ctx, ns, uid, svc, pod, ttl)
	_, errs["RemoveLinkedPod"] = e.s.RemoveLinkedPod(e.ctx, ns, uid, svc, ttl)
	_, errs["GetLinkedPod"] = e.s.GetLinkedPod(e.ctx, ns, uid, svc)
	_, errs["GetLinkedPodIfPersist"] = e.s.GetLinkedPodIfPersist(e.ctx, ns, uid, svc)
	_, errs["BatchGetLinkedPod"] = e.s.BatchGetLinkedPod(e.ctx, ns, []string{"ok", uid}, svc)
	return errs
}

// controlOps calls every operation on the pod states and requests of svc
// that takes (ns, svc, pod) and returns each one's error, by operation name.
func controlOps(e *env, ns, svc string, pod int) map[string]error {
	errs := map[string]error{}
	_, errs["PublishServiceState"] = e.s.PublishServiceState(e.ctx, ns, svc, pod, 1, store.Ready)
	errs["RequestRoutingState"] = e.s.RequestRoutingState(e.ctx, ns, svc, pod, store.DenyNewCall)
	_, errs["ClearRoutingRequest"] = e.s.ClearRoutingRequest(e.ctx, ns, svc, pod)
	_, errs["RoutingRequests"] = e.s.RoutingRequests(e.ctx, ns, svc)
	return errs
}

// wantInvalid checks that err is an *InvalidArgumentError naming arg.
func wantInvalid(t *testing.T, what string, err error, arg string) {
	t.Helper()
	var ia *store.InvalidArgumentError
	if !errors.As(err, &ia) || !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("%s: err = %v, want *InvalidArgumentError", what, err)
	}
	if ia.Arg != arg {
		t.Fatalf("%s: error names %q, want %q (%v)", what, ia.Arg, arg, err)
	}
}

func TestBadInput(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		e := newEnv(t, b)
		badNames := map[string]string{
			"open brace":  "a{b",
			"close brace": "a}b",
			"colon":       "a:b",
			"space":       "a b",
			"empty":       "",
			"129 chars":   strings.Repeat("n", 129),
		}
		for what, name := range badNames {
			for op, err := range everyOp(e, name, "u1", svc, 1, store.Persistent) {
				wantInvalid(t, op+" namespace "+what, err, "namespace")
			}
			for op, err := range everyOp(e, e.ns, "u1", name, 1, store.Persistent) {
				wantInvalid(t, op+" service "+what, err, "service")
			}
			_, err := e.s.SetServiceState(e.ctx, name, svc, 0, 1, store.Ready)
			wantInvalid(t, "SetServiceState namespace "+what, err, "namespace")
			_, err = e.s.GetServiceState(e.ctx, e.ns, name)
			wantInvalid(t, "GetServiceState service "+what, err, "service")
			_, err = e.s.SetWorkloadState(e.ctx, e.ns, name, 0, 0, 10)
			wantInvalid(t, "SetWorkloadState service "+what, err, "service")
			_, err = e.s.GetWorkloadStateBatch(e.ctx, e.ns, []string{"ok", name})
			wantInvalid(t, "GetWorkloadStateBatch service "+what, err, "services[1]")
			_, err = e.s.GetLinkService(e.ctx, name, "u1")
			wantInvalid(t, "GetLinkService namespace "+what, err, "namespace")
			for op, err := range controlOps(e, name, svc, 1) {
				wantInvalid(t, op+" namespace "+what, err, "namespace")
			}
			for op, err := range controlOps(e, e.ns, name, 1) {
				wantInvalid(t, op+" service "+what, err, "service")
			}
		}
		// 128 characters is the longest accepted name.
		long := strings.Repeat("n", 128)
		if _, err := e.s.SetLinkedPod(e.ctx, e.ns, "u1", long, 1, store.Persistent); err != nil {
			t.Fatalf("128-char service: %v", err)
		}

		for what, uid := range map[string]string{"empty": "", "513 bytes": strings.Repeat("u", 513)} {
			for op, err := range everyOp(e, e.ns, uid, svc, 1, store.Persistent) {
				arg := "uid"
				if op == "BatchGetLinkedPod" {
					arg = "uids[1]"
				}
				wantInvalid(t, op+" uid "+what, err, arg)
			}
		}
		for _, ttl := range []int{0, -2, store.MaxTTL + 1} {
			for op, err := range everyOp(e, e.ns, "u1", svc, 1, ttl) {
				switch op {
				case "GetLinkedPod", "GetLinkedPodIfPersist", "BatchGetLinkedPod":
					continue // take no ttl
				}
				wantInvalid(t, op+" ttl "+strconv.Itoa(ttl), err, "ttl")
			}
		}
		for _, pod := range []int{-1, -7, store.MaxPod + 1} {
			for op, err := range everyOp(e, e.ns, "u1", svc, pod, store.Persistent) {
				switch op {
				case "GetLinkedPod", "GetLinkedPodIfPersist", "BatchGetLinkedPod", "RemoveLinkedPod":
					continue // take no pod
				}
				wantInvalid(t, op+" pod "+strconv.Itoa(pod), err, "pod")
			}
		}
		_, _, err := e.s.ReplaceLinkedPod(e.ctx, e.ns, "u1", svc, -2, 1, store.Persistent)
		wantInvalid(t, "ReplaceLinkedPod expected -2", err, "expected")
		_, err = e.s.SetServiceState(e.ctx, e.ns, svc, 0, -1, store.Ready)
		wantInvalid(t, "SetServiceState load -1", err, "load")
		_, err = e.s.SetServiceState(e.ctx, e.ns, svc, 0, 1, store.RoutingUnknown)
		wantInvalid(t, "SetServiceState routing unknown", err, "routing")
		_, err = e.s.SetWorkloadState(e.ctx, e.ns, svc, 3, 2, 10)
		wantInvalid(t, "SetWorkloadState accepting > alive", err, "accepting")
		_, err = e.s.SetWorkloadState(e.ctx, e.ns, svc, 0, 2, 0)
		wantInvalid(t, "SetWorkloadState ttl 0", err, "ttl")
		for _, pod := range []int{-1, store.MaxPod + 1} {
			for op, err := range controlOps(e, e.ns, svc, pod) {
				if op == "RoutingRequests" {
					continue // takes no pod
				}
				wantInvalid(t, op+" pod "+strconv.Itoa(pod), err, "pod")
			}
		}
		for _, st := range []store.RoutingState{store.Ready, store.RoutingUnknown, store.Shutdown + 1} {
			err = e.s.RequestRoutingState(e.ctx, e.ns, svc, 0, st)
			wantInvalid(t, "RequestRoutingState "+st.String(), err, "state")
		}
		if err := e.s.RequestRoutingState(e.ctx, e.ns, svc, 0, store.Ready); !strings.Contains(err.Error(), "ClearRoutingRequest") {
			t.Fatalf("RequestRoutingState Ready: %v, want the error to point at ClearRoutingRequest", err)
		}
		_, err = e.s.PublishServiceState(e.ctx, e.ns, svc, 0, -1, store.Ready)
		wantInvalid(t, "PublishServiceState load -1", err, "load")
		_, err = e.s.PublishServiceState(e.ctx, e.ns, svc, 0, 1, store.RoutingUnknown)
		wantInvalid(t, "PublishServiceState routing unknown", err, "routing")

		// Nothing was written by any rejected call: only the 128-char service link exists.
		want := []string{store.LinkKey(e.ns, "u1", long), store.DirKey(e.ns, "u1")}
		got := e.keys()
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("keys after rejected calls = %q, want only %q", got, want)
		}
	})
}

// TestUIDsAnyBytes stores uids that look like key syntax or hold NUL bytes and
// reads them back intact, each apart from every other.
func TestUIDsAnyBytes(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		e := newEnv(t, b)
		uids := []string{
			"{", "}", "{}", "a{b}c", "%", "%7B", "%257B", "%%", "{%7D}",
			":lk:", "x:lk:y", "u}room", "}" + svc, "nul\x00byte", "\x00", "\x00\x00",
			"\xff\xfe", "sf:{ns:lk:u}room", strings.Repeat("z", 512), strings.Repeat("{", 512),
		}
		for i, uid := range uids {
			if _, err := e.s.SetLinkedPod(e.ctx, e.ns, uid, svc, i, store.Persistent); err != nil {
				t.Fatalf("uid %q: %v", uid, err)
			}
		}
		// Every uid got its own pair of keys: no two uids share one.
		if n := len(e.keys()); n != 2*len(uids) {
			t.Fatalf("%d keys for %d uids, want %d", n, len(uids), 2*len(uids))
		}
		for i, uid := range uids {
			if p, err := e.s.GetLinkedPod(e.ctx, e.ns, uid, svc); err != nil || p != i {
				t.Fatalf("uid %q: = (%d, %v), want (%d, nil)", uid, p, err, i)
			}
			if ls, err := e.s.GetLinkService(e.ctx, e.ns, uid); err != nil || !maps.Equal(ls, map[string]int{svc: i}) {
				t.Fatalf("uid %q: GetLinkService = (%v, %v)", uid, ls, err)
			}
		}
		got, err := e.s.BatchGetLinkedPod(e.ctx, e.ns, uids, svc)
		if err != nil {
			t.Fatal(err)
		}
		for i, uid := range uids {
			if g := got[i]; len(g) != 1 || g[0] != uid {
				t.Fatalf("batch group %d = %q, want [%q]", i, g, uid)
			}
		}
	})
}

// TestCorruptValues plants values no writer of the format produces and checks
// that each is an error for that key only: never a panic, never a wrong pod,
// nothing written by a conditional operation.
func TestCorruptValues(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		for _, bad := range []string{"abc", "", "-1", "3.0", " 3", "+3", "0x3", "99999999999", "3\x00"} {
			t.Run(strings.ToValidUTF8(bad, "?"), func(t *testing.T) {
				e := newEnv(t, b)
				k1 := store.LinkKey(e.ns, "bad", svc)
				e.set(k1, bad)
				wantCorrupt := func(op string, err error) {
					t.Helper()
					var ce *store.CorruptError
					if !errors.As(err, &ce) || ce.Key != k1 || ce.Value != bad {
						t.Fatalf("%s: err = %v, want *CorruptError for %q = %q", op, err, k1, bad)
					}
				}
				p, err := e.s.GetLinkedPod(e.ctx, e.ns, "bad", svc)
				wantCorrupt("GetLinkedPod", err)
				if p != store.NoPod {
					t.Fatalf("GetLinkedPod pod = %d with error, want -1", p)
				}
				_, err = e.s.SetLinkedPodIfAbsent(e.ctx, e.ns, "bad", svc, 1, 30)
				wantCorrupt("SetLinkedPodIfAbsent temporary", err)
				_, err = e.s.SetLinkedPodIfAbsent(e.ctx, e.ns, "bad", svc, 1, store.Persistent)
				wantCorrupt("SetLinkedPodIfAbsent persistent", err)
				_, err = e.s.TrySetLinkedPod(e.ctx, e.ns, "bad", svc, 1, store.Persistent)
				wantCorrupt("TrySetLinkedPod", err)
				_, _, err = e.s.ReplaceLinkedPod(e.ctx, e.ns, "bad", svc, store.NoPod, 1, store.Persistent)
				wantCorrupt("ReplaceLinkedPod", err)
				_, err = e.s.RemoveLinkedPodWithId(e.ctx, e.ns, "bad", svc, 1, store.Persistent)
				wantCorrupt("RemoveLinkedPodWithId", err)
				_, err = e.s.GetLinkedPodIfPersist(e.ctx, e.ns, "bad", svc)
				wantCorrupt("GetLinkedPodIfPersist", err)
				if v, _ := e.get("bad", svc); v != bad {
					t.Fatalf("K1 = %q after refused writes, want %q untouched", v, bad)
				}
				if d := e.dir("bad"); len(d) != 0 {
					t.Fatalf("K2 = %v after refused writes, want empty", d)
				}

				// In a batch, only that uid is affected.
				_, err = e.s.SetLinkedPod(e.ctx, e.ns, "good", svc, 2, 30)
				e.must(err)
				groups, err := e.s.BatchGetLinkedPod(e.ctx, e.ns, []string{"good", "bad"}, svc)
				wantCorrupt("BatchGetLinkedPod", err)
				if want := map[int][]string{2: {"good"}}; !maps.EqualFunc(groups, want, slices.Equal) {
					t.Fatalf("batch = %v, want %v beside the error", groups, want)
				}
				// The error keeps naming its key after later batches build
				// theirs (batches reuse the memory of keys nobody holds).
				for range 3 {
					_, _ = e.s.BatchGetLinkedPod(e.ctx, e.ns, []string{"gold", "bat"}, svc)
				}
				wantCorrupt("BatchGetLinkedPod, after later batches", err)

				// The forced write repairs the key.
				prev, err := e.s.SetLinkedPod(e.ctx, e.ns, "bad", svc, 4, store.Persistent)
				if err != nil || prev != store.NoPod {
					t.Fatalf("SetLinkedPod over corrupt = (%d, %v), want (-1, nil)", prev, err)
				}
				if p, err := e.s.GetLinkedPod(e.ctx, e.ns, "bad", svc); err != nil || p != 4 {
					t.Fatalf("after repair = (%d, %v), want (4, nil)", p, err)
				}
			})
		}

		t.Run("wrong_type_K1", func(t *testing.T) {
			e := newEnv(t, b)
			k1 := store.LinkKey(e.ns, "h", svc)
			e.hset(k1, "x", "1")
			_, err := e.s.GetLinkedPod(e.ctx, e.ns, "h", svc)
			var ce *store.CorruptError
			if !errors.As(err, &ce) || ce.Key != k1 {
				t.Fatalf("GetLinkedPod on a hash: %v, want *CorruptError for K1", err)
			}
			_, err = e.s.TrySetLinkedPod(e.ctx, e.ns, "h", svc, 1, store.Persistent)
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("TrySetLinkedPod on a hash: %v, want ErrCorrupt", err)
			}
			if d := e.dir("h"); len(d) != 0 {
				t.Fatalf("K2 = %v, want nothing written", d)
			}
		})

		t.Run("wrong_type_K2_writes_nothing", func(t *testing.T) {
			e := newEnv(t, b)
			e.set(store.DirKey(e.ns, "d"), "not a hash")
			_, err := e.s.SetLinkedPod(e.ctx, e.ns, "d", svc, 1, store.Persistent)
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("SetLinkedPod with a string K2: %v, want ErrCorrupt", err)
			}
			if _, ok := e.get("d", svc); ok {
				t.Fatal("K1 written although the call failed")
			}
		})

		t.Run("K3_fields", func(t *testing.T) {
			e := newEnv(t, b)
			k3 := store.StateKey(e.ns, svc)
			_, err := e.s.SetServiceState(e.ctx, e.ns, svc, 1, 5, store.Ready)
			e.must(err)
			planted := map[string]string{"2": "garbage", "3": "1-2-9", "x": "1-1700000000000-1", "4": "", "-5": "1-2-1"}
			for f, v := range planted {
				e.hset(k3, f, v)
			}
			st, err := e.s.GetServiceState(e.ctx, e.ns, svc)
			if err != nil {
				t.Fatalf("GetServiceState failed the whole service: %v", err)
			}
			if len(st.Pods) != 1 || st.Pods[0].Pod != 1 || st.Pods[0].Load != 5 {
				t.Fatalf("pods = %+v, want only pod 1", st.Pods)
			}
			if len(st.Skipped) != len(planted) {
				t.Fatalf("skipped %d fields (%v), want %d", len(st.Skipped), st.Skipped, len(planted))
			}
			for _, s := range st.Skipped {
				if s.Key != k3 || planted[s.Field] != s.Value {
					t.Fatalf("skipped %+v does not name a planted field", s)
				}
			}
		})

		t.Run("K4_unparsable", func(t *testing.T) {
			e := newEnv(t, b)
			e.set(store.WorkloadKey(e.ns, "w"), "3-2-100") // accepting > alive
			w, err := e.s.GetWorkloadState(e.ctx, e.ns, "w")
			if !errors.Is(err, store.ErrCorrupt) || w.Status != store.WorkloadUnknown {
				t.Fatalf("= (%+v, %v), want Unknown and ErrCorrupt", w, err)
			}
			m, err := e.s.GetWorkloadStateBatch(e.ctx, e.ns, []string{"w", "missing"})
			if !errors.Is(err, store.ErrCorrupt) || len(m) != 2 {
				t.Fatalf("batch = (%v, %v), want both services and ErrCorrupt", m, err)
			}
		})

		t.Run("K2_field_not_a_pod", func(t *testing.T) {
			e := newEnv(t, b)
			_, err := e.s.SetLinkedPod(e.ctx, e.ns, "u", "good", 3, store.Persistent)
			e.must(err)
			e.hset(store.DirKey(e.ns, "u"), "bad", "x")
			ls, err := e.s.GetLinkService(e.ctx, e.ns, "u")
			var ce *store.CorruptError
			if !errors.As(err, &ce) || ce.Field != "bad" || !maps.Equal(ls, map[string]int{"good": 3}) {
				t.Fatalf("= (%v, %v), want {good:3} and a *CorruptError for field bad", ls, err)
			}
		})
	})
}

// TestIfAbsentRace races 64 goroutines linking one uid to different pods: exactly
// one pod wins and every caller is told that pod.
func TestIfAbsentRace(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		for _, ttl := range []int{30, store.Persistent} {
			e := newEnv(t, b)
			const n = 64
			got := make([]int, n)
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					got[i], errs[i] = e.s.SetLinkedPodIfAbsent(e.ctx, e.ns, "racer", svc, i, ttl)
				})
			}
			close(start)
			wg.Wait()
			winner, err := e.s.GetLinkedPod(e.ctx, e.ns, "racer", svc)
			e.must(err)
			if winner < 0 || winner >= n {
				t.Fatalf("ttl %d: linked pod %d is none of the racers", ttl, winner)
			}
			for i := range n {
				if errs[i] != nil || got[i] != winner {
					t.Fatalf("ttl %d: caller %d got (%d, %v), want (%d, nil)", ttl, i, got[i], errs[i], winner)
				}
			}
		}
	})
}
