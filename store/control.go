package store

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
)

// Operator control (SPEC §7): K5, sf:{<ns>:state:<svc>}ctl, holds per pod the
// routing state an operator asked the pod to publish instead of its own
// (DenyNewCall to drain it, Shutdown to take it out). A pod's publish
// (PublishServiceState) reads its field in the same round trip and writes
// the more restrictive of the two states; removing the field restores the
// pod's own state at its next publish. The Java framework neither reads nor
// writes K5, and SetServiceState ignores it.

// Published is what PublishServiceState wrote.
type Published struct {
	// Updated is the stamp of the write, in Unix milliseconds of the Redis
	// server's clock.
	Updated int64
	// Routing is the routing state written to K3: the more restrictive of
	// the pod's own state and Requested (Shutdown > DenyNewCall > Ready).
	Routing RoutingState
	// Requested is the operator's request read from K5 and applied,
	// DenyNewCall or Shutdown; RoutingUnknown when there was none.
	Requested RoutingState
	// Ignored, when not nil, is the K5 value that was found but is not a
	// request the layout allows (Value "(wrong type)" when K5 itself is not
	// a hash). It was treated as no request: the pod published its own
	// state, and the caller reports the value.
	Ignored *CorruptError
}

// The status the publish script answers about the request it read.
const (
	requestNone      = 0
	requestApplied   = 1
	requestCorrupt   = 2
	requestWrongType = 3
)

// PublishServiceState is the publish of a pod itself (engine.Server's): it
// writes pod's load and routing state for svc like SetServiceState, except
// that it reads the operator's request for pod (K5, see RequestRoutingState)
// in the same round trip and publishes the more restrictive of routing and
// the request. routing stays the pod's own state; the request only changes
// what is written. A K5 value that is not a request never fails the
// publish: it is reported in Published.Ignored and the pod's own state is
// written.
func (r *Redis) PublishServiceState(ctx context.Context, ns, svc string, pod, load int, routing RoutingState) (Published, error) {
	const op = "PublishServiceState"
	if err := r.serviceCall(ctx, ns, svc); err != nil {
		return Published{}, err
	}
	if err := validPod("pod", pod); err != nil {
		return Published{}, err
	}
	if load < 0 {
		return Published{}, invalid("load", strconv.Itoa(load)+" is negative")
	}
	w, ok := routing.wire()
	if !ok {
		return Published{}, invalid("routing", routing.String()+" is not Ready, DenyNewCall or Shutdown")
	}
	key, ctl := StateKey(ns, svc), ControlKey(ns, svc)
	arr, err := r.run(ctx, op, scriptPublishState, []string{key, ctl},
		[]string{strconv.Itoa(pod), strconv.Itoa(load), string(w)})
	if err != nil {
		return Published{}, err
	}
	const shape = "reply is not {stamp, routing, status, request}"
	if len(arr) != 4 {
		return Published{}, unexpected(op, shape)
	}
	ms, err1 := arr[0].ToString()
	written, err2 := arr[1].ToString()
	status, err3 := arr[2].AsInt64()
	raw, err4 := arr[3].ToString()
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return Published{}, unexpected(op, shape)
	}
	var p Published
	if p.Updated, ok = parseUint63(ms); !ok {
		return Published{}, unexpected(op, "stamp "+strconv.Quote(ms)+" is not a time")
	}
	if p.Routing, ok = routingFromWire(written); !ok {
		return Published{}, unexpected(op, "routing "+strconv.Quote(written)+" is not a routing state")
	}
	field := strconv.Itoa(pod)
	switch status {
	case requestNone:
	case requestApplied:
		if p.Requested, ok = parseRequest(raw); !ok {
			return Published{}, unexpected(op, "applied request "+strconv.Quote(raw)+" is not a request")
		}
	case requestCorrupt:
		p.Ignored = &CorruptError{Key: ctl, Field: field, Value: raw}
	case requestWrongType:
		p.Ignored = &CorruptError{Key: ctl, Value: wrongType}
	default:
		return Published{}, unexpected(op, "request status "+strconv.FormatInt(status, 10)+" is unknown")
	}
	return p, nil
}

