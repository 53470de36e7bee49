// Package store keeps sticky-routing links and pod states in Redis.
//
// A link says which pod of a service serves a user (uid). Server pods publish
// their load and routing state; clients read them to place new users. The
// layout is the Java framework's, so both can share one Redis:
//
//	K1 sf:{<ns>:lk:<uid>}<svc>     string: the linked pod (TTL when temporary)
//	K2 sf:{<ns>:lk:<uid>}          hash:   service → pod, persistent links only
//	K3 sf:{<ns>:state:<svc>}       hash:   pod → <load>-<updatedMillis>-<routing>
//	K4 sf:{<ns>:workload:<svc>}    string: <accepting>-<alive>-<updatedMillis>, with a TTL
//
// The uid bytes '{', '}' and '%' are written as %7B, %7D and %25, so no uid can
// break a key and the two link keys of a uid always share a cluster slot.
//
// Every operation is one round trip and atomic: a Lua script run by SHA (sent
// again transparently after SCRIPT FLUSH) or a single command. They work
// unchanged on a standalone Redis, a Redis Cluster and the in-process Redis of
// package store/embedded (for examples and tests). Redis 7.0 or newer is
// required.
//
// Use:
//
//	s, err := store.Dial(store.DialConfig{Addrs: []string{"10.0.0.5:6379"}}) // or embedded.Dial(store.DialConfig{})
//	if err != nil { ... }
//	defer s.Close()
//	prev, err := s.SetLinkedPod(ctx, "game", "u42", "room", 3, store.Persistent)
//	pod, err := s.GetLinkedPod(ctx, "game", "u42", "room") // 3; store.NoPod when not linked
//
// Or over a client the application built: store.New(client).
//
// Errors: a missing link is NoPod (-1), never an error. Bad arguments are
// *InvalidArgumentError (nothing is sent), values Redis holds that the format
// does not allow are *CorruptError (for that key only; nothing is written), and
// a Redis that cannot be reached or cannot serve is *UnavailableError. Match
// them with errors.Is against ErrInvalidArgument, ErrCorrupt and ErrUnavailable.
//
// A Redis is safe for concurrent use by many goroutines.
package store
