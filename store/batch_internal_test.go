package store

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestLinkKeysMatchLinkKey: the batch's shared-buffer key builder writes
// exactly the keys LinkKey writes, escapes included (some uids outgrow the
// plain sizing, some come after one that did).
func TestLinkKeysMatchLinkKey(t *testing.T) {
	uids := []string{"a", "u{1}", "plain", "%", "{}%{}%", "x", strings.Repeat("{", MaxUIDLen), "end"}
	keys := linkKeys("ns", uids, "svc")
	if len(keys) != len(uids) {
		t.Fatalf("%d keys for %d uids", len(keys), len(uids))
	}
	for i, uid := range uids {
		if want := LinkKey("ns", uid, "svc"); keys[i] != want {
			t.Errorf("uid %q: key %q, want %q", uid, keys[i], want)
		}
	}
}

// TestGroupByPodDenseAndSparse: counting in a slice and the map fallback
// group alike, in input order, and one group's appends never reach another.
func TestGroupByPodDenseAndSparse(t *testing.T) {
	uids := []string{"a", "b", "c", "d", "e", "f", "g"}
	for _, pods := range [][]int32{
		{0, 1, NoPod, 0, 2, 1, 0},
		{5, NoPod, 5, 3, MaxPod, 3, 0},
		{NoPod, NoPod, NoPod, NoPod, NoPod, NoPod, NoPod},
	} {
		got, want := groupByPod(uids, pods), groupByPodSparse(uids, pods)
		if !maps.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("pods %v: groupByPod %v, want %v", pods, got, want)
		}
		for p, g := range got {
			got[p] = append(g, "appended")
		}
		for p, g := range got {
			if n := len(want[p]); len(g) != n+1 || !slices.Equal(g[:n], want[p]) {
				t.Fatalf("pods %v: after appending to every group, %d = %v", pods, p, g)
			}
		}
	}
}
