package engine

import (
	"errors"
	"strconv"

	"github.com/stickyroute/stickyroute/store"
)

var (
	// ErrNoAvailablePod: no pod of the service accepts new users.
	ErrNoAvailablePod = errors.New("engine: no available pod")
	// ErrPodNotRoutable is matched by every *PodNotRoutableError.
	ErrPodNotRoutable = errors.New("engine: linked pod is not routable")
	// ErrClaimed is matched by every *ClaimedError.
	ErrClaimed = errors.New("engine: user is claimed by another pod")
	// ErrClosed: the client was closed, the server stopped, or the store
	// closed. It is store.ErrClosed, so either matches.
	ErrClosed = store.ErrClosed
	// ErrDraining: a pod being stopped (in its drain window) claims only
	// the users already linked to it.
	ErrDraining = errors.New("engine: the pod is draining: it claims only users linked to it")
)

// errNilContext is what a method given a nil context returns.
var errNilContext = &store.InvalidArgumentError{Arg: "ctx", Reason: "nil context"}

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

// ConfigError rejects a setting of a ClientConfig or ServerConfig before
// anything is started. It matches store.ErrInvalidArgument, like the errors
// of bad arguments.
type ConfigError struct {
	// Field names the setting: "ClientConfig.Cache.TTL", "Timing.Refresh", ...
	Field string
	// Reason says what is wrong with it.
	Reason string
}

func configErr(field, reason string) error { return &ConfigError{Field: field, Reason: reason} }

// Error implements error.
func (e *ConfigError) Error() string { return "engine: " + e.Field + ": " + e.Reason }

// Is reports whether target is store.ErrInvalidArgument.
func (e *ConfigError) Is(target error) bool { return target == store.ErrInvalidArgument }
