package store_test

import (
	"strings"
	"testing"

	"github.com/stickyroute/stickyroute/internal/slot"
	"github.com/stickyroute/stickyroute/store"
)

func TestKeys(t *testing.T) {
	cases := []struct{ got, want string }{
		// Plain uids give exactly the Java framework's keys.
		{store.LinkKey("game", "10086", "room"), "sf:{game:lk:10086}room"},
		{store.DirKey("game", "10086"), "sf:{game:lk:10086}"},
		{store.StateKey("game", "room"), "sf:{game:state:room}"},
		{store.WorkloadKey("game", "room"), "sf:{game:workload:room}"},
		// Braces and the escape byte itself are escaped; nothing else is.
		{store.LinkKey("g", "a{b}c%d:lk:e", "s"), "sf:{g:lk:a%7Bb%7Dc%25d:lk:e}s"},
		{store.LinkKey("g", "%7B", "s"), "sf:{g:lk:%257B}s"},
		{store.LinkKey("g", "\x00", "s"), "sf:{g:lk:\x00}s"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("key %q, want %q", c.got, c.want)
		}
	}
}

func TestParseLinkKey(t *testing.T) {
	for _, key := range []string{
		"", "sf:{", "sf:{g:lk:u}", "sf:{g:lk:u}s}", "sf:{g:state:s}", "sf:{g:lk:%7}s",
		"sf:{g:lk:%41}s", "sf:{g:lk:a{b}s", "xx:{g:lk:u}s", "sf:{g:lk:}s", "sf:{:lk:u}s",
		"sf:{g:lk:u}s:t", "sf:{g g:lk:u}s",
	} {
		if ns, uid, svc, ok := store.ParseLinkKey(key); ok {
			t.Errorf("ParseLinkKey(%q) = (%q, %q, %q, true), want false", key, ns, uid, svc)
		}
	}
	ns, uid, svc, ok := store.ParseLinkKey("sf:{g:lk:a%7Bb%7Dc%25d:lk:e}s")
	if !ok || ns != "g" || uid != "a{b}c%d:lk:e" || svc != "s" {
		t.Errorf("ParseLinkKey = (%q, %q, %q, %v)", ns, uid, svc, ok)
	}
}

// parseCase is an input of a parser, the value it must parse to and whether
// it parses at all.
type parseCase[T comparable] struct {
	in   string
	want T
	ok   bool
}

// checkParse runs parse, named name in messages, on every case.
func checkParse[T comparable](t *testing.T, name string, parse func(string) (T, error), cases []parseCase[T]) {
	t.Helper()
	for _, c := range cases {
		got, err := parse(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("%s(%q) = (%+v, %v), want (%+v, ok=%v)", name, c.in, got, err, c.want, c.ok)
		}
	}
}

func TestParseStateValue(t *testing.T) {
	checkParse(t, "ParseStateValue", store.ParseStateValue, []parseCase[store.StateValue]{
		{"5-1700000000000-1", store.StateValue{Load: 5, Updated: 1700000000000, Routing: store.Ready}, true},
		{"5-1700000000000-2", store.StateValue{Load: 5, Updated: 1700000000000, Routing: store.DenyNewCall}, true},
		{"0-1-0", store.StateValue{Load: 0, Updated: 1, Routing: store.Shutdown}, true},
		{"5-1700000000000", store.StateValue{Load: 5, Updated: 1700000000000, Routing: store.Ready}, true},  // legacy
		{"-5-1700000000000", store.StateValue{Load: 0, Updated: 1700000000000, Routing: store.Ready}, true}, // legacy, clamped
		{"-5-17-2", store.StateValue{Load: 0, Updated: 17, Routing: store.DenyNewCall}, true},
		{"5-17-3", store.StateValue{}, false},
		{"5-17-", store.StateValue{}, false},
		{"5--1", store.StateValue{}, false},
		{"--5-1", store.StateValue{}, false},
		{"-5", store.StateValue{}, false},
		{"5", store.StateValue{}, false},
		{"", store.StateValue{}, false},
		{"a-1-1", store.StateValue{}, false},
		{"1-1-1-1", store.StateValue{}, false},
		{"+1-1-1", store.StateValue{}, false},
		{"1-99999999999999999999-1", store.StateValue{}, false},
		{" 1-1-1", store.StateValue{}, false},
	})
}

