package store

import (
	"errors"
	"strconv"
)

// WorkloadStatus is the typed state of a whole service (SPEC §3.3). The zero
// value is unknown.
type WorkloadStatus uint8

const (
	// WorkloadUnknown: the key is missing, expired or unparsable.
	WorkloadUnknown WorkloadStatus = iota
	// WorkloadReady: at least one pod accepts new users.
	WorkloadReady
	// WorkloadDraining: pods are alive but none accepts new users.
	WorkloadDraining
	// WorkloadDown: no pod is alive.
	WorkloadDown
)

// String returns the status's name.
func (s WorkloadStatus) String() string {
	switch s {
	case WorkloadReady:
		return "Ready"
	case WorkloadDraining:
		return "Draining"
	case WorkloadDown:
		return "Down"
	}
	return "Unknown"
}

// WorkloadState is the decoded K4 value: <acceptingPods>-<alivePods>-<updatedMillis>.
type WorkloadState struct {
	// Status is derived from the counts; WorkloadUnknown when nothing was read.
	Status WorkloadStatus
	// Accepting is the number of alive Ready pods.
	Accepting int
	// Alive is the number of alive pods.
	Alive int
	// Updated is the write time in Unix milliseconds of the Redis server's clock.
	Updated int64
}

// Ready reports whether the workload takes new users ("is the workload ready").
func (w WorkloadState) Ready() bool { return w.Status == WorkloadReady }

var errWorkloadValue = errors.New("store: not a workload-state value")

// workloadStatus derives the status from the counts.
func workloadStatus(accepting, alive int) WorkloadStatus {
	switch {
	case accepting > 0:
		return WorkloadReady
	case alive > 0:
		return WorkloadDraining
	}
	return WorkloadDown
}

// AppendWorkloadValue appends the wire form of w to dst (its Status is derived, not written).
func AppendWorkloadValue(dst []byte, w WorkloadState) []byte {
	dst = strconv.AppendInt(dst, int64(max(w.Accepting, 0)), 10)
	dst = append(dst, '-')
	dst = strconv.AppendInt(dst, int64(max(w.Alive, 0)), 10)
	dst = append(dst, '-')
	return strconv.AppendInt(dst, max(w.Updated, 0), 10)
}

// ParseWorkloadValue decodes a K4 value. Three non-negative decimal integers
// are required, with accepting ≤ alive; anything else is an error.
func ParseWorkloadValue(s string) (WorkloadState, error) {
	second := lastDash(s, len(s))
	first := lastDash(s, max(second, 0))
	if first <= 0 {
		return WorkloadState{}, errWorkloadValue
	}
	accepting, ok1 := parseUint63(s[:first])
	alive, ok2 := parseUint63(s[first+1 : second])
	updated, ok3 := parseUint63(s[second+1:])
	if !ok1 || !ok2 || !ok3 || accepting > alive || alive > MaxPod {
		return WorkloadState{}, errWorkloadValue
	}
	return WorkloadState{
		Status:    workloadStatus(int(accepting), int(alive)),
		Accepting: int(accepting),
		Alive:     int(alive),
		Updated:   updated,
	}, nil
}