// RequestRoutingState records an operator's request (K5) that pod of svc
// publish state, DenyNewCall (drain: existing users stay, no new ones come)
// or Shutdown (take nobody), whatever its own state. The pod applies it at
// its next publish, within one heartbeat period, and keeps applying it until
// ClearRoutingRequest. Ready is not a request: a pod publishes the more
// restrictive of its own state and the request, so withdrawing the request
// (ClearRoutingRequest) is what lets it take users again.
func (r *Redis) RequestRoutingState(ctx context.Context, ns, svc string, pod int, state RoutingState) error {
	const op = "RequestRoutingState"
	if err := r.serviceCall(ctx, ns, svc); err != nil {
		return err
	}
	if err := validPod("pod", pod); err != nil {
		return err
	}
	switch state {
	case DenyNewCall, Shutdown:
	case Ready:
		return invalid("state", "Ready is not a request: ClearRoutingRequest withdraws a request and restores the pod's own state")
	default:
		return invalid("state", state.String()+" is not DenyNewCall or Shutdown")
	}
	w, _ := state.wire()
	key := ControlKey(ns, svc)
	err := r.client.Do(ctx, r.client.B().Hset().Key(key).FieldValue().
		FieldValue(strconv.Itoa(pod), string(w)).Build()).Error()
	if err != nil {
		return classify(op, key, err)
	}
	return nil
}

// ClearRoutingRequest withdraws the operator's request for pod of svc, if
// any: the pod publishes its own routing state again at its next publish.
// It answers whether there was a request (a value that was not one counts).
func (r *Redis) ClearRoutingRequest(ctx context.Context, ns, svc string, pod int) (bool, error) {
	return r.removePodField(ctx, "ClearRoutingRequest", ns, svc, pod, ControlKey)
}

// RoutingRequests reads every operator request of svc (K5): pod → DenyNewCall
// or Shutdown. A service without requests answers an empty map. Fields the
// pods would not apply (a field that is not a canonical pod index, a value
// that is not a request) are left out of the map and returned beside it as
// *CorruptError values joined in err, sorted by field; a K5 that is not a
// hash is a *CorruptError and a nil map.
func (r *Redis) RoutingRequests(ctx context.Context, ns, svc string) (map[int]RoutingState, error) {
	const op = "RoutingRequests"
	if err := r.serviceCall(ctx, ns, svc); err != nil {
		return nil, err
	}
	key := ControlKey(ns, svc)
	fields, err := r.client.Do(ctx, r.client.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		return nil, classify(op, key, err)
	}
	out := make(map[int]RoutingState, len(fields))
	var bad []*CorruptError
	for f, v := range fields {
		pod, okPod := parsePod(f)
		state, okState := parseRequest(v)
		// The pod reads the field named by its canonical index only: "03"
		// would never be applied, so it is not reported as a request.
		if !okPod || !okState || strconv.Itoa(pod) != f {
			bad = append(bad, &CorruptError{Key: key, Field: f, Value: v})
			continue
		}
		out[pod] = state
	}
	slices.SortFunc(bad, func(a, b *CorruptError) int { return cmp.Compare(a.Field, b.Field) })
	errs := make([]error, len(bad))
	for i, e := range bad {
		errs[i] = e
	}
	return out, errors.Join(errs...)
}

// parseRequest decodes a K5 value: the routing digit of a pod state ("2"
// DenyNewCall, "0" Shutdown), but never Ready, which an operator does not
// request.
func parseRequest(s string) (RoutingState, bool) {
	state, ok := routingFromWire(s)
	if !ok || state == Ready {
		return RoutingUnknown, false
	}
	return state, true
}
