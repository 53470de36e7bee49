package store_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

const svc = "room"

// contract is the SPEC §4 table, one row per behaviour. TestContract runs every
// row unchanged on the embedded Redis, the real standalone server and the real
// cluster.
var contract = []redistest.Case[*env]{
	// --- SetLinkedPod ---
	{Name: "SetLinkedPod/persistent_no_ttl_and_listed", Run: func(e *env) {
		prev := e.link("u1", svc, 3, store.Persistent)
		if prev != store.NoPod {
			e.t.Fatalf("previous = %d, want -1", prev)
		}
		e.wantOnlyPersistentLink("u1", "3")
	}},
	{Name: "SetLinkedPod/temporary_has_ttl_not_listed", Run: func(e *env) {
		e.link("u1", svc, 2, store.Persistent)
		prev := e.link("u1", svc, 5, 30)
		if prev != 2 {
			e.t.Fatalf("previous = %d, want 2", prev)
		}
		e.wantOnlyTemporaryLink("u1", 30)
	}},
	{Name: "SetLinkedPod/temporary_to_persistent_clears_ttl", Run: func(e *env) {
		e.link("u1", svc, 1, 30)
		prev := e.link("u1", svc, 1, store.Persistent)
		if prev != 1 {
			e.t.Fatalf("previous = %d, want 1", prev)
		}
		e.wantPersistent(store.LinkKey(e.ns, "u1", svc))
		if d := e.dir("u1"); d[svc] != "1" {
			e.t.Fatalf("K2 = %v, want room:1", d)
		}
	}},
	{Name: "SetLinkedPod/pod0_is_a_pod", Run: func(e *env) {
		e.link("u1", svc, 0, store.Persistent)
		prev := e.link("u1", svc, 7, store.Persistent)
		if prev != 0 {
			e.t.Fatalf("previous = %d, want 0 (pod 0, not 'none')", prev)
		}
	}},

	// --- TrySetLinkedPod ---
	{Name: "TrySetLinkedPod/claims_free_uid", Run: func(e *env) {
		e.wantClaim("u1", svc, 4, store.Persistent, store.Claim{Claimed: true, Owner: 4, Previous: store.NoPod})
		e.wantPersistent(store.LinkKey(e.ns, "u1", svc))
		if e.dir("u1")[svc] != "4" {
			e.t.Fatal("K2 does not list the claimed link")
		}
	}},
	{Name: "TrySetLinkedPod/refused_by_other_persistent_owner_changes_nothing", Run: func(e *env) {
		e.link("u1", svc, 2, store.Persistent)
		e.wantClaim("u1", svc, 5, store.Persistent, store.Claim{Claimed: false, Owner: 2, Previous: 2})
		e.wantOnlyPersistentLink("u1", "2") // unchanged
	}},
	{Name: "TrySetLinkedPod/refused_temporary_claim_too", Run: func(e *env) {
		e.link("u1", svc, 2, store.Persistent)
		c := e.claim("u1", svc, 5, 60)
		if c.Claimed || c.Owner != 2 {
			e.t.Fatalf("claim = %+v, want refused by owner 2", c)
		}
		e.wantPersistent(store.LinkKey(e.ns, "u1", svc))
	}},
	{Name: "TrySetLinkedPod/takes_over_temporary_link", Run: func(e *env) {
		e.link("u1", svc, 2, 60)
		e.wantClaim("u1", svc, 5, store.Persistent, store.Claim{Claimed: true, Owner: 5, Previous: 2})
		e.wantPersistent(store.LinkKey(e.ns, "u1", svc))
	}},
	{Name: "TrySetLinkedPod/owner_reclaims_own_link", Run: func(e *env) {
		e.link("u1", svc, 3, store.Persistent)
		e.wantClaim("u1", svc, 3, store.Persistent, store.Claim{Claimed: true, Owner: 3, Previous: 3})
	}},
	{Name: "TrySetLinkedPod/pod0_owner_refuses_pod1", Run: func(e *env) {
		e.link("u1", svc, 0, store.Persistent)
		e.wantClaim("u1", svc, 1, store.Persistent, store.Claim{Claimed: false, Owner: 0, Previous: 0})
	}},

	// --- SetLinkedPodIfAbsent ---
	{Name: "SetLinkedPodIfAbsent/writes_when_absent", Run: func(e *env) {
		got := e.linkIfAbsent("u1", svc, 6, 45)
		if got != 6 {
			e.t.Fatalf("actual = %d, want 6", got)
		}
		e.wantOnlyTemporaryLink("u1", 45)
	}},
	{Name: "SetLinkedPodIfAbsent/keeps_existing_and_its_ttl", Run: func(e *env) {
		e.link("u1", svc, 2, 20)
		got := e.linkIfAbsent("u1", svc, 6, 1000)
		if got != 2 {
			e.t.Fatalf("actual = %d, want the earlier 2", got)
		}
		e.wantTTL(store.LinkKey(e.ns, "u1", svc), 20) // not refreshed to 1000
	}},
	{Name: "SetLinkedPodIfAbsent/persistent_writes_directory", Run: func(e *env) {
		got := e.linkIfAbsent("u1", svc, 0, store.Persistent)
		if got != 0 {
			e.t.Fatalf("actual = %d, want 0", got)
		}
		e.wantPersistent(store.LinkKey(e.ns, "u1", svc))
		if e.dir("u1")[svc] != "0" {
			e.t.Fatal("K2 does not list the persistent link")
		}
		got = e.linkIfAbsent("u1", svc, 9, store.Persistent)
		if got != 0 {
			e.t.Fatalf("second call actual = %d, want 0", got)
		}
	}},
	{Name: "SetLinkedPodIfAbsent/existing_pod0_returned", Run: func(e *env) {
		e.link("u1", svc, 0, 60)
		got := e.linkIfAbsent("u1", svc, 4, 60)
		if got != 0 {
			e.t.Fatalf("actual = %d, want 0", got)
		}
	}},

	{Name: "SetLinkedPodIfAbsent/temporary_drops_a_leftover_directory_entry", Run: func(e *env) {
		// A persistent link whose K1 was evicted (maxmemory) leaves K2[svc]
		// behind; the temporary link written in its place is not in K2.
		e.link("u1", svc, 3, store.Persistent)
		e.link("u1", "other", 5, store.Persistent)
		e.must(e.raw(e.b.Client.B().Del().Key(store.LinkKey(e.ns, "u1", svc)).Build()).Error())
		got := e.linkIfAbsent("u1", svc, 6, 45)
		if got != 6 {
			e.t.Fatalf("actual = %d, want 6", got)
		}
		if d := e.dir("u1"); len(d) != 1 || d["other"] != "5" {
			e.t.Fatalf("K2 = %v, want only the other service's entry", d)
		}
	}},
	{Name: "SetLinkedPodIfAbsent/temporary_over_a_directory_of_the_wrong_type_writes_nothing", Run: func(e *env) {
		e.set(store.DirKey(e.ns, "u1"), "not a hash")
		_, err := e.s.SetLinkedPodIfAbsent(e.ctx, e.ns, "u1", svc, 6, 45)
		if err == nil {
			e.t.Fatal("no error over a K2 of the wrong type")
		}
		if _, ok := e.get("u1", svc); ok {
			e.t.Fatal("K1 written although the call failed")
		}
	}},
	{Name: "SetLinkedPodIfAbsent/after_script_flush", Run: func(e *env) {
		e.b.FlushScripts(e.t)
		got := e.linkIfAbsent("u1", svc, 2, 45)
		if got != 2 {
			e.t.Fatalf("actual = %d, want 2", got)
		}
	}},

	// --- ReplaceLinkedPod ---
	{Name: "ReplaceLinkedPod/replaces_when_expected", Run: func(e *env) {
		e.link("u1", svc, 2, 60)
		ok, actual, err := e.s.ReplaceLinkedPod(e.ctx, e.ns, "u1", svc, 2, 7, 90)
		e.must(err)
		if !ok || actual != 7 {
			e.t.Fatalf("= (%v, %d), want (true, 7)", ok, actual)
		}
		e.wantTTL(store.LinkKey(e.ns, "u1", svc), 90)
	}},
	{Name: "ReplaceLinkedPod/refuses_when_not_expected", Run: func(e *env) {
		e.link("u1", svc, 3, 60)
		ok, actual, err := e.s.ReplaceLinkedPod(e.ctx, e.ns, "u1", svc, 2, 7, 90)
		e.must(err)
		if ok || actual != 3 {
			e.t.Fatalf("= (%v, %d), want (false, 3)", ok, actual)
		}
		if v, _ := e.get("u1", svc); v != "3" {
			e.t.Fatalf("K1 = %q, want 3 unchanged", v)
		}
		e.wantTTL(store.LinkKey(e.ns, "u1", svc), 60)
	}},
	{Name: "ReplaceLinkedPod/absent_link_and_expected_pod", Run: func(e *env) {
		ok, actual, err := e.s.ReplaceLinkedPod(e.ctx, e.ns, "u1", svc, 2, 7, 90)
		e.must(err)
		if ok || actual != store.NoPod {
			e.t.Fatalf("= (%v, %d), want (false, -1)", ok, actual)
		}
		if len(e.keys()) != 0 {
			e.t.Fatalf("keys written: %v", e.keys())
		}
	}},
	{Name: "ReplaceLinkedPod/expected_none_writes_only_when_absent", Run: func(e *env) {
		ok, actual, err := e.s.ReplaceLinkedPod(e.ctx, e.ns, "u1", svc, store.NoPod, 0, store.Persistent)
		e.must(err)
		if !ok || actual != 0 {
			e.t.Fatalf("= (%v, %d), want (true, 0)", ok, actual)
		}
		e.wantPersistent(store.LinkKey(e.ns, "u1", svc))
		if e.dir("u1")[svc] != "0" {
			e.t.Fatal("K2 does not list the persistent link")
		}
		ok, actual, err = e.s.ReplaceLinkedPod(e.ctx, e.ns, "u1", svc, store.NoPod, 5, store.Persistent)
		e.must(err)
		if ok || actual != 0 {
			e.t.Fatalf("second = (%v, %d), want (false, 0)", ok, actual)
		}
	}},
	{Name: "ReplaceLinkedPod/persistent_to_temporary_unlists", Run: func(e *env) {
		e.link("u1", svc, 1, store.Persistent)
		ok, _, err := e.s.ReplaceLinkedPod(e.ctx, e.ns, "u1", svc, 1, 2, 30)
		e.must(err)
		if !ok {
			e.t.Fatal("not replaced")
		}
		if d := e.dir("u1"); len(d) != 0 {
			e.t.Fatalf("K2 = %v, want empty", d)
		}
	}},

	// --- GetLinkedPod / GetLinkedPodIfPersist ---
	{Name: "GetLinkedPod/missing_is_minus1_not_error", Run: func(e *env) {
		p, err := e.s.GetLinkedPod(e.ctx, e.ns, "nobody", svc)
		if err != nil || p != store.NoPod {
			e.t.Fatalf("= (%d, %v), want (-1, nil)", p, err)
		}
	}},
	{Name: "GetLinkedPod/reads_pod0_and_temporary", Run: func(e *env) {
		e.link("u1", svc, 0, 60)
		p, err := e.s.GetLinkedPod(e.ctx, e.ns, "u1", svc)
		if err != nil || p != 0 {
			e.t.Fatalf("= (%d, %v), want (0, nil)", p, err)
		}
	}},
	{Name: "GetLinkedPod/reads_java_written_link", Run: func(e *env) {
		e.set("sf:{"+e.ns+":lk:10086}"+svc, "12") // a plain uid gives the Java framework's key
		p, err := e.s.GetLinkedPod(e.ctx, e.ns, "10086", svc)
		if err != nil || p != 12 {
			e.t.Fatalf("= (%d, %v), want (12, nil)", p, err)
		}
	}},
	{Name: "GetLinkedPodIfPersist/only_persistent", Run: func(e *env) {
		e.link("tmp", svc, 3, 60)
		e.link("per", svc, 0, store.Persistent)
		for _, c := range []struct {
			uid  string
			want int
		}{{"tmp", store.NoPod}, {"per", 0}, {"none", store.NoPod}} {
			p, err := e.s.GetLinkedPodIfPersist(e.ctx, e.ns, c.uid, svc)
			if err != nil || p != c.want {
				e.t.Fatalf("%s: = (%d, %v), want (%d, nil)", c.uid, p, err, c.want)
			}
		}
	}},

	// --- BatchGetLinkedPod ---
	{Name: "BatchGetLinkedPod/groups_in_input_order_and_omits_missing", Run: func(e *env) {
		links := map[string]int{"a": 0, "b": 1, "c": 0, "d": 2, "e": 1, "f": 0}
		for uid, pod := range links {
			e.link(uid, svc, pod, 60)
		}
		uids := []string{"f", "x", "a", "e", "c", "b", "y", "d"}
		got, err := e.s.BatchGetLinkedPod(e.ctx, e.ns, uids, svc)
		e.must(err)
		want := map[int][]string{0: {"f", "a", "c"}, 1: {"e", "b"}, 2: {"d"}}
		if !maps.EqualFunc(got, want, slices.Equal) {
			e.t.Fatalf("= %v, want %v", got, want)
		}
	}},
	{Name: "BatchGetLinkedPod/empty_input_empty_map", Run: func(e *env) {
		got, err := e.s.BatchGetLinkedPod(e.ctx, e.ns, nil, svc)
		if err != nil || got == nil || len(got) != 0 {
			e.t.Fatalf("= (%v, %v), want (empty map, nil)", got, err)
		}
	}},
	{Name: "BatchGetLinkedPod/many_uids_across_chunks_and_slots", Run: func(e *env) {
		const n = 2500
		uids := make([]string, n)
		want := map[int][]string{}
		for i := range uids {
			uids[i] = "user" + strconv.Itoa(i)
			if i%5 == 4 {
				continue // unlinked
			}
			pod := i % 7
			e.link(uids[i], svc, pod, 120)
			want[pod] = append(want[pod], uids[i])
		}
		got, err := e.s.BatchGetLinkedPod(e.ctx, e.ns, uids, svc)
		e.must(err)
		if !maps.EqualFunc(got, want, slices.Equal) {
			e.t.Fatalf("groups differ: got %d groups, want %d", len(got), len(want))
		}
	}},

	// --- RemoveLinkedPod ---
	{Name: "RemoveLinkedPod/delete_now", Run: func(e *env) {
		e.link("u1", svc, 3, store.Persistent)
		existed, err := e.s.RemoveLinkedPod(e.ctx, e.ns, "u1", svc, store.Persistent)
		e.must(err)
		if !existed {
			e.t.Fatal("existed = false")
		}
		if len(e.keys()) != 0 {
			e.t.Fatalf("keys left: %v", e.keys())
		}
		existed, err = e.s.RemoveLinkedPod(e.ctx, e.ns, "u1", svc, store.Persistent)
		e.must(err)
		if existed {
			e.t.Fatal("second remove: existed = true")
		}
	}},
	{Name: "RemoveLinkedPod/grace_period_keeps_link_readable_as_temporary", Run: func(e *env) {
		// The Java scripts put the TTL on the whole directory hash, so a grace
		// period for one service ended every other persistent link of the uid.
		e.link("u1", svc, 3, store.Persistent)
		e.link("u1", "chat", 0, store.Persistent)
		existed, err := e.s.RemoveLinkedPod(e.ctx, e.ns, "u1", svc, 30)
		e.must(err)
		if !existed {
			e.t.Fatal("existed = false")
		}
		if p, err := e.s.GetLinkedPod(e.ctx, e.ns, "u1", svc); err != nil || p != 3 {
			e.t.Fatalf("during grace GetLinkedPod = (%d, %v), want (3, nil)", p, err)
		}
		if p, err := e.s.GetLinkedPodIfPersist(e.ctx, e.ns, "u1", svc); err != nil || p != store.NoPod {
			e.t.Fatalf("during grace GetLinkedPodIfPersist = (%d, %v), want (-1, nil)", p, err)
		}
		e.wantTTL(store.LinkKey(e.ns, "u1", svc), 30)
		if d := e.dir("u1"); !maps.Equal(d, map[string]string{"chat": "0"}) {
			e.t.Fatalf("K2 = %v, want only {chat:0}", d)
		}
		e.wantPersistent(store.DirKey(e.ns, "u1"))
		e.wantPersistent(store.LinkKey(e.ns, "u1", "chat"))
		if ls, err := e.s.GetLinkService(e.ctx, e.ns, "u1"); err != nil || !maps.Equal(ls, map[string]int{"chat": 0}) {
			e.t.Fatalf("GetLinkService = (%v, %v), want {chat:0}", ls, err)
		}
	}},
	{Name: "RemoveLinkedPod/grace_period_ends", Run: func(e *env) {
		e.link("u1", svc, 3, store.Persistent)
		_, err := e.s.RemoveLinkedPod(e.ctx, e.ns, "u1", svc, 1)
		e.must(err)
		redistest.Poll(e.t, 5*time.Second, "the 1 s grace period ends", func() bool {
			p, err := e.s.GetLinkedPod(e.ctx, e.ns, "u1", svc)
			return err == nil && p == store.NoPod
		})
	}},
	{Name: "RemoveLinkedPod/grace_on_missing_link_creates_nothing", Run: func(e *env) {
		existed, err := e.s.RemoveLinkedPod(e.ctx, e.ns, "u1", svc, 30)
		e.must(err)
		if existed {
			e.t.Fatal("existed = true")
		}
		if len(e.keys()) != 0 {
			e.t.Fatalf("keys written: %v", e.keys())
		}
	}},

	// --- RemoveLinkedPodWithId ---
	{Name: "RemoveLinkedPodWithId/removes_when_pod_matches", Run: func(e *env) {
		e.link("u1", svc, 0, store.Persistent)
		removed, err := e.s.RemoveLinkedPodWithId(e.ctx, e.ns, "u1", svc, 0, store.Persistent)
		e.must(err)
		if !removed {
			e.t.Fatal("removed = false")
		}
		if len(e.keys()) != 0 {
			e.t.Fatalf("keys left: %v", e.keys())
		}
	}},
	{Name: "RemoveLinkedPodWithId/leaves_other_pods_link", Run: func(e *env) {
		e.link("u1", svc, 4, store.Persistent)
		removed, err := e.s.RemoveLinkedPodWithId(e.ctx, e.ns, "u1", svc, 3, 30)
		e.must(err)
		if removed {
			e.t.Fatal("removed = true for another pod's link")
		}
		e.wantPersistent(store.LinkKey(e.ns, "u1", svc))
		if e.dir("u1")[svc] != "4" {
			e.t.Fatal("K2 changed")
		}
	}},
	{Name: "RemoveLinkedPodWithId/grace_period", Run: func(e *env) {
		e.link("u1", svc, 4, store.Persistent)
		removed, err := e.s.RemoveLinkedPodWithId(e.ctx, e.ns, "u1", svc, 4, 25)
		e.must(err)
		if !removed {
			e.t.Fatal("removed = false")
		}
		if p, _ := e.s.GetLinkedPod(e.ctx, e.ns, "u1", svc); p != 4 {
			e.t.Fatalf("during grace GetLinkedPod = %d, want 4", p)
		}
		e.wantOnlyTemporaryLink("u1", 25)
	}},
	{Name: "RemoveLinkedPodWithId/missing_link", Run: func(e *env) {
		removed, err := e.s.RemoveLinkedPodWithId(e.ctx, e.ns, "u1", svc, 4, store.Persistent)
		e.must(err)
		if removed {
			e.t.Fatal("removed = true")
		}
	}},

	// --- GetLinkService ---
	{Name: "GetLinkService/persistent_links_only", Run: func(e *env) {
		e.link("u1", "a", 0, store.Persistent)
		e.link("u1", "b", 5, store.Persistent)
		e.link("u1", "c", 2, 60)
		got, err := e.s.GetLinkService(e.ctx, e.ns, "u1")
		e.must(err)
		if want := map[string]int{"a": 0, "b": 5}; !maps.Equal(got, want) {
			e.t.Fatalf("= %v, want %v", got, want)
		}
	}},
	{Name: "GetLinkService/none_is_empty_map", Run: func(e *env) {
		got, err := e.s.GetLinkService(e.ctx, e.ns, "nobody")
		if err != nil || got == nil || len(got) != 0 {
			e.t.Fatalf("= (%v, %v), want (empty map, nil)", got, err)
		}
	}},
	// K2 is an index of the persistent links and K1 the truth (SPEC §6,
	// evictions): a K2 entry is reported only when its K1 exists, has no
	// expiry and names the same pod; the others are left out, and the read
	// deletes nothing.
	{Name: "GetLinkService/drops_entry_whose_K1_is_gone", Run: func(e *env) {
		e.linkAll("u1", map[string]int{"a": 1, "b": 0, "c": 7})
		e.must(e.raw(e.b.Client.B().Del().Key(store.LinkKey(e.ns, "u1", "a")).Build()).Error())
		e.wantLinkService("u1", map[string]int{"b": 0, "c": 7})
	}},
	{Name: "GetLinkService/drops_entry_whose_K1_is_temporary", Run: func(e *env) {
		e.linkAll("u1", map[string]int{"a": 1, "b": 0})
		e.must(e.raw(e.b.Client.B().Expire().Key(store.LinkKey(e.ns, "u1", "a")).Seconds(60).Build()).Error())
		e.wantLinkService("u1", map[string]int{"b": 0})
	}},
	{Name: "GetLinkService/drops_entry_whose_K1_names_another_pod", Run: func(e *env) {
		e.linkAll("u1", map[string]int{"a": 1, "b": 0})
		e.set(store.LinkKey(e.ns, "u1", "a"), "2")
		e.wantLinkService("u1", map[string]int{"b": 0})
	}},
	{Name: "GetLinkService/drops_entry_whose_K1_is_of_the_wrong_type", Run: func(e *env) {
		e.linkAll("u1", map[string]int{"a": 1, "b": 0})
		k1 := store.LinkKey(e.ns, "u1", "a")
		e.must(e.raw(e.b.Client.B().Del().Key(k1).Build()).Error())
		e.hset(k1, "x", "1")
		e.wantLinkService("u1", map[string]int{"b": 0})
	}},
	{Name: "GetLinkService/keeps_every_confirmed_entry", Run: func(e *env) {
		links := map[string]int{"a": 0, "b": 1, "c": store.MaxPod, "d.e_f-9": 12}
		e.linkAll("u1", links)
		e.wantLinkService("u1", links)
	}},
	{Name: "GetLinkService/reads_java_written_links", Run: func(e *env) {
		// A plain uid gives the Java framework's keys; the pod compares as a
		// number, as every reader parses it.
		k2 := "sf:{" + e.ns + ":lk:10086}"
		e.hset(k2, "a", "12")
		e.set(k2+"a", "12")
		e.hset(k2, "b", "3")
		e.set(k2+"b", "03")
		e.wantLinkService("10086", map[string]int{"a": 12, "b": 3})
	}},
	{Name: "GetLinkedPodIfPersist/K1_gone_is_minus1_although_listed", Run: func(e *env) {
		e.linkAll("u1", map[string]int{svc: 4})
		e.must(e.raw(e.b.Client.B().Del().Key(store.LinkKey(e.ns, "u1", svc)).Build()).Error())
		if d := e.dir("u1"); d[svc] != "4" {
			e.t.Fatalf("K2 = %v, want room:4 left behind", d)
		}
		if p, err := e.s.GetLinkedPodIfPersist(e.ctx, e.ns, "u1", svc); err != nil || p != store.NoPod {
			e.t.Fatalf("= (%d, %v), want (-1, nil): K1 is the truth", p, err)
		}
	}},

	// --- Service state ---
	{Name: "ServiceState/server_clock_and_sorted_pods", Run: func(e *env) {
		before := e.serverMillis()
		for _, p := range []struct {
			pod, load int
			r         store.RoutingState
		}{{2, 7, store.Shutdown}, {0, 3, store.Ready}, {1, 0, store.DenyNewCall}} {
			_, err := e.s.SetServiceState(e.ctx, e.ns, svc, p.pod, p.load, p.r)
			e.must(err)
		}
		st, err := e.s.GetServiceState(e.ctx, e.ns, svc)
		e.must(err)
		after := e.serverMillis()
		if len(st.Pods) != 3 || len(st.Skipped) != 0 {
			e.t.Fatalf("pods %v skipped %v, want 3 pods", st.Pods, st.Skipped)
		}
		want := []struct {
			pod, load int
			r         store.RoutingState
		}{{0, 3, store.Ready}, {1, 0, store.DenyNewCall}, {2, 7, store.Shutdown}}
		for i, p := range st.Pods {
			if p.Pod != want[i].pod || p.Load != want[i].load || p.Routing != want[i].r {
				e.t.Fatalf("pod[%d] = %+v, want %+v", i, p, want[i])
			}
			// The stamp is the server's clock; allow 1 s for a cluster's other nodes.
			if p.Updated < before-1000 || p.Updated > after+1000 {
				e.t.Fatalf("pod %d updated %d, want within server time [%d, %d]", p.Pod, p.Updated, before, after)
			}
			if st.Now < p.Updated {
				e.t.Fatalf("now %d before update %d: not read on the stamping node's clock", st.Now, p.Updated)
			}
		}
	}},
	{Name: "ServiceState/wire_format", Run: func(e *env) {
		ms, err := e.s.SetServiceState(e.ctx, e.ns, svc, 0, 42, store.DenyNewCall)
		e.must(err)
		v, err := e.raw(e.b.Client.B().Hget().Key(store.StateKey(e.ns, svc)).Field("0").Build()).ToString()
		e.must(err)
		if want := fmt.Sprintf("42-%d-2", ms); v != want {
			e.t.Fatalf("K3[0] = %q, want %q", v, want)
		}
	}},
	{Name: "ServiceState/legacy_two_part_is_ready", Run: func(e *env) {
		e.hset(store.StateKey(e.ns, svc), "4", "17-1700000000000")
		e.hset(store.StateKey(e.ns, svc), "5", "-3-1700000000001-0")
		st, err := e.s.GetServiceState(e.ctx, e.ns, svc)
		e.must(err)
		want := []store.PodState{
			{Pod: 4, StateValue: store.StateValue{Load: 17, Updated: 1700000000000, Routing: store.Ready}},
			{Pod: 5, StateValue: store.StateValue{Load: 0, Updated: 1700000000001, Routing: store.Shutdown}},
		}
		if !slices.Equal(st.Pods, want) {
			e.t.Fatalf("pods = %+v, want %+v", st.Pods, want)
		}
	}},
	{Name: "ServiceState/missing_service_is_empty", Run: func(e *env) {
		st, err := e.s.GetServiceState(e.ctx, e.ns, "nothing")
		e.must(err)
		if len(st.Pods) != 0 || st.Now <= 0 {
			e.t.Fatalf("= %+v, want no pods and the server time", st)
		}
	}},
	{Name: "ServiceState/remove", Run: func(e *env) {
		_, err := e.s.SetServiceState(e.ctx, e.ns, svc, 3, 1, store.Ready)
		e.must(err)
		ok, err := e.s.RemoveServiceState(e.ctx, e.ns, svc, 3)
		e.must(err)
		if !ok {
			e.t.Fatal("removed = false")
		}
		st, err := e.s.GetServiceState(e.ctx, e.ns, svc)
		e.must(err)
		if len(st.Pods) != 0 {
			e.t.Fatalf("pods = %v, want none", st.Pods)
		}
	}},

	// --- Operator control (K5, SPEC §7) ---
	{Name: "Control/request_list_clear", Run: func(e *env) {
		e.must(e.s.RequestRoutingState(e.ctx, e.ns, svc, 2, store.DenyNewCall))
		e.must(e.s.RequestRoutingState(e.ctx, e.ns, svc, 0, store.Shutdown))
		e.must(e.s.RequestRoutingState(e.ctx, e.ns, svc, 7, store.Shutdown))
		e.must(e.s.RequestRoutingState(e.ctx, e.ns, svc, 7, store.DenyNewCall)) // the latest request stands
		if got, want := e.hgetall(store.ControlKey(e.ns, svc)), map[string]string{"0": "0", "2": "2", "7": "2"}; !maps.Equal(got, want) {
			e.t.Fatalf("K5 = %v, want %v", got, want)
		}
		e.wantRequests(map[int]store.RoutingState{0: store.Shutdown, 2: store.DenyNewCall, 7: store.DenyNewCall})
		for _, c := range []struct {
			pod     int
			existed bool
		}{{2, true}, {2, false}, {5, false}} {
			existed, err := e.s.ClearRoutingRequest(e.ctx, e.ns, svc, c.pod)
			if err != nil || existed != c.existed {
				e.t.Fatalf("ClearRoutingRequest(%d) = (%v, %v), want (%v, nil)", c.pod, existed, err, c.existed)
			}
		}
		e.wantRequests(map[int]store.RoutingState{0: store.Shutdown, 7: store.DenyNewCall})
		// Requests touch K5 only: no pod state appears.
		if got, want := e.keys(), []string{store.ControlKey(e.ns, svc)}; !slices.Equal(got, want) {
			e.t.Fatalf("keys = %q, want only %q", got, want)
		}
	}},
	{Name: "Control/no_requests_is_empty", Run: func(e *env) {
		e.wantRequests(map[int]store.RoutingState{})
	}},
	{Name: "Control/key_is_K3_with_suffix", Run: func(e *env) {
		// The Java framework's K3 key plus "ctl" outside the hash tag: the
		// same cluster slot, so one script reads K5 and writes K3.
		if got, want := store.ControlKey(e.ns, svc), "sf:{"+e.ns+":state:"+svc+"}ctl"; got != want {
			e.t.Fatalf("ControlKey = %q, want %q", got, want)
		}
		if !strings.HasPrefix(store.ControlKey(e.ns, svc), store.StateKey(e.ns, svc)) {
			e.t.Fatal("K5 does not extend K3's key")
		}
	}},
	{Name: "Control/publish_writes_the_more_restrictive", Run: func(e *env) {
		none := store.RoutingUnknown
		for i, c := range []struct {
			own, request, want store.RoutingState
		}{
			{store.Ready, none, store.Ready},
			{store.DenyNewCall, none, store.DenyNewCall},
			{store.Shutdown, none, store.Shutdown},
			{store.Ready, store.DenyNewCall, store.DenyNewCall},
			{store.Ready, store.Shutdown, store.Shutdown},
			{store.DenyNewCall, store.DenyNewCall, store.DenyNewCall},
			{store.DenyNewCall, store.Shutdown, store.Shutdown},
			{store.Shutdown, store.DenyNewCall, store.Shutdown},
			{store.Shutdown, store.Shutdown, store.Shutdown},
		} {
			pod := 10 + i
			if c.request != none {
				e.must(e.s.RequestRoutingState(e.ctx, e.ns, svc, pod, c.request))
			}
			p, err := e.s.PublishServiceState(e.ctx, e.ns, svc, pod, 40+i, c.own)
			e.must(err)
			want := store.Published{Updated: p.Updated, Routing: c.want, Requested: c.request}
			if p != want || p.Updated <= 0 {
				e.t.Fatalf("own %v, request %v: published %+v, want %+v", c.own, c.request, p, want)
			}
			e.wantK3(pod, store.StateValue{Load: 40 + i, Updated: p.Updated, Routing: c.want})
		}
	}},
	{Name: "Control/clear_restores_own_state_at_next_publish", Run: func(e *env) {
		e.must(e.s.RequestRoutingState(e.ctx, e.ns, svc, 0, store.DenyNewCall))
		p, err := e.s.PublishServiceState(e.ctx, e.ns, svc, 0, 3, store.Ready)
		e.must(err)
		e.wantK3(0, store.StateValue{Load: 3, Updated: p.Updated, Routing: store.DenyNewCall})
		_, err = e.s.ClearRoutingRequest(e.ctx, e.ns, svc, 0)
		e.must(err)
		p, err = e.s.PublishServiceState(e.ctx, e.ns, svc, 0, 3, store.Ready)
		e.must(err)
		if want := (store.Published{Updated: p.Updated, Routing: store.Ready}); p != want {
			e.t.Fatalf("after clear published %+v, want %+v", p, want)
		}
		e.wantK3(0, store.StateValue{Load: 3, Updated: p.Updated, Routing: store.Ready})
	}},
	{Name: "Control/request_of_another_pod_is_not_applied", Run: func(e *env) {
		e.must(e.s.RequestRoutingState(e.ctx, e.ns, svc, 1, store.Shutdown))
		p, err := e.s.PublishServiceState(e.ctx, e.ns, svc, 0, 0, store.Ready)
		e.must(err)
		if p.Routing != store.Ready || p.Requested != store.RoutingUnknown {
			e.t.Fatalf("pod 0 published %+v, want Ready with no request", p)
		}
	}},
	{Name: "Control/SetServiceState_ignores_requests", Run: func(e *env) {
		// The plain write (the Java fleet's, a test's) stays what it was.
		e.must(e.s.RequestRoutingState(e.ctx, e.ns, svc, 0, store.Shutdown))
		ms, err := e.s.SetServiceState(e.ctx, e.ns, svc, 0, 5, store.Ready)
		e.must(err)
		e.wantK3(0, store.StateValue{Load: 5, Updated: ms, Routing: store.Ready})
	}},
	{Name: "Control/publish_ignores_a_corrupt_request", Run: func(e *env) {
		ctl := store.ControlKey(e.ns, svc)
		// "1" (Ready) is not a request either: clearing is how a pod is
		// given back its own state.
		for i, bad := range []string{"1", "garbage", "", "00", " 2", "3"} {
			e.hset(ctl, strconv.Itoa(i), bad)
			p, err := e.s.PublishServiceState(e.ctx, e.ns, svc, i, 1, store.Ready)
			if err != nil {
				e.t.Fatalf("request %q failed the publish: %v", bad, err)
			}
			want := store.Published{Updated: p.Updated, Routing: store.Ready,
				Ignored: &store.CorruptError{Key: ctl, Field: strconv.Itoa(i), Value: bad}}
			if p.Routing != want.Routing || p.Requested != want.Requested || p.Ignored == nil || *p.Ignored != *want.Ignored {
				e.t.Fatalf("request %q: published %+v (ignored %v), want %+v (ignored %v)", bad, p, p.Ignored, want, want.Ignored)
			}
			e.wantK3(i, store.StateValue{Load: 1, Updated: p.Updated, Routing: store.Ready})
		}
	}},
	{Name: "Control/wrong_type_K5", Run: func(e *env) {
		ctl := store.ControlKey(e.ns, svc)
		e.set(ctl, "not a hash")
		p, err := e.s.PublishServiceState(e.ctx, e.ns, svc, 0, 2, store.DenyNewCall)
		if err != nil {
			e.t.Fatalf("a string K5 failed the publish: %v", err)
		}
		if p.Routing != store.DenyNewCall || p.Requested != store.RoutingUnknown || p.Ignored == nil ||
			*p.Ignored != (store.CorruptError{Key: ctl, Value: "(wrong type)"}) {
			e.t.Fatalf("published %+v (ignored %v), want own DenyNewCall and K5 ignored as of the wrong type", p, p.Ignored)
		}
		e.wantK3(0, store.StateValue{Load: 2, Updated: p.Updated, Routing: store.DenyNewCall})
		wantCorruptKey := func(op string, err error) {
			e.t.Helper()
			var ce *store.CorruptError
			if !errors.As(err, &ce) || ce.Key != ctl {
				e.t.Fatalf("%s on a string K5: %v, want *CorruptError for %s", op, err, ctl)
			}
		}
		m, err := e.s.RoutingRequests(e.ctx, e.ns, svc)
		wantCorruptKey("RoutingRequests", err)
		if m != nil {
			e.t.Fatalf("RoutingRequests map = %v beside the error, want nil", m)
		}
		wantCorruptKey("RequestRoutingState", e.s.RequestRoutingState(e.ctx, e.ns, svc, 0, store.Shutdown))
		_, err = e.s.ClearRoutingRequest(e.ctx, e.ns, svc, 0)
		wantCorruptKey("ClearRoutingRequest", err)
	}},
	{Name: "Control/requests_report_corrupt_fields_beside_the_good", Run: func(e *env) {
		ctl := store.ControlKey(e.ns, svc)
		e.must(e.s.RequestRoutingState(e.ctx, e.ns, svc, 4, store.Shutdown))
		planted := map[string]string{"03": "2", "x": "0", "5": "1", "6": "", "-1": "2"}
		for f, v := range planted {
			e.hset(ctl, f, v)
		}
		m, err := e.s.RoutingRequests(e.ctx, e.ns, svc)
		if want := map[int]store.RoutingState{4: store.Shutdown}; !maps.Equal(m, want) {
			e.t.Fatalf("requests = %v, want %v beside the errors", m, want)
		}
		var got []string
		for _, err := range err.(interface{ Unwrap() []error }).Unwrap() {
			var ce *store.CorruptError
			if !errors.As(err, &ce) || ce.Key != ctl || planted[ce.Field] != ce.Value {
				e.t.Fatalf("error %v does not name a planted field", err)
			}
			got = append(got, ce.Field)
		}
		if want := []string{"-1", "03", "5", "6", "x"}; !slices.Equal(got, want) {
			e.t.Fatalf("corrupt fields %q, want %q in order", got, want)
		}
	}},

	// --- Workload state ---
	{Name: "WorkloadState/statuses_ttl_and_missing", Run: func(e *env) {
		for _, c := range []struct {
			svc              string
			accepting, alive int
			want             store.WorkloadStatus
		}{{"s1", 2, 3, store.WorkloadReady}, {"s2", 0, 2, store.WorkloadDraining}, {"s3", 0, 0, store.WorkloadDown}} {
			ms, err := e.s.SetWorkloadState(e.ctx, e.ns, c.svc, c.accepting, c.alive, 15)
			e.must(err)
			e.wantTTL(store.WorkloadKey(e.ns, c.svc), 15)
			w, err := e.s.GetWorkloadState(e.ctx, e.ns, c.svc)
			e.must(err)
			want := store.WorkloadState{Status: c.want, Accepting: c.accepting, Alive: c.alive, Updated: ms}
			if w != want {
				e.t.Fatalf("%s = %+v, want %+v", c.svc, w, want)
			}
			if w.Ready() != (c.want == store.WorkloadReady) {
				e.t.Fatalf("%s Ready() = %v", c.svc, w.Ready())
			}
		}
		w, err := e.s.GetWorkloadState(e.ctx, e.ns, "missing")
		if err != nil || w != (store.WorkloadState{}) || w.Status != store.WorkloadUnknown {
			e.t.Fatalf("missing = (%+v, %v), want Unknown", w, err)
		}
	}},
	{Name: "WorkloadState/batch_across_slots", Run: func(e *env) {
		svcs := []string{"s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"}
		for i, s := range svcs[:6] {
			_, err := e.s.SetWorkloadState(e.ctx, e.ns, s, i%2, 1, 30)
			e.must(err)
		}
		got, err := e.s.GetWorkloadStateBatch(e.ctx, e.ns, svcs)
		e.must(err)
		if len(got) != len(svcs) {
			e.t.Fatalf("%d states, want %d", len(got), len(svcs))
		}
		for i, s := range svcs {
			want := store.WorkloadUnknown
			if i < 6 {
				want = []store.WorkloadStatus{store.WorkloadDraining, store.WorkloadReady}[i%2]
			}
			if got[s].Status != want {
				e.t.Fatalf("%s = %v, want %v", s, got[s].Status, want)
			}
		}
	}},

	// --- Scripts ---
	{Name: "Scripts/reloaded_after_SCRIPT_FLUSH", Run: func(e *env) {
		e.link("u1", svc, 1, store.Persistent)
		e.b.FlushScripts(e.t)
		c := e.claim("u1", svc, 1, store.Persistent)
		if !c.Claimed {
			e.t.Fatalf("after flush claim = %+v", c)
		}
		e.b.FlushScripts(e.t)
		if _, err := e.s.GetServiceState(e.ctx, e.ns, svc); err != nil {
			e.t.Fatalf("read-only script after flush: %v", err)
		}
		e.b.FlushScripts(e.t)
		if _, err := e.s.PublishServiceState(e.ctx, e.ns, svc, 0, 1, store.Ready); err != nil {
			e.t.Fatalf("publish script after flush: %v", err)
		}
	}},
}

