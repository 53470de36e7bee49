package stickygrpc

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stickyroute/stickyroute/store"
)

// RouteError is returned by the interceptors, before anything is sent, when
// the engine cannot route a call's user. It unwraps to the engine's error
// (errors.Is(err, engine.ErrPodNotRoutable), engine.ErrNoAvailablePod, a
// store error, a context error) and carries a gRPC status, so status.Code
// reports Unavailable (Canceled, DeadlineExceeded or InvalidArgument where
// those fit).
type RouteError struct {
	// UID is the call's user.
	UID string
	// Pod is the pod the user is linked to when the engine named it (a
	// persistent link to a pod that is not routable), else engine.NoPod.
	Pod int
	// Err is the engine's error.
	Err error
}

// Error implements error.
func (e *RouteError) Error() string { return "stickygrpc: cannot route the call: " + e.Err.Error() }

// Unwrap returns the engine's error.
func (e *RouteError) Unwrap() error { return e.Err }

// GRPCStatus returns the status the call fails with.
func (e *RouteError) GRPCStatus() *status.Status { return status.New(Code(e.Err), e.Error()) }

// Code maps an engine or store error to the gRPC code a call fails with:
// context errors keep their meaning, invalid arguments are InvalidArgument,
// everything else (no pod, pod not routable, Redis unavailable) Unavailable.
func Code(err error) codes.Code {
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, store.ErrInvalidArgument):
		return codes.InvalidArgument
	}
	return codes.Unavailable
}
