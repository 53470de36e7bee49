package redisproc

import (
	"net"
	"strconv"
	"testing"
)

// TestFreePortBelowEphemeralRange: the port is free, and below the kernel's
// ephemeral range when the range leaves room under it.
func TestFreePortBelowEphemeralRange(t *testing.T) {
	eph := ephemeralLow()
	for range 20 {
		p := freePort(t)
		if eph-portFloor >= 1000 && (p < portFloor || p >= eph) {
			t.Fatalf("port %d outside [%d, %d)", p, portFloor, eph)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		ln.Close()
	}
}
