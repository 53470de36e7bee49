// Package xruntime gives the load balancer and the link cache two things from
// the Go runtime: an id of the processor (P) the calling goroutine runs on, so
// that counters written on every pick can be kept per processor (two cores
// never write the same cache line on the hot path), and the runtime's
// per-thread random generator, which costs a nanosecond where math/rand/v2
// costs four.
//
// Both come from the runtime by go:linkname (linkname.go). The runtime keeps
// those symbols linkable on purpose, but a Go release could still withdraw
// them, and then nothing of this module would link. The build tag
// stickyroute_portable (portable.go) builds the package without linkname:
// random numbers from math/rand/v2 and a random stripe instead of the
// processor's id. make test runs the lb and engine tests once with that tag,
// and make bench-portable compares the hot paths of both builds.
package xruntime

import "runtime"

// Stripes returns how many per-processor stripes a structure should keep: the
// next power of two ≥ max(GOMAXPROCS, NumCPU), at most 64. NumCPU covers a
// GOMAXPROCS raised later (the runtime may adjust it to the container's quota).
func Stripes() int {
	n := max(runtime.GOMAXPROCS(0), runtime.NumCPU())
	s := 1
	for s < n && s < 64 {
		s <<= 1
	}
	return s
}
