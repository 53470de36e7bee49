package podgroup

import (
	"maps"
	"slices"
	"testing"
)

// TestByPodDenseAndSparse: counting in a slice and the map fallback group
// alike, in input order, and one group's appends never reach another.
func TestByPodDenseAndSparse(t *testing.T) {
	uids := []string{"a", "b", "c", "d", "e", "f", "g"}
	for _, pods := range [][]int32{
		{0, 1, -1, 0, 2, 1, 0},
		{5, -1, 5, 3, 1<<31 - 1, 3, 0},
		{-1, -1, -1, -1, -1, -1, -1},
	} {
		got, want := ByPod(uids, pods), sparse(uids, pods)
		if !maps.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("pods %v: ByPod %v, want %v", pods, got, want)
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
