package benchmarks

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// Key streams: the same sequence of user numbers is replayed through every
// implementation. All are deterministic (fixed seeds), so two runs, and two
// implementations, see the same accesses.

// zipfStream returns n draws of user numbers in [0, keys) whose ranks follow
// Zipf(s): rank r (from 1) is drawn with probability ∝ 1/r^s. Unlike
// math/rand's Zipf it takes any s > 0 (0.9 included), by inverting the CDF.
// Ranks map to user numbers through a fixed permutation, so that hot users
// are spread over the key space and not numbered 0, 1, 2...
func zipfStream(s float64, keys, n int, seed uint64) []int32 {
	cdf := make([]float64, keys)
	sum := 0.0
	for r := range keys {
		sum += math.Pow(float64(r+1), -s)
		cdf[r] = sum
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	perm := rng.Perm(keys)
	out := make([]int32, n)
	for i := range out {
		u := rng.Float64() * sum
		r := sort.SearchFloat64s(cdf, u)
		out[i] = int32(perm[min(r, keys-1)])
	}
	return out
}

// scanStream is a Zipf(0.9) stream over [0, keys) polluted by scans: after
// every scanEvery Zipf draws comes a run of scanLen consecutive user numbers
// from a cold range [keys, 2·keys) that the Zipf draws never touch, walked
// by a cursor that wraps. A quarter of the accesses are scans; a scanned
// user is not seen again for keys/scanLen scans, so every scan access is a
// miss for every cache, and what a scan costs is the hot users it pushes
// out.
func scanStream(keys, n int, seed uint64) []int32 {
	const scanLen, scanEvery = 10_000, 30_000
	zipf := zipfStream(0.9, keys, n, seed)
	out := make([]int32, 0, n)
	cursor, z := 0, 0
	for len(out) < n {
		for i := 0; i < scanEvery && len(out) < n; i++ {
			out = append(out, zipf[z])
			z++
		}
		for i := 0; i < scanLen && len(out) < n; i++ {
			out = append(out, int32(keys+cursor))
			cursor = (cursor + 1) % keys
		}
	}
	return out
}

// TestZipfStream checks the generator against the law it claims: the share
// of the hottest user and the ratio of rank 1 to rank 10 for s = 0.9 and 1.1.
func TestZipfStream(t *testing.T) {
	const keys, n = 10_000, 1_000_000
	for _, s := range []float64{0.9, 1.1} {
		counts := map[int32]int{}
		for _, u := range zipfStream(s, keys, n, 1) {
			if u < 0 || u >= keys {
				t.Fatalf("s=%v: user %d outside [0, %d)", s, u, keys)
			}
			counts[u]++
		}
		freq := make([]int, 0, len(counts))
		for _, c := range counts {
			freq = append(freq, c)
		}
		sort.Sort(sort.Reverse(sort.IntSlice(freq)))
		h := 0.0
		for r := 1; r <= keys; r++ {
			h += math.Pow(float64(r), -s)
		}
		want1 := n / h
		if got := float64(freq[0]); math.Abs(got-want1) > 0.05*want1 {
			t.Errorf("s=%v: hottest user drawn %v times, want %.0f ±5%%", s, got, want1)
		}
		// Ranks 1 and 10 apart by 10^s.
		if got, want := float64(freq[0])/float64(freq[9]), math.Pow(10, s); math.Abs(got-want) > 0.15*want {
			t.Errorf("s=%v: rank 1 / rank 10 = %.2f, want %.2f ±15%%", s, got, want)
		}
	}
	a, b := zipfStream(0.9, keys, 1000, 7), zipfStream(0.9, keys, 1000, 7)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different streams at %d", i)
		}
	}
}

// TestScanStream checks the shape of the polluted stream: a quarter of
// scans, on users the Zipf part never draws, each scan run consecutive.
func TestScanStream(t *testing.T) {
	const keys, n = 50_000, 400_000
	s := scanStream(keys, n, 1)
	if len(s) != n {
		t.Fatalf("%d accesses, want %d", len(s), n)
	}
	scans := 0
	for i, u := range s {
		if u >= keys {
			scans++
			if u >= 2*keys {
				t.Fatalf("scan user %d outside [%d, %d)", u, keys, 2*keys)
			}
			if i > 0 && s[i-1] >= keys && u != s[i-1]+1 && u != keys {
				t.Fatalf("scan not consecutive at %d: %d after %d", i, u, s[i-1])
			}
		}
	}
	if scans != n/4 {
		t.Errorf("%d scan accesses, want %d", scans, n/4)
	}
}
