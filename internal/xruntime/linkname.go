//go:build !stickyroute_portable

package xruntime

import _ "unsafe" // go:linkname

// Portable reports whether the package was built without go:linkname (the
// stickyroute_portable tag).
const Portable = false

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

// ProcID returns the id of the P the caller runs on, in [0, GOMAXPROCS).
// The goroutine may move to another P right after; callers use the id only
// to spread writes over stripes (masking it to their stripe count), never
// for correctness.
func ProcID() int {
	id := procPin()
	procUnpin()
	return id
}
