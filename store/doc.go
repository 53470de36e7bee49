// Package store keeps sticky-routing links and pod states in Redis. A link
// says which pod of a service serves a user (uid); server pods publish their
// load and routing state. The layout is the Java framework's, so both can
// share one Redis:
//
//	K1 sf:{<ns>:lk:<uid>}<svc>     string: the linked pod (TTL when temporary)
//	K2 sf:{<ns>:lk:<uid>}          hash:   service → pod, persistent links only
//	K3 sf:{<ns>:state:<svc>}       hash:   pod → <load>-<updatedMillis>-<routing>
//	K4 sf:{<ns>:workload:<svc>}    string: <accepting>-<alive>-<updatedMillis>, with a TTL
//	K5 sf:{<ns>:state:<svc>}ctl    hash:   pod → routing state an operator requested
//
// K5 is this library's own (the Java framework ignores it): an operator's
// RequestRoutingState asks a pod to publish DenyNewCall or Shutdown, and the
// pod's PublishServiceState applies it in the same round trip as its K3 write.
//
// Every operation is one atomic round trip (a Lua script run by SHA, or one
// command) on a standalone Redis 7+, a Redis Cluster or the in-process Redis
// of package store/embedded:
//
//	s, err := store.Dial(store.DialConfig{Addrs: []string{"10.0.0.5:6379"}})
//	if err != nil { ... }
//	defer s.Close()
//	pod, err := s.GetLinkedPod(ctx, "game", "u42", "room") // NoPod when not linked
//
// A missing link is NoPod, never an error. Errors match ErrInvalidArgument
// (nothing was sent), ErrCorrupt (a value the format does not allow; that key
// only, nothing written) or ErrUnavailable. A Redis is safe for concurrent use.
package store
