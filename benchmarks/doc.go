// Package benchmarks compares stickyroute with the libraries a user would
// pick instead, on the same workload in the same run. It is its own module,
// so that the peers (otter, ristretto, go-cache, go-redis, Kratos, grpc-go) never
// enter the dependencies of github.com/stickyroute/stickyroute.
//
// The benchmarks are in its test files; each states its goals next to it, as
// ratios against a peer measured in the same run, never as absolute times.
// make bench-check runs them briefly and fails when a goal is missed; make
// bench runs them longer and writes RESULTS.md.
package benchmarks
