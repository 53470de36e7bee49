package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/stickyroute/stickyroute/lb"
	"github.com/stickyroute/stickyroute/store"
)

// DegradedPlacement says what ComputeLinkedPod does, while the store is
// unreachable, for a user it cannot answer from its cache.
type DegradedPlacement uint8

const (
	// FailFast (the zero value) returns an error matching
	// store.ErrUnavailable at once, without waiting on Redis.
	FailFast DegradedPlacement = iota
	// HashPlacement places the user by rendezvous hashing over the pods that
	// accepted new users at the last successful refresh: every client that
	// saw the same pods gives the same answer. The link is written once the
	// store is back, only if nobody linked the user meanwhile (see
	// ClientConfig.Degraded).
	HashPlacement
)

// String returns the placement's name.
func (p DegradedPlacement) String() string {
	switch p {
	case FailFast:
		return "fail-fast"
	case HashPlacement:
		return "hash"
	}
	return "unknown"
}

// DegradedConfig says how a Client behaves while the store is unreachable,
// from the moment a refresh of a service's pod states finds it so until one
// succeeds again. Unreachable is not slow: a refresh waits up to DetectAfter
// for Redis to answer, and Redis is unreachable when it does not answer in
// that time, or when two refreshes in a row fail without waiting for it
// (connection refused, reset or closed, or Redis answering that it cannot
// serve: LOADING, CLUSTERDOWN, MASTERDOWN, ...). A Redis that answers late
// is waited on, by the refreshes and by every call within its own context,
// and never puts the client in degraded mode.
//
// Meanwhile the client keeps serving what it knew: a user whose link is
// cached keeps being routed to that pod as long as the pod was routable at
// the last successful refresh, even past the cache TTL, for at most
// MaxStaleness after that refresh. A user it cannot answer from the cache
// gets what Placement says, at once: no call waits on an unreachable Redis
// beyond the refresh that found it so.
//
// When the store is back, the client (1) keeps the pods it kept alive
// routable for one staleness window more, so the pods have time to publish
// again (after a restart of Redis with empty data too); (2) writes the links
// of the users HashPlacement placed, with SetLinkedPodIfAbsent, so a link
// someone else wrote meanwhile is never overwritten (that user then follows
// the other link); (3) re-reads with tracking every cached link that was
// cached before tracking was lost, and drops those that changed.
type DegradedConfig struct {
	// MaxStaleness bounds how long after the last successful refresh an
	// outage keeps pods routable and cached links served. Zero means 30s; a
	// negative value turns this off (pods age out after Timing.Staleness
	// and cached links at their TTL, outage or not).
	MaxStaleness time.Duration
	// Placement is what happens to a user the cache cannot answer. Zero
	// means FailFast.
	Placement DegradedPlacement
	// MaxPending bounds the HashPlacement placements waiting for their link
	// to be written; beyond it a new user fails fast. Zero means 65,536.
	MaxPending int
	// DetectAfter is how long a refresh waits for Redis to answer before
	// Redis counts as unreachable; during an outage, a refresh answered
	// within it ends the outage. Zero means 3s, or 2 × Timing.Refresh when
	// that is longer; it must be at least 2 × Timing.Refresh.
	DetectAfter time.Duration
}

// DegradedStats counts what a Client did about outages since NewClient.
type DegradedStats struct {
	// Outages counts the times a service's refresh failed because the store
	// was unreachable after it had succeeded; Recoveries the times one
	// succeeded again after such a failure.
	Outages, Recoveries uint64
	// FailedFast counts ComputeLinkedPod calls answered with the
	// store-unavailable error without calling Redis.
	FailedFast uint64
	// Placed counts users placed by HashPlacement.
	Placed uint64
	// Pending is the number of those placements whose link is not written yet.
	Pending int
	// Reconciled counts placements whose link was written (or found pointing
	// at the same pod); Conflicts those whose user someone else linked to
	// another pod meanwhile (that link was kept); Abandoned those dropped
	// unwritten (older than the temporary link TTL, or refused by the store).
	Reconciled, Conflicts, Abandoned uint64
	// TrackingLost counts the times Redis reported tracking lost (a closed
	// connection, or flushed data), each starting a revalidation.
	TrackingLost uint64
	// Revalidated counts cached links a revalidation confirmed; Dropped the
	// ones it found changed or gone and dropped.
	Revalidated, Dropped uint64
}

