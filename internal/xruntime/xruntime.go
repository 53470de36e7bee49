// Package xruntime gives the load balancer two things from the Go runtime: the
// id of the processor (P) the calling goroutine runs on, so that counters
// written on every pick can be kept per processor (two cores never write the
// same cache line on the hot path), and the runtime's per-thread random
// generator, which costs a nanosecond where math/rand/v2 costs four.
package xruntime

import (
	"runtime"
	_ "unsafe" // go:linkname
)

// procPin and procUnpin are the runtime's, the same pair sync.Pool uses to find
// its per-P slot. The runtime keeps them linkable on purpose (see the comment on
// runtime.procPin and go.dev/issue/67401). Pinning lasts two instructions here.
//
//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// cheaprand is the runtime's per-thread wyrand generator (also linkable by
// design, see its comment): about a nanosecond, no shared state. Its numbers
// are not for cryptography, only for spreading picks.
//
//go:linkname cheaprand runtime.cheaprand
func cheaprand() uint32

// Rand32 returns a pseudo-random uint32 from the runtime's per-thread generator.
func Rand32() uint32 { return cheaprand() }

// Rand64 returns a pseudo-random uint64 from the runtime's per-thread generator.
func Rand64() uint64 { return uint64(cheaprand())<<32 | uint64(cheaprand()) }

// ProcID returns the id of the P the caller runs on, in [0, GOMAXPROCS). The
// goroutine may move to another P right after; callers use the id only to
// spread writes, never for correctness.
func ProcID() int {
	id := procPin()
	procUnpin()
	return id
}

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