func TestContract(t *testing.T) { redistest.EachCase(t, contract, newEnv) }

// TestErrorKindsAreDistinct checks that not-found, corruption and
// unavailability are told apart with errors.Is, without string matching.
func TestErrorKindsAreDistinct(t *testing.T) {
	errs := []error{store.ErrInvalidArgument, store.ErrCorrupt, store.ErrUnavailable, store.ErrUnexpectedReply}
	typed := []error{&store.InvalidArgumentError{Arg: "uid"}, &store.CorruptError{Key: "k"}, &store.UnavailableError{Op: "x", Err: errors.New("down")}}
	for i, err := range typed {
		for j, sentinel := range errs {
			if got := errors.Is(err, sentinel); got != (i == j) {
				t.Errorf("errors.Is(%T, %v) = %v", err, sentinel, got)
			}
		}
	}
}

// link writes a link with SetLinkedPod, failing the test on an error, and
// returns the previous pod.
func (e *env) link(uid, service string, pod, seconds int) int {
	e.t.Helper()
	prev, err := e.s.SetLinkedPod(e.ctx, e.ns, uid, service, pod, seconds)
	e.must(err)
	return prev
}

// linkAll writes a persistent link of uid to each service's pod.
func (e *env) linkAll(uid string, links map[string]int) {
	e.t.Helper()
	for s, p := range links {
		e.link(uid, s, p, store.Persistent)
	}
}

