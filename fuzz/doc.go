// Package fuzz holds the black-box property fuzzers of stickyroute: programs
// of random operations run through the public API only, each checked against
// a property the SPEC promises.
//
//   - FuzzStoreModel: the store's answers and contents equal those of a
//     simple in-memory model of SPEC §4, for any sequence of link operations
//     and clock jumps (on the embedded Redis).
//   - FuzzRouting: two engine clients on the real standalone Redis, while pods
//     change state and pods claim users: a pick for a new user is always an
//     eligible pod, a user stays on its pod while that pod is routable, and
//     once their caches settle the two clients never disagree on a user's pod.
//
// make fuzz FUZZTIME=1m runs every fuzz target of the repository; make test
// runs each briefly. A failing input is kept under testdata/fuzz/ and replays
// as part of go test from then on. The package has no non-test code.
package fuzz
