package adaptertest

import (
	"slices"
	"testing"
	"time"
)

// Call is one way to make a call, for Compare.
type Call struct {
	// Name names the call's metric, "<Name>-ns/call"; Added, that of its
	// cost over the first Call's, "<Added>-ns/call" (none when empty).
	Name, Added string
	// Do makes one call.
	Do func() error
}

// Compare makes about b.N calls in short rounds that run each Call in turn,
// in ABBA order against drift, and reports the median over the rounds of
// each Call's ns per call and of its difference to the first: a burst of
// load from elsewhere on the machine spoils a few rounds, not the figure.
func Compare(b *testing.B, calls ...Call) {
	b.Helper()
	const chunk = 16
	run := func(c Call) float64 {
		start := time.Now()
		for range chunk {
			if err := c.Do(); err != nil {
				b.Fatal(err)
			}
		}
		return float64(time.Since(start).Nanoseconds()) / chunk
	}
	ns := make([][]float64, len(calls))    // by call, by round
	added := make([][]float64, len(calls)) // by call, by round
	order := make([]int, len(calls))
	b.ReportAllocs()
	b.ResetTimer()
	for round := 0; round*len(calls)*chunk < b.N; round++ {
		for i := range order {
			order[i] = i
		}
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, i := range order {
			ns[i] = append(ns[i], run(calls[i]))
		}
		for i := range calls {
			added[i] = append(added[i], ns[i][round]-ns[0][round])
		}
	}
	for i, c := range calls {
		b.ReportMetric(median(ns[i]), c.Name+"-ns/call")
		if c.Added != "" {
			b.ReportMetric(median(added[i]), c.Added+"-ns/call")
		}
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