// linkIfAbsent calls SetLinkedPodIfAbsent, failing the test on an error.
func (e *env) linkIfAbsent(uid, service string, pod, seconds int) int {
	e.t.Helper()
	got, err := e.s.SetLinkedPodIfAbsent(e.ctx, e.ns, uid, service, pod, seconds)
	e.must(err)
	return got
}

// wantOnlyPersistentLink checks that uid's link to svc holds pod with no
// expiry and that K2 lists it and nothing else.
func (e *env) wantOnlyPersistentLink(uid, pod string) {
	e.t.Helper()
	if v, _ := e.get(uid, svc); v != pod {
		e.t.Fatalf("K1 = %q, want %s", v, pod)
	}
	e.wantPersistent(store.LinkKey(e.ns, uid, svc))
	if d := e.dir(uid); !maps.Equal(d, map[string]string{svc: pod}) {
		e.t.Fatalf("K2 = %v, want {%s:%s}", d, svc, pod)
	}
}

// wantOnlyTemporaryLink checks that uid's link to svc expires in about
// seconds and that K2 lists nothing: a temporary link is not listed.
func (e *env) wantOnlyTemporaryLink(uid string, seconds int) {
	e.t.Helper()
	e.wantTTL(store.LinkKey(e.ns, uid, svc), seconds)
	if d := e.dir(uid); len(d) != 0 {
		e.t.Fatalf("K2 = %v, want empty: a temporary link is not listed", d)
	}
}

