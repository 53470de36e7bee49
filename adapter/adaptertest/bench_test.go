package adaptertest_test

import (
	"testing"

	"github.com/stickyroute/stickyroute/adapter/adaptertest"
)

// TestCompare: each call's metric and each Added metric are reported, and
// the calls share the rounds.
func TestCompare(t *testing.T) {
	var a, b int
	r := testing.Benchmark(func(bb *testing.B) {
		adaptertest.Compare(bb,
			adaptertest.Call{Name: "plain", Do: func() error { a++; return nil }},
			adaptertest.Call{Name: "sticky", Added: "added", Do: func() error { b++; return nil }},
		)
	})
	for _, m := range []string{"plain-ns/call", "sticky-ns/call", "added-ns/call"} {
		if _, ok := r.Extra[m]; !ok {
			t.Errorf("no %s in %v", m, r.Extra)
		}
	}
	if a == 0 || a != b {
		t.Errorf("calls made: %d and %d, want as many of each", a, b)
	}
}