func TestParseWorkloadValue(t *testing.T) {
	checkParse(t, "ParseWorkloadValue", store.ParseWorkloadValue, []parseCase[store.WorkloadState]{
		{"2-3-100", store.WorkloadState{Status: store.WorkloadReady, Accepting: 2, Alive: 3, Updated: 100}, true},
		{"0-3-100", store.WorkloadState{Status: store.WorkloadDraining, Alive: 3, Updated: 100}, true},
		{"0-0-100", store.WorkloadState{Status: store.WorkloadDown, Updated: 100}, true},
		{"4-3-100", store.WorkloadState{}, false},
		{"-1-3-100", store.WorkloadState{}, false},
		{"1-3", store.WorkloadState{}, false},
		{"1-3-100-1", store.WorkloadState{}, false},
		{"", store.WorkloadState{}, false},
	})
}

func TestStringers(t *testing.T) {
	checkStrings(t, map[store.RoutingState]string{
		store.RoutingUnknown: "Unknown", store.Ready: "Ready", store.DenyNewCall: "DenyNewCall", store.Shutdown: "Shutdown", 99: "Unknown",
	})
	checkStrings(t, map[store.WorkloadStatus]string{
		store.WorkloadUnknown: "Unknown", store.WorkloadReady: "Ready", store.WorkloadDraining: "Draining", store.WorkloadDown: "Down",
	})
}

// checkStrings checks the String of every enum value against its name.
func checkStrings[S interface {
	~uint8
	String() string
}](t *testing.T, want map[S]string) {
	t.Helper()
	for s, name := range want {
		if s.String() != name {
			t.Errorf("%d.String() = %q, want %q", uint8(s), s.String(), name)
		}
	}
}

// validTriple reports whether the fuzzer's strings are arguments the store accepts.
func validTriple(ns, uid, svc string) bool {
	return store.ValidateName("namespace", ns) == nil && store.ValidateUID("uid", uid) == nil &&
		store.ValidateName("service", svc) == nil
}

// FuzzLinkKey checks the key codec: LinkKey is injective (ParseLinkKey inverts
// it, and two different triples never meet), and a uid's two link keys always
// share a cluster slot whatever bytes the uid holds.
func FuzzLinkKey(f *testing.F) {
	// Seeds: a Java-style plain uid; uids shaped like key syntax; escapes that
	// could be confused with escaped bytes; NUL and high bytes.
	f.Add("game", "10086", "room", "game", "10087", "room")
	f.Add("g", "a}b", "s", "g", "a%7Db", "s")
	f.Add("g", "%7D", "s", "g", "}", "s")
	f.Add("g", "u}s", "t", "g", "u", "s}t")
	f.Add("g", "x:lk:y", "s", "g:lk:x", "y", "s")
	f.Add("g", "{", "s", "g", "%7B", "s")
	f.Add("g", "\x00", "s", "g", "\x00\x00", "s")
	f.Fuzz(func(t *testing.T, ns1, uid1, svc1, ns2, uid2, svc2 string) {
		for _, tr := range [][3]string{{ns1, uid1, svc1}, {ns2, uid2, svc2}} {
			ns, uid, svc := tr[0], tr[1], tr[2]
			if !validTriple(ns, uid, svc) {
				continue
			}
			k1, k2 := store.LinkKey(ns, uid, svc), store.DirKey(ns, uid)
			gns, guid, gsvc, ok := store.ParseLinkKey(k1)
			if !ok || gns != ns || guid != uid || gsvc != svc {
				t.Fatalf("ParseLinkKey(%q) = (%q, %q, %q, %v), want (%q, %q, %q)", k1, gns, guid, gsvc, ok, ns, uid, svc)
			}
			if slot.Of(k1) != slot.Of(k2) || slot.Tag(k1) != slot.Tag(k2) {
				t.Fatalf("K1 %q (slot %d) and K2 %q (slot %d) are in different slots", k1, slot.Of(k1), k2, slot.Of(k2))
			}
			if !strings.HasPrefix(k1, k2) || k1 == k2 {
				t.Fatalf("K1 %q does not extend K2 %q", k1, k2)
			}
		}
		if !validTriple(ns1, uid1, svc1) || !validTriple(ns2, uid2, svc2) {
			return
		}
		same := ns1 == ns2 && uid1 == uid2 && svc1 == svc2
		if (store.LinkKey(ns1, uid1, svc1) == store.LinkKey(ns2, uid2, svc2)) != same {
			t.Fatalf("LinkKey collides for (%q,%q,%q) and (%q,%q,%q)", ns1, uid1, svc1, ns2, uid2, svc2)
		}
		if (store.DirKey(ns1, uid1) == store.DirKey(ns2, uid2)) != (ns1 == ns2 && uid1 == uid2) {
			t.Fatalf("DirKey collides for (%q,%q) and (%q,%q)", ns1, uid1, ns2, uid2)
		}
		others := []string{store.DirKey(ns2, uid2), store.StateKey(ns2, svc2), store.WorkloadKey(ns2, svc2)}
		for _, o := range others {
			if store.LinkKey(ns1, uid1, svc1) == o {
				t.Fatalf("LinkKey(%q,%q,%q) equals another key kind %q", ns1, uid1, svc1, o)
			}
		}
	})
}

