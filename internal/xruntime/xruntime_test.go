package xruntime

import (
	"runtime"
	"testing"
)

func TestProcID(t *testing.T) {
	for range 1000 {
		id := ProcID()
		if id < 0 || !Portable && id >= runtime.GOMAXPROCS(0) {
			t.Fatalf("ProcID() = %d outside [0, %d) (portable build: %v)", id, runtime.GOMAXPROCS(0), Portable)
		}
	}
	s := Stripes()
	if s < runtime.GOMAXPROCS(0) && s != 64 || s&(s-1) != 0 {
		t.Fatalf("Stripes() = %d, want a power of two ≥ GOMAXPROCS", s)
	}
}

// TestRand: both generators spread over their whole range (every bit seen
// both ways within a few hundred draws).
func TestRand(t *testing.T) {
	var or32, and32 uint32 = 0, ^uint32(0)
	var or64, and64 uint64 = 0, ^uint64(0)
	for range 512 {
		a, b := Rand32(), Rand64()
		or32, and32, or64, and64 = or32|a, and32&a, or64|b, and64&b
	}
	if or32 != ^uint32(0) || and32 != 0 || or64 != ^uint64(0) || and64 != 0 {
		t.Fatalf("bits never set or never clear: Rand32 or %#x and %#x, Rand64 or %#x and %#x", or32, and32, or64, and64)
	}
}

var sink uint64

func BenchmarkProcID(b *testing.B) {
	for b.Loop() {
		sink += uint64(ProcID())
	}
}

func BenchmarkRand64(b *testing.B) {
	for b.Loop() {
		sink += Rand64()
	}
}
