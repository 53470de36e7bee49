package engine

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/stickyroute/stickyroute/lb"
	"github.com/stickyroute/stickyroute/store"
)

// PodState is one pod of a service as a client sees it.
type PodState struct {
	// Pod is the pod index.
	Pod int
	// Load is the load the pod published.
	Load int64
	// Routing is the routing state the pod published.
	Routing RoutingState
	// Updated is when the pod last published, in Unix ms of the Redis server's clock.
	Updated int64
	// Alive: the state is younger than the staleness window (server clock).
	Alive bool
	// Routable: alive and Ready or DenyNewCall; a linked user may be sent there.
	Routable bool
	// Accepting: alive and Ready; a new user may be placed there.
	Accepting bool
}

// ServiceSnapshot is the state of a service's pods at one refresh. It is
// immutable; a refresh replaces it whole.
type ServiceSnapshot struct {
	// Namespace and Service name the service.
	Namespace, Service string
	// Pods are the pods that published a parsable state, sorted by index.
	Pods []PodState
	// ServerTime is the Redis server's clock when the states were read (Unix ms).
	ServerTime int64
	// Skipped counts state fields that could not be parsed.
	Skipped int
}

// podSnapshot is a ServiceSnapshot laid out for the hot path.
type podSnapshot struct {
	ServiceSnapshot
	// flags[pod] holds the pod's routable/accepting bits; pods beyond the
	// slice are unknown, so not routable.
	flags []uint8
	// aliveUntil[pod] is when the pod stops being alive without a new
	// heartbeat, in Unix ms of the local coarse clock: the snapshot's server
	// time translated to the moment it was read, or the earlier end an
	// earlier snapshot gave the same heartbeat (see earliest).
	aliveUntil []int64
}

const (
	flagRoutable uint8 = 1 << iota
	flagAccepting
)

// routable reports whether pod may receive a linked user at local time now.
func (p *podSnapshot) routable(pod int, now int64) bool { return p.has(pod, flagRoutable, now) }

// accepting reports whether pod may receive a new user at local time now.
func (p *podSnapshot) accepting(pod int, now int64) bool { return p.has(pod, flagAccepting, now) }

// has reports whether pod carries flag and is alive at local time now.
func (p *podSnapshot) has(pod int, flag uint8, now int64) bool {
	return pod >= 0 && pod < len(p.flags) && p.flags[pod]&flag != 0 && now <= p.aliveUntil[pod]
}

// earliest returns until, or the earlier end of life p gave pod when it
// read the same heartbeat (updated) before. p may be nil.
func (p *podSnapshot) earliest(pod int, updated, until int64) int64 {
	if p == nil || pod >= len(p.aliveUntil) {
		return until
	}
	i, ok := slices.BinarySearchFunc(p.Pods, pod, func(s PodState, pod int) int { return cmp.Compare(s.Pod, pod) })
	if !ok || p.Pods[i].Updated != updated {
		return until
	}
	return min(until, p.aliveUntil[pod])
}

// routable reports whether a linked user may be sent to pod at local time
// now: per the latest snapshot or, while a refresh is waiting for Redis, per
// what that snapshot said when the refresh began. A slow Redis then does not
// age the pods out while the client waits for their news (a refresh that
// waits out the detection window declares an outage, which keeps them
// longer; see DegradedConfig).
func (v *view) routable(pod int, now int64) bool { return v.has(pod, flagRoutable, now) }

// accepting is routable for a new user.
func (v *view) accepting(pod int, now int64) bool { return v.has(pod, flagAccepting, now) }

// has is routable and accepting, for their flag. The second check runs only
// on a miss.
func (v *view) has(pod int, flag uint8, now int64) bool {
	p := v.snap.Load()
	if p.has(pod, flag, now) {
		return true
	}
	since := v.waiting.Load()
	return since != 0 && p.has(pod, flag, since)
}

// view is the pod-state view of one service: a snapshot swapped whole at
// every refresh, and the balancer that places new users there.
type view struct {
	svc  *service
	snap atomic.Pointer[podSnapshot]
	// loadedAt is the local time of the latest successful load; 0 before.
	loadedAt atomic.Int64
	// waiting is when the refresher's refresh in progress began (local
	// ms), 0 when none is: see routable.
	waiting atomic.Int64
	// loadMu serializes loads (the refresher's and on-demand ones).
	loadMu sync.Mutex
	// bal places new users; its picks in flight are the placements of
	// placed (placement.go).
	bal    *lb.Balancer
	placed ledger
}

// NoPod is the pod index meaning "no pod". Pod 0 is a normal pod.
const NoPod = store.NoPod
