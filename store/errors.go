package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// Sentinels matched with errors.Is. The typed errors below match them, so a
// caller can test the kind of failure without looking at strings.
var (
	// ErrInvalidArgument is matched by every *InvalidArgumentError.
	ErrInvalidArgument = errors.New("store: invalid argument")
	// ErrCorrupt is matched by every *CorruptError.
	ErrCorrupt = errors.New("store: corrupted value")
	// ErrUnavailable is matched by every *UnavailableError.
	ErrUnavailable = errors.New("store: unavailable")
	// ErrUnexpectedReply means Redis answered with a reply of a shape the
	// operation does not produce: a script of another version, a proxy in the way.
	ErrUnexpectedReply = errors.New("store: unexpected reply")
	// ErrClosed is returned by every operation of a closed store; the
	// engine's clients and servers return it after Close and Stop too
	// (engine.ErrClosed is the same value).
	ErrClosed = errors.New("stickyroute: closed")
)

// errNilContext is what an operation given a nil context returns.
var errNilContext = &InvalidArgumentError{Arg: "ctx", Reason: "nil context"}

// InvalidArgumentError rejects an argument before anything is sent to Redis.
type InvalidArgumentError struct {
	// Arg names the argument: "namespace", "uid", "uids[3]", "service", "pod", "ttl", ...
	Arg string
	// Reason says what is wrong with it.
	Reason string
}

func invalid(arg, reason string) error { return &InvalidArgumentError{Arg: arg, Reason: reason} }

// Error implements error.
func (e *InvalidArgumentError) Error() string {
	return "store: invalid argument " + e.Arg + ": " + e.Reason
}

// Is reports whether target is ErrInvalidArgument.
func (e *InvalidArgumentError) Is(target error) bool { return target == ErrInvalidArgument }

// CorruptError reports a value in Redis that the wire format does not allow:
// a link that is not a pod index, a state field that cannot be parsed, a key
// of the wrong type. It concerns that key only; nothing was written.
type CorruptError struct {
	// Key is the Redis key holding the value.
	Key string
	// Field is the hash field, for values inside a hash; empty otherwise.
	Field string
	// Value is the value found, or "(wrong type)" when the key is not of the
	// type the layout gives it.
	Value string
}

const wrongType = "(wrong type)"

// Error implements error.
func (e *CorruptError) Error() string {
	s := "store: corrupted value at key " + e.Key
	if e.Field != "" {
		s += " field " + e.Field
	}
	return s + ": " + quoteValue(e.Value)
}

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// quoteValue quotes v for an error message, cut to a readable length.
func quoteValue(v string) string {
	const max = 64
	if v == wrongType {
		return v
	}
	if len(v) > max {
		return strconv.Quote(v[:max]) + "..."
	}
	return strconv.Quote(v)
}

// UnavailableError reports that Redis could not be reached or could not serve
// the operation (connection refused or lost, deadline exceeded, cluster down,
// loading, out of memory, read-only replica). Nothing is known to be written.
type UnavailableError struct {
	// Op is the store operation that failed.
	Op string
	// Err is the error from the Redis client.
	Err error
}

// Error implements error.
func (e *UnavailableError) Error() string {
	return "store: " + e.Op + ": redis unavailable: " + e.Err.Error()
}

// Unwrap returns the client error, so errors.Is(err, context.DeadlineExceeded) works.
func (e *UnavailableError) Unwrap() error { return e.Err }

// Is reports whether target is ErrUnavailable.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// opError wraps an error that is neither of the above (a cancelled context, a
// script error): it keeps the operation's name and the cause.
type opError struct {
	op  string
	err error
}

// Error implements error.
func (e *opError) Error() string { return "store: " + e.op + ": " + e.err.Error() }

// Unwrap returns the cause.
func (e *opError) Unwrap() error { return e.err }

// classify turns an error from rueidis into the store's error kinds. key names
// the primary key of the operation, for a wrong-type reply.
func classify(op, key string, err error) error {
	if redisErr, ok := rueidis.IsRedisErr(err); ok {
		msg := redisErr.Error()
		switch {
		// Redis starts the message with WRONGTYPE; the embedded Redis wraps a
		// script's error in its own text, hence Contains.
		case strings.Contains(msg, "WRONGTYPE"):
			return &CorruptError{Key: key, Value: wrongType}
		case hasAnyPrefix(msg, "LOADING", "BUSY", "READONLY", "MASTERDOWN", "CLUSTERDOWN",
			"TRYAGAIN", "OOM", "NOREPLICAS", "MISCONF", "NOAUTH", "WRONGPASS"):
			return &UnavailableError{Op: op, Err: err}
		}
		return &opError{op: op, err: err}
	}
	// A caller that gave up is not a store failure: health tracking above the
	// store must not count it as one.
	if errors.Is(err, context.Canceled) {
		return &opError{op: op, err: err}
	}
	return &UnavailableError{Op: op, Err: err}
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// unexpected reports a reply of the wrong shape; what describes it.
func unexpected(op, what string) error {
	return &opError{op: op, err: fmt.Errorf("%w: %s", ErrUnexpectedReply, what)}
}
