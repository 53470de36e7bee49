package redisproc

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestFreePortBelowEphemeralRange: the port is free, and below the kernel's
// ephemeral range when the range leaves room under it.
func TestFreePortBelowEphemeralRange(t *testing.T) {
	eph := ephemeralLow()
	for range 200 {
		p := freePort(t)
		// The cluster bus port must be below the range too: one in it can
		// be an outgoing connection's, and the node then fails to start.
		if hi := eph - clusterBusOffset; hi-portFloor >= 1000 && (p < portFloor || p >= hi) {
			t.Fatalf("port %d outside [%d, %d): its bus port %d may be in the ephemeral range from %d", p, portFloor, hi, p+clusterBusOffset, eph)
		}
		for _, q := range []int{p, p + clusterBusOffset} {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				t.Fatalf("port %d is not free: %v", q, err)
			}
			ln.Close()
		}
	}
}

// TestFreePortLeavesScriptPorts: a port scripts/redis.sh listed, or its
// cluster bus port, is never picked, even while nothing listens on it.
func TestFreePortLeavesScriptPorts(t *testing.T) {
	eph := ephemeralLow()
	if eph-portFloor < 1000 {
		t.Skipf("no room below the ephemeral range (%d)", eph)
	}
	// List 2,000 ports: without the check, about one pick in six would be
	// one of them or one of their bus ports, so 50 picks all but surely
	// catch it.
	dir := t.TempDir()
	const listed = 2000
	var list []byte
	for p := portFloor; p < portFloor+listed; p++ {
		list = strconv.AppendInt(list, int64(p), 10)
		list = append(list, '\n')
	}
	if err := os.WriteFile(filepath.Join(dir, "ports"), list, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvHADir, dir)
	for range 50 {
		p := freePort(t)
		if p < portFloor || p >= eph {
			t.Fatalf("port %d outside [%d, %d)", p, portFloor, eph)
		}
		if p < portFloor+listed {
			t.Fatalf("port %d is listed", p)
		}
		if b := p - clusterBusOffset; b >= portFloor && b < portFloor+listed {
			t.Fatalf("port %d is the bus port of listed port %d", p, b)
		}
	}
}