// errStoreDown is what FailFast answers: it matches store.ErrUnavailable.
var errStoreDown = &store.UnavailableError{Op: "ComputeLinkedPod",
	Err: errors.New("engine: redis was unreachable at the latest state refresh (degraded mode)")}

// defaultDetectAfter is DegradedConfig.DetectAfter's default, unless 2 ×
// Refresh is longer.
const defaultDetectAfter = 3 * time.Second

// withDefaults fills and checks a DegradedConfig for a client refreshing
// every refresh.
func (d DegradedConfig) withDefaults(refresh time.Duration) (DegradedConfig, error) {
	switch {
	case d.DetectAfter == 0:
		d.DetectAfter = max(defaultDetectAfter, 2*refresh)
	case d.DetectAfter < 2*refresh:
		return d, configErr("ClientConfig.Degraded.DetectAfter", fmt.Sprintf("%v is below 2 × Timing.Refresh (%v)", d.DetectAfter, 2*refresh))
	}
	if d.MaxStaleness == 0 {
		d.MaxStaleness = 30 * time.Second
	}
	if d.Placement > HashPlacement {
		return d, configErr("ClientConfig.Degraded.Placement", fmt.Sprintf("%d is unknown", d.Placement))
	}
	if d.MaxPending < 0 {
		return d, configErr("ClientConfig.Degraded.MaxPending", fmt.Sprintf("%d is negative", d.MaxPending))
	}
	if d.MaxPending == 0 {
		d.MaxPending = 1 << 16
	}
	return d, nil
}

// degradedPolicy is what States needs of the client's DegradedConfig.
type degradedPolicy struct {
	// maxStale is MaxStaleness in ms; ≤ 0 when off.
	maxStale int64
	// recovered is called (from the refresher) when a service's refresh
	// succeeds after an outage.
	recovered func()
	// unreachable is called when a refresh finds the store unreachable.
	unreachable func()

	outages, recoveries atomic.Uint64
}

// outage is a service's time without a successful refresh, in local coarse ms.
type outage struct {
	// since is when the last successful refresh read the states; until is
	// since + MaxStaleness, when what it read stops being trusted.
	since, until int64
}

// carriedPod is a pod an outage kept alive, kept routable after it for one
// staleness window unless a fresh read shows it alive.
type carriedPod struct {
	pod   int
	flags uint8
	load  int64
}

// viewDegraded is a view's outage state.
type viewDegraded struct {
	// lastGood is the local time of the last successful load; 0 before.
	lastGood atomic.Int64
	// outage is set while the refreshes fail because the store is
	// unreachable. Read by cache hits on expired entries, without a lock.
	outage atomic.Pointer[outage]

	// carried, carriedUntil and fails are guarded by view.loadMu.
	carried      []carriedPod
	carriedUntil int64
	// fails counts the refreshes in a row that found the store unreachable.
	fails int
}

// outageAfter is how many refreshes in a row must fail without waiting
// (a refused or dropped connection, Redis saying it cannot serve) before
// the client declares an outage: one dropped connection, which the Redis
// client redials at once, is not one. A refresh that waited the whole
// detection window in vain declares it alone.
const outageAfter = 2

// down reports whether the service's store was unreachable at the latest refresh.
func (v *view) down() bool { return v.deg.outage.Load() != nil }

// servesStale reports whether a cache entry that expired at exp may still be
// served at now: its service is in an outage that began while the entry was
// live, and what the client knew then is still trusted.
func (v *view) servesStale(exp, now int64) bool {
	if v == nil {
		return false // a bare cache in tests
	}
	o := v.deg.outage.Load()
	return o != nil && exp > o.since && now < o.until
}