// FuzzParseStateValue feeds arbitrary text to the pod-state parser: it must
// never panic, and whatever it accepts must survive a write and a re-read.
func FuzzParseStateValue(f *testing.F) {
	// Seeds: the three routing states, the legacy form, negative loads, and
	// near-misses of each.
	for _, s := range []string{
		"5-1700000000000-1", "5-1700000000000-2", "0-1-0", "5-1700000000000", "-5-1700000000000",
		"-5-17-2", "5-17-3", "--5-1", "5--1", "-", "", "9223372036854775807-9223372036854775807-1",
		"9223372036854775808-1-1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := store.ParseStateValue(s)
		if err != nil {
			return
		}
		if v.Load < 0 || v.Updated < 0 || v.Routing == store.RoutingUnknown {
			t.Fatalf("ParseStateValue(%q) = %+v: out of range", s, v)
		}
		again, err := store.ParseStateValue(string(store.AppendStateValue(nil, v)))
		if err != nil || again != v {
			t.Fatalf("%q -> %+v -> %q -> (%+v, %v)", s, v, store.AppendStateValue(nil, v), again, err)
		}
	})
}

// FuzzStateValueRoundTrip writes any state value and reads it back.
func FuzzStateValueRoundTrip(f *testing.F) {
	f.Add(int64(5), int64(1700000000000), uint8(1))
	f.Add(int64(-3), int64(0), uint8(3))
	f.Add(int64(1<<62), int64(1<<62), uint8(2))
	f.Fuzz(func(t *testing.T, load, updated int64, routing uint8) {
		in := store.StateValue{Load: int(load), Updated: updated, Routing: store.RoutingState(routing%3 + 1)}
		got, err := store.ParseStateValue(string(store.AppendStateValue(nil, in)))
		want := in
		want.Load = max(want.Load, 0)
		want.Updated = max(want.Updated, 0)
		if err != nil || got != want {
			t.Fatalf("%+v -> %q -> (%+v, %v), want %+v", in, store.AppendStateValue(nil, in), got, err, want)
		}
	})
}

// FuzzParseWorkloadValue: never panics; what it accepts round-trips.
func FuzzParseWorkloadValue(f *testing.F) {
	for _, s := range []string{"2-3-100", "0-0-1", "4-3-100", "1-3", "-1-2-3", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := store.ParseWorkloadValue(s)
		if err != nil {
			return
		}
		if w.Accepting > w.Alive || w.Status == store.WorkloadUnknown {
			t.Fatalf("ParseWorkloadValue(%q) = %+v: inconsistent", s, w)
		}
		again, err := store.ParseWorkloadValue(string(store.AppendWorkloadValue(nil, w)))
		if err != nil || again != w {
			t.Fatalf("%q -> %+v -> (%+v, %v)", s, w, again, err)
		}
	})
}
