// Package embedded runs an in-process Redis (miniredis) for the store: zero
// setup, for examples, tests, demos and the load generator. Its data lives
// only as long as the process, it has no client tracking (cached links live by
// their TTL alone) and it is not a Redis Cluster; production code dials a real
// Redis with store.Dial and links none of this package.
//
// It is a package of its own so that choosing it is explicit: store.Dial
// without an address is an error, not a private Redis nobody else sees.
//
//	s, err := embedded.Dial(store.DialConfig{}) // store.Dial with an embedded Redis it owns
//	if err != nil { ... }
//	defer s.Close() // stops the embedded Redis too
//
// MustDial, which panics instead of returning an error, keeps examples and
// tests short.
package embedded