// claim calls TrySetLinkedPod, failing the test on an error.
func (e *env) claim(uid, service string, pod, seconds int) store.Claim {
	e.t.Helper()
	c, err := e.s.TrySetLinkedPod(e.ctx, e.ns, uid, service, pod, seconds)
	e.must(err)
	return c
}

// wantClaim checks that TrySetLinkedPod returns exactly want.
func (e *env) wantClaim(uid, service string, pod, seconds int, want store.Claim) {
	e.t.Helper()
	if c := e.claim(uid, service, pod, seconds); c != want {
		e.t.Fatalf("claim = %+v, want %+v", c, want)
	}
}

// wantLinkService checks that GetLinkService reports exactly want, without
// an error, and that the read left K2 as it was.
func (e *env) wantLinkService(uid string, want map[string]int) {
	e.t.Helper()
	before := e.dir(uid)
	got, err := e.s.GetLinkService(e.ctx, e.ns, uid)
	if err != nil || !maps.Equal(got, want) {
		e.t.Fatalf("GetLinkService = (%v, %v), want (%v, nil)", got, err, want)
	}
	if after := e.dir(uid); !maps.Equal(after, before) {
		e.t.Fatalf("K2 = %v after the read, want %v unchanged", after, before)
	}
}

// hgetall returns the raw fields of hash key.
func (e *env) hgetall(key string) map[string]string {
	e.t.Helper()
	m, err := e.raw(e.b.Client.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		e.t.Fatalf("HGETALL %s: %v", key, err)
	}
	return m
}

// wantRequests checks that RoutingRequests reports exactly want, without an
// error.
func (e *env) wantRequests(want map[int]store.RoutingState) {
	e.t.Helper()
	got, err := e.s.RoutingRequests(e.ctx, e.ns, svc)
	if err != nil || got == nil || !maps.Equal(got, want) {
		e.t.Fatalf("RoutingRequests = (%v, %v), want (%v, nil)", got, err, want)
	}
}

// wantK3 checks that K3 holds exactly want for pod, in the wire format
// SPEC §3.2 gives (the Java fleet reads it).
func (e *env) wantK3(pod int, want store.StateValue) {
	e.t.Helper()
	v, err := e.raw(e.b.Client.B().Hget().Key(store.StateKey(e.ns, svc)).Field(strconv.Itoa(pod)).Build()).ToString()
	e.must(err)
	if w := string(store.AppendStateValue(nil, want)); v != w {
		e.t.Fatalf("K3[%d] = %q, want %q", pod, v, w)
	}
}
