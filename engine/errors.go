package engine

import (
	"errors"
	"strconv"
)

var (
	// ErrNoAvailablePod: no pod of the service accepts new users.
	ErrNoAvailablePod = errors.New("engine: no available pod")
	// ErrPodNotRoutable is matched by every *PodNotRoutableError.
	ErrPodNotRoutable = errors.New("engine: linked pod is not routable")
	// ErrClaimed is matched by every *ClaimedError.
	ErrClaimed = errors.New("engine: user is claimed by another pod")
	// ErrClosed: the client or server was closed.
	ErrClosed = errors.New("engine: closed")
)

// PodNotRoutableError reports a persistent link to a pod that is not
// routable (Shutdown, stale or unknown) which the relink policy does not move.
type PodNotRoutableError struct {
	// Pod is the linked pod.
	Pod int
}

// Error implements error.
func (e *PodNotRoutableError) Error() string {
	return "engine: linked pod " + strconv.Itoa(e.Pod) + " is not routable"
}

// Is reports whether target is ErrPodNotRoutable.
func (e *PodNotRoutableError) Is(target error) bool { return target == ErrPodNotRoutable }

// ClaimedError reports a TrySetLinkedPod refused because another pod holds
// the user's persistent link.
type ClaimedError struct {
	// Owner is the pod holding the link.
	Owner int
}

// Error implements error.
func (e *ClaimedError) Error() string {
	return "engine: user is claimed by pod " + strconv.Itoa(e.Owner)
}

// Is reports whether target is ErrClaimed.
func (e *ClaimedError) Is(target error) bool { return target == ErrClaimed }
