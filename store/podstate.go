package store

import (
	"errors"
	"strconv"
)

// RoutingState says whether a pod takes users. The zero value is unknown.
type RoutingState uint8

const (
	// RoutingUnknown is the zero value: no state was read.
	RoutingUnknown RoutingState = iota
	// Ready: the pod takes new and existing users (wire value 1).
	Ready
	// DenyNewCall: the pod keeps its existing users and takes no new ones (wire value 2).
	DenyNewCall
	// Shutdown: the pod takes nobody (wire value 0).
	Shutdown
)

// String returns the state's name.
func (s RoutingState) String() string {
	switch s {
	case Ready:
		return "Ready"
	case DenyNewCall:
		return "DenyNewCall"
	case Shutdown:
		return "Shutdown"
	}
	return "Unknown"
}

// wire returns the digit the Java framework's availability flag uses for s.
func (s RoutingState) wire() (byte, bool) {
	switch s {
	case Ready:
		return '1', true
	case DenyNewCall:
		return '2', true
	case Shutdown:
		return '0', true
	}
	return 0, false
}

// routingFromWire decodes a routing digit of the pod-state value.
func routingFromWire(s string) (RoutingState, bool) {
	switch s {
	case "1":
		return Ready, true
	case "2":
		return DenyNewCall, true
	case "0":
		return Shutdown, true
	}
	return RoutingUnknown, false
}

// StateValue is a decoded pod-state value (a K3 field value, SPEC §3.2):
// <load>-<updatedMillis>-<routing>.
type StateValue struct {
	// Load is the published load, ≥ 0 (a negative load read from Redis is clamped to 0).
	Load int
	// Updated is when the pod last published, in Unix milliseconds of the
	// Redis server's clock.
	Updated int64
	// Routing is the published routing state.
	Routing RoutingState
}

// errStateValue is returned by ParseStateValue; callers that keep the field
// name build a *CorruptError from it.
var errStateValue = errors.New("store: not a pod-state value")

// AppendStateValue appends the wire form of v to dst. A load below zero is
// written as 0 and an unknown routing state as Shutdown, the safe reading.
func AppendStateValue(dst []byte, v StateValue) []byte {
	dst = strconv.AppendInt(dst, int64(max(v.Load, 0)), 10)
	dst = append(dst, '-')
	dst = strconv.AppendInt(dst, max(v.Updated, 0), 10)
	dst = append(dst, '-')
	w, ok := v.Routing.wire()
	if !ok {
		w, _ = Shutdown.wire()
	}
	return append(dst, w)
}

// ParseStateValue decodes a pod-state value. It reads from the right, accepts
// the legacy two-part form <load>-<updatedMillis> as Ready, clamps a negative
// load to 0, and returns an error for anything else (it never panics).
func ParseStateValue(s string) (StateValue, error) {
	last := lastDash(s, len(s))
	if last <= 0 {
		return StateValue{}, errStateValue
	}
	head, tail := s[:last], s[last+1:]
	routing := Ready
	loadStr, updatedStr := head, tail
	// Three parts when the head itself splits into <load>-<updated>, with a
	// non-empty load (which may carry its own minus sign).
	if mid := lastDash(head, len(head)); mid > 0 {
		loadStr, updatedStr = head[:mid], head[mid+1:]
		var ok bool
		if routing, ok = routingFromWire(tail); !ok {
			return StateValue{}, errStateValue
		}
	}
	load, ok := parseLoad(loadStr)
	if !ok {
		return StateValue{}, errStateValue
	}
	updated, ok := parseUint63(updatedStr)
	if !ok {
		return StateValue{}, errStateValue
	}
	return StateValue{Load: load, Updated: updated, Routing: routing}, nil
}

// lastDash returns the index of the last '-' in s[:end], or -1.
func lastDash(s string, end int) int {
	for i := end - 1; i >= 0; i-- {
		if s[i] == '-' {
			return i
		}
	}
	return -1
}

// parseLoad reads an optionally negative decimal integer; negative loads are
// clamped to 0 as SPEC §3.2 asks.
func parseLoad(s string) (int, bool) {
	neg := false
	if len(s) > 0 && s[0] == '-' {
		neg, s = true, s[1:]
	}
	n, ok := parseUint63(s)
	if !ok {
		return 0, false
	}
	if neg {
		return 0, true
	}
	return int(n), true
}

// parseUint63 reads a non-empty run of decimal digits that fits an int64.
func parseUint63(s string) (int64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i] - '0'
		if c > 9 {
			return 0, false
		}
		n = n*10 + uint64(c)
	}
	if n > 1<<63-1 {
		return 0, false
	}
	return int64(n), true
}

// PodState is one pod's published state.
type PodState struct {
	// Pod is the pod index.
	Pod int
	StateValue
}

// ServiceState is every pod state of one service, with the Redis server's
// clock read in the same round trip, so liveness can be judged as
// Now - Updated without trusting the reader's clock.
type ServiceState struct {
	// Pods are the parsed pod states, sorted by pod index.
	Pods []PodState
	// Now is the Redis server's time when the states were read, in Unix milliseconds.
	Now int64
	// Skipped lists the hash fields that could not be parsed (a bad pod index
	// or a bad value); they are left out of Pods. Callers count them in a metric.
	Skipped []CorruptError
}
