package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v4"

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

// degraded is a Client's degraded mode, whole: its settings and counters,
// each service's outage state, the placements an outage made that wait to
// be written (reconcile.go), the revalidation owed after tracking was lost,
// and the goroutine that does both. The Client owns it; its States reports
// every refresh to it (loaded, carry), and its cache asks it whether an
// expired entry may still be served (servesStale).
type degraded struct {
	cfg DegradedConfig
	// maxStale is MaxStaleness in ms (≤ 0: off); carryFor is
	// Timing.Staleness in ms, how long the pods an outage kept alive stay
	// routable after it.
	maxStale, carryFor int64

	// services holds each service's outage state, from its first refresh
	// on; ndown counts the services in an outage, so that the cache reads
	// the map only during one.
	services *xsync.Map[*service, *svcOutage]
	ndown    atomic.Int32

	pending  *xsync.Map[uint64, pendingLink]
	npending atomic.Int64

	// lost is the local time of the latest tracking loss; revalidated the
	// loss the latest complete revalidation covered (only the worker
	// writes it).
	lost, revalidated atomic.Int64

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup

	outages, recoveries                                  atomic.Uint64
	failedFast, placed, reconciled, conflicts, abandoned atomic.Uint64
	trackingLost, confirmed, dropped                     atomic.Uint64
}

// newDegraded returns the degraded mode of a client configured with cfg
// (defaulted) and staleness; its worker starts with start.
func newDegraded(cfg DegradedConfig, staleness time.Duration) *degraded {
	return &degraded{
		cfg:      cfg,
		maxStale: cfg.MaxStaleness.Milliseconds(),
		carryFor: staleness.Milliseconds(),
		services: xsync.NewMap[*service, *svcOutage](),
		pending:  xsync.NewMap[uint64, pendingLink](),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
}

// wake asks the worker for a round now.
func (d *degraded) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
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

// svcOutage is one service's outage state.
type svcOutage struct {
	// outage is set while the refreshes fail because the store is
	// unreachable. Read by cache hits on expired entries, without a lock.
	outage atomic.Pointer[outage]

	// carried, carriedUntil and fails are guarded by the view's loadMu.
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

// service returns sv's outage state, creating it on first use.
func (d *degraded) service(sv *service) *svcOutage {
	o, _ := d.services.LoadOrCompute(sv, func() (*svcOutage, bool) { return &svcOutage{}, false })
	return o
}

// current returns the outage sv is in, or nil. It takes no lock and
// allocates nothing.
func (d *degraded) current(sv *service) *outage {
	if d == nil || d.ndown.Load() == 0 {
		return nil
	}
	if st, ok := d.services.Load(sv); ok {
		return st.outage.Load()
	}
	return nil
}

// down reports whether sv's store was unreachable at the latest refresh.
func (d *degraded) down(sv *service) bool { return d.current(sv) != nil }

// servesStale reports whether a cache entry of sv that expired at exp may
// still be served at now: its service is in an outage that began while the
// entry was live, and what the client knew then is still trusted. A nil d
// (a bare cache in tests) serves nothing stale.
func (d *degraded) servesStale(sv *service, exp, now int64) bool {
	o := d.current(sv)
	return o != nil && exp > o.since && now < o.until
}

// loaded is the refresher's report of one load of v. waited says the
// refresh's own deadline (the detection window, or a period during an
// outage) ran out.
func (d *degraded) loaded(v *view, err error, waited bool) {
	if !unreachable(err, waited) {
		return
	}
	v.loadMu.Lock()
	defer v.loadMu.Unlock()
	st := d.service(v.svc)
	st.fails++
	if waited {
		// No answer for the whole window: unreachable now.
		st.fails = max(st.fails, outageAfter)
	}
	good := v.loadedAt.Load()
	if good == 0 || st.outage.Load() != nil || st.fails < outageAfter {
		return // nothing known yet, the outage is already recorded, or not yet one
	}
	o := &outage{since: good, until: good + d.maxStale}
	d.ndown.Add(1) // before the store: current must not miss the outage
	st.outage.Store(o)
	d.outages.Add(1)
	if d.maxStale <= 0 {
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

// carry runs inside a successful load of v at local, with v.loadMu held,
// before snap is published: it ends an outage, and keeps the pods the outage kept alive
// routable (and accepting, as they were) for one staleness window from now,
// unless snap has fresh news of them. It returns the accepting pods to give
// the balancer.
func (d *degraded) carry(v *view, snap *podSnapshot, accepting []lb.Pod, local int64) []lb.Pod {
	st := d.service(v.svc)
	st.fails = 0
	if st.outage.Swap(nil) != nil {
		d.ndown.Add(-1)
		d.recoveries.Add(1)
		st.carried, st.carriedUntil = nil, 0
		if prev := v.snap.Load(); prev != nil && d.maxStale > 0 {
			loads := map[int]int64{}
			for _, p := range prev.Pods {
				loads[p.Pod] = p.Load
			}
			for pod, f := range prev.flags {
				if f != 0 && prev.aliveUntil[pod] >= local {
					st.carried = append(st.carried, carriedPod{pod: pod, flags: f, load: loads[pod]})
				}
			}
			st.carriedUntil = local + d.carryFor
		}
		// The pending placements can be written now.
		defer d.wake()
	}
	if local >= st.carriedUntil {
		st.carried = nil
		return accepting
	}
	for _, c := range st.carried {
		if c.pod < len(snap.flags) && local <= snap.aliveUntil[c.pod] {
			continue // it published again: the fresh state rules
		}
		if c.pod >= len(snap.flags) {
			snap.flags = append(snap.flags, make([]uint8, c.pod+1-len(snap.flags))...)
			snap.aliveUntil = append(snap.aliveUntil, make([]int64, c.pod+1-len(snap.aliveUntil))...)
		}
		snap.flags[c.pod] = c.flags
		snap.aliveUntil[c.pod] = st.carriedUntil
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
