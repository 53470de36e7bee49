// Command loadgen is stickyroute's capacity-testing tool: it simulates a
// fleet of server pods (engine.Server, each claiming users when their session
// starts and releasing them with a grace period when it ends) and client
// processes (engine.Client, each with its own cache), drives it with
// Zipf-popular users at an open-loop rate or a closed-loop concurrency, and
// reports latency percentiles (timed from each operation's intended start, in
// HDR histograms), errors by class, cache hit ratio, placement skew and the
// invariants of sticky routing, checked live.
//
// Scenarios: steady, storm (a login storm), drain (a pod goes DenyNewCall,
// then Shutdown), crash (a pod stops heartbeating), blip (the store is
// unreachable for a few seconds) and ramp (a search for the highest rate
// whose p99 stays within -slo: the capacity answer; with -floor, also the
// capacity with routing replaced by a fixed table, and their ratio).
//
// With no flags it runs for about 10 s on an embedded Redis:
//
//	go run ./cmd/loadgen
//	go run ./cmd/loadgen -redis 127.0.0.1:6379 -scenario ramp -floor
//	go run ./cmd/loadgen -scenario drain -json run.json -html run.html
//
// The exit status is 0 when the invariants held, 1 when one was violated and
// 2 on a usage or setup error.
package main
