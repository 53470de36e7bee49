// Package lb picks pods for requests: round robin, smooth weighted round
// robin, least connections, least response time, power of two choices and
// Maglev consistent hashing, with an optional bounded-load cap, passive health
// checking (ejection with growing back-off) and slow start.
//
// A Balancer publishes its pod set as an immutable snapshot behind an atomic
// pointer; a pick reads it and writes one counter of the caller's processor,
// so picks never block, take no lock and allocate nothing, and picks on
// different cores share no written memory. Per-pod counters (picks, in-flight,
// response-time average, consecutive failures) outlive every snapshot.
//
//	b, err := lb.New(lb.Config{
//		Strategy: lb.P2C{},
//		Pods:     []lb.Pod{{Index: 0, Load: 12}, {Index: 1, Load: 3}},
//	})
//	if err != nil { ... }
//	defer b.Close()
//	r, err := b.Pick() // lb.ErrNoPod when no pod is eligible
//	if err != nil { ... }
//	start := time.Now()
//	err = call(r.Pod)
//	r.Done(lb.DoneInfo{Duration: time.Since(start), Err: err})
//
// The old API maps as: AddPod → Add, RemovePod → Remove, SelectPod → Pick,
// UpdatePodStats → UpdateStats, SetPodHealth → SetHealthy, GetStats → Stats.
//
// The package imports no Redis, metrics or tracing library; the engine feeds
// it the pod states it reads from Redis with Update.
package lb
