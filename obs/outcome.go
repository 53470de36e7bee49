package obs

import (
	"context"
	"errors"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/store"
)

// The outcomes an operation is counted under (the "outcome" label), from
// Outcome. The set is closed, so label sets stay bounded.
const (
	OutcomeOK           = "ok"
	OutcomeNotFound     = "not_found"
	OutcomeCanceled     = "canceled"
	OutcomeTimeout      = "timeout"
	OutcomeUnavailable  = "unavailable"
	OutcomeInvalid      = "invalid_argument"
	OutcomeCorrupt      = "corrupt"
	OutcomeNotRoutable  = "not_routable"
	OutcomeNoPod        = "no_available_pod"
	OutcomeClaimed      = "claimed"
	OutcomeDraining     = "draining"
	OutcomeClosed       = "closed"
	OutcomeOtherFailure = "error"
)

// lookups are the operations whose answer may be "no link", which is not an
// error.
var lookups = map[string]bool{
	"GetLinkedPod":                   true,
	"GetLinkedPodNotCache":           true,
	"GetLinkedPodInCacheOrIfPersist": true,
}

// Outcome classifies an ended operation: OutcomeOK, OutcomeNotFound for a
// lookup that found no link, or the class of its error.
func Outcome(op *engine.Op) string {
	if op.Err == nil {
		if op.Kind == engine.OpCall && op.Pod == engine.NoPod && lookups[op.Name] {
			return OutcomeNotFound
		}
		return OutcomeOK
	}
	return ErrorClass(op.Err)
}

// errorClasses are the errors ErrorClass matches, first match wins.
var errorClasses = []struct {
	err   error
	class string
}{
	{context.Canceled, OutcomeCanceled},
	{context.DeadlineExceeded, OutcomeTimeout},
	{store.ErrUnavailable, OutcomeUnavailable},
	{store.ErrInvalidArgument, OutcomeInvalid},
	{store.ErrCorrupt, OutcomeCorrupt},
	{engine.ErrPodNotRoutable, OutcomeNotRoutable},
	{engine.ErrNoAvailablePod, OutcomeNoPod},
	{engine.ErrClaimed, OutcomeClaimed},
	{engine.ErrDraining, OutcomeDraining},
	{engine.ErrClosed, OutcomeClosed},
}

// ErrorClass names the class of a non-nil error from the engine or the store:
// one of the Outcome constants.
func ErrorClass(err error) string {
	for _, c := range errorClasses {
		if errors.Is(err, c.err) {
			return c.class
		}
	}
	return OutcomeOtherFailure
}

// isFailure reports whether an outcome is a failure of the operation, as
// opposed to an answer (not found, claimed by another pod) or the caller
// giving up (canceled).
func isFailure(outcome string) bool {
	switch outcome {
	case OutcomeOK, OutcomeNotFound, OutcomeCanceled, OutcomeClaimed, OutcomeDraining:
		return false
	}
	return true
}