// loaded is the refresher's report of one load of v. waited says the
// refresh's own deadline (the detection window, or a period during an
// outage) ran out.
func (s *States) loaded(v *view, err error, waited bool) {
	if !unreachable(err, waited) || s.deg == nil {
		return
	}
	v.loadMu.Lock()
	defer v.loadMu.Unlock()
	v.deg.fails++
	if waited {
		// No answer for the whole window: unreachable now.
		v.deg.fails = max(v.deg.fails, outageAfter)
	}
	good := v.deg.lastGood.Load()
	if good == 0 || v.deg.outage.Load() != nil || v.deg.fails < outageAfter {
		return // nothing known yet, the outage is already recorded, or not yet one
	}
	o := &outage{since: good, until: good + s.deg.maxStale}
	v.deg.outage.Store(o)
	s.deg.outages.Add(1)
	if s.deg.unreachable != nil {
		s.deg.unreachable()
	}
	if s.deg.maxStale <= 0 {
		return
	}
	// The pods were alive at the last read and cannot have published since
	// (Redis is unreachable for them too): keep them as they were until
	// the outage is no longer trusted.
	old := v.snap.Load()
	if old == nil {
		return
	}
	ext := *old
	ext.aliveUntil = slices.Clone(old.aliveUntil)
	for pod, f := range ext.flags {
		if f != 0 && ext.aliveUntil[pod] >= good {
			ext.aliveUntil[pod] = max(ext.aliveUntil[pod], o.until)
		}
	}
	v.snap.Store(&ext)
}

// unreachable reports whether a refresh that failed with err says the store
// is unreachable: the store's own unavailability, but not a deadline unless
// the refresh waited out its whole window (waited): a slow answer is not an
// outage. A cancelled context (Close) is neither.
func unreachable(err error, waited bool) bool {
	if err == nil || !errors.Is(err, store.ErrUnavailable) {
		return false
	}
	return waited || !errors.Is(err, context.DeadlineExceeded)
}

// carry runs inside a successful load of v, with v.loadMu held, before snap
// is published: it ends an outage, and keeps the pods the outage kept alive
// routable (and accepting, as they were) for one staleness window from now,
// unless snap has fresh news of them. It returns the accepting pods to give
// the balancer.
func (s *States) carry(v *view, snap *podSnapshot, accepting []lb.Pod, local int64) []lb.Pod {
	v.deg.lastGood.Store(local)
	v.deg.fails = 0
	if s.deg == nil {
		return accepting
	}
	if v.deg.outage.Swap(nil) != nil {
		s.deg.recoveries.Add(1)
		v.deg.carried, v.deg.carriedUntil = nil, 0
		if prev := v.snap.Load(); prev != nil && s.deg.maxStale > 0 {
			loads := map[int]int64{}
			for _, p := range prev.Pods {
				loads[p.Pod] = p.Load
			}
			for pod, f := range prev.flags {
				if f != 0 && prev.aliveUntil[pod] >= local {
					v.deg.carried = append(v.deg.carried, carriedPod{pod: pod, flags: f, load: loads[pod]})
				}
			}
			v.deg.carriedUntil = local + s.timing.Staleness.Milliseconds()
		}
		if s.deg.recovered != nil {
			defer s.deg.recovered()
		}
	}
	if local >= v.deg.carriedUntil {
		v.deg.carried = nil
		return accepting
	}
	for _, c := range v.deg.carried {
		if c.pod < len(snap.flags) && local <= snap.aliveUntil[c.pod] {
			continue // it published again: the fresh state rules
		}
		if c.pod >= len(snap.flags) {
			snap.flags = append(snap.flags, make([]uint8, c.pod+1-len(snap.flags))...)
			snap.aliveUntil = append(snap.aliveUntil, make([]int64, c.pod+1-len(snap.aliveUntil))...)
		}
		snap.flags[c.pod] = c.flags
		snap.aliveUntil[c.pod] = v.deg.carriedUntil
		if c.flags&flagAccepting != 0 {
			accepting = append(accepting, lb.Pod{Index: c.pod, Load: c.load})
		}
	}
	return accepting
}

// hashPod returns the pod rendezvous hashing gives the user whose cache key
// hash is h, among the pods accepting at now, or NoPod. The hash depends on
// the namespace, service and uid only (xxhash, no seed), so every process
// that knows the same pods picks the same one.
func hashPod(snap *podSnapshot, h uint64, now int64) int {
	best, bestScore := NoPod, uint64(0)
	for pod := range snap.flags {
		if !snap.accepting(pod, now) {
			continue
		}
		if s := mix64(h ^ mix64(uint64(pod))); best == NoPod || s > bestScore {
			best, bestScore = pod, s
		}
	}
	return best
}
