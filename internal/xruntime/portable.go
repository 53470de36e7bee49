//go:build stickyroute_portable

package xruntime

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// Portable reports whether the package was built without go:linkname (the
// stickyroute_portable tag).
const Portable = true

// Rand32 returns a pseudo-random uint32 from math/rand/v2's global
// generator (per-thread state in the runtime, no lock).
func Rand32() uint32 { return rand.Uint32() }

// Rand64 returns a pseudo-random uint64 from math/rand/v2's global generator.
func Rand64() uint64 { return rand.Uint64() }

// ProcID returns a small non-negative id that stays with the caller's
// processor (P) while the goroutine runs there: ids are handed out from a
// sync.Pool, whose Get and Put use the P's own slot, so each P keeps taking
// back the id it put. Without the runtime's procPin that is the portable way
// to find a P's stripe (it is how sync.Pool itself is per-P). A GC may move an
// id to another P and a new one may be made; callers mask the id to their
// stripe count, so that only spreads writes a little less evenly for a while.
// Measured against a random stripe (math/rand/v2), which would be cheaper,
// 18–22 ns against 13–19 ns per id on this 2-core machine in the same run;
// but a random stripe breaks the exact rotations a balancer keeps per
// processor (a single goroutine's round robin would wander across stripes),
// so the pool it is.
func ProcID() int {
	p := procIDs.Get().(*int)
	id := *p
	procIDs.Put(p)
	return id
}

// procIDs hands out the processors' ids; nextProcID numbers new ones.
var (
	nextProcID atomic.Int64
	procIDs    = sync.Pool{New: func() any {
		id := int(nextProcID.Add(1)-1) & (1<<31 - 1)
		return &id
	}}
)
