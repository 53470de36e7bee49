package xruntime

import (
	"runtime"
	"testing"
)

func TestProcID(t *testing.T) {
	for range 1000 {
		if id := ProcID(); id < 0 || id >= runtime.GOMAXPROCS(0) {
			t.Fatalf("ProcID() = %d outside [0, %d)", id, runtime.GOMAXPROCS(0))
		}
	}
	s := Stripes()
	if s < runtime.GOMAXPROCS(0) && s != 64 || s&(s-1) != 0 {
		t.Fatalf("Stripes() = %d, want a power of two ≥ GOMAXPROCS", s)
	}
}
