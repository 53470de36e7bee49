package engine

import (
	"fmt"
	"time"

	"github.com/stickyroute/stickyroute/lb"
	"github.com/stickyroute/stickyroute/store"
)

// Timing holds the periods servers and clients must agree on (SPEC §5.5).
// Give both sides the same values.
type Timing struct {
	// Heartbeat is how often a server publishes its state. Zero means 1s.
	Heartbeat time.Duration
	// Staleness is how old a published state may be, on the Redis server's
	// clock, for the pod to count as alive. Zero means 3 × Heartbeat; it must
	// be at least 3 × Heartbeat, so that two lost heartbeats do not kill a pod.
	Staleness time.Duration
	// Refresh is how often a client reloads the pod states it uses. Zero means
	// Heartbeat; it must not exceed Heartbeat.
	Refresh time.Duration
}

// withDefaults fills zero fields and checks the rules between them.
func (t Timing) withDefaults() (Timing, error) {
	if t.Heartbeat < 0 || t.Staleness < 0 || t.Refresh < 0 {
		return t, configErr("Timing", "periods must not be negative")
	}
	if t.Heartbeat > time.Hour || t.Staleness > 24*time.Hour {
		return t, configErr("Timing", fmt.Sprintf("Heartbeat %v above 1h or Staleness %v above 24h", t.Heartbeat, t.Staleness))
	}
	if t.Heartbeat == 0 {
		t.Heartbeat = time.Second
	}
	if t.Staleness == 0 {
		t.Staleness = 3 * t.Heartbeat
	}
	if t.Refresh == 0 {
		t.Refresh = t.Heartbeat
	}
	if t.Staleness < 3*t.Heartbeat {
		return t, configErr("Timing.Staleness", fmt.Sprintf("%v is below 3 × Heartbeat (%v)", t.Staleness, 3*t.Heartbeat))
	}
	if t.Refresh > t.Heartbeat {
		return t, configErr("Timing.Refresh", fmt.Sprintf("%v exceeds Heartbeat %v", t.Refresh, t.Heartbeat))
	}
	return t, nil
}

// Eviction chooses which cached link leaves when the cache is full. The
// cache samples a few entries and evicts the one the policy ranks lowest.
type Eviction uint8

const (
	// EvictAdaptive (the zero value) weighs recency against frequency and
	// shifts the weight toward whichever would have kept the entries that
	// came back after being evicted.
	EvictAdaptive Eviction = iota
	// EvictLRU evicts the least recently used entry.
	EvictLRU
	// EvictLFU evicts the least frequently used entry (frequency decays with idleness).
	EvictLFU
	// EvictTTL evicts the entry closest to expiry.
	EvictTTL
)

// String returns the policy's name.
func (e Eviction) String() string {
	switch e {
	case EvictAdaptive:
		return "adaptive"
	case EvictLRU:
		return "lru"
	case EvictLFU:
		return "lfu"
	case EvictTTL:
		return "ttl"
	}
	return "unknown"
}

// CacheConfig configures a client's link cache.
type CacheConfig struct {
	// MaxEntries bounds the number of cached links. Zero means 1,048,576.
	MaxEntries int
	// TTL is how long a cached link is trusted without hearing from Redis; it
	// is the backstop behind invalidations (and the only rule on a Redis
	// without client tracking, such as the embedded one). Zero means half the
	// temporary link TTL; it must be shorter than the temporary link TTL.
	TTL time.Duration
	// Eviction is the policy when the cache is full.
	Eviction Eviction
	// TrackingCheck is how often the client reads the tracking tables of
	// its Redis nodes (Client.Tracking; Redis drops tracked keys past
	// tracking-table-max-keys, see store.TrackingTable). Zero means 30s; a
	// negative value never reads them (Client.CheckTracking still does).
	TrackingCheck time.Duration
}

// ClientConfig configures a Client.
type ClientConfig struct {
	// Store is the link store; required. Links are coherent across processes
	// when the store tracks keys (store.Dial does, on a real Redis).
	Store *store.Redis
	Timing
	// TempLinkTTL is the lifetime of the temporary link a client writes when
	// it places a new user, in whole seconds. Zero means 60s.
	TempLinkTTL time.Duration
	// Cache configures the link cache.
	Cache CacheConfig
	// Strategy places new users among the accepting pods. Nil means lb.P2C{}.
	// Every strategy that weighs loads (P2C, LeastConn, LeastTime) sees the
	// corrected loads: a pod's published load plus the users this client
	// placed there since, each counted as many times as the client estimates
	// there are clients placing like it (see engine/placement.go).
	Strategy lb.Strategy
	// LoadBand keeps pods loaded above the least loaded accepting pod by more
	// than the band out of placement: band = max(LoadBandMin, LoadBandRatio ×
	// least load), judged at every placement on the corrected loads. Zero
	// values mean LoadBandMin 10 and LoadBandRatio 0.25; a negative
	// LoadBandMin disables the band.
	LoadBandMin   int64
	LoadBandRatio float64
	// RelinkPersistent lets ComputeLinkedPod move a user whose persistent link
	// points at a pod that is no longer routable. By default that is an
	// *PodNotRoutableError: the owning server decides.
	RelinkPersistent bool
	// Observer, if set, is told about every operation that reaches Redis, the
	// refreshes of pod states, placements and invalidations (package obs
	// provides metrics and tracing). Nil observes nothing and costs nothing.
	Observer Observer
	// ObserveHits makes cache hits of ComputeLinkedPod observed operations
	// too. Off by default: the cache counts hits itself, and an observed hit
	// costs the observer's time on every lookup.
	ObserveHits bool
	// Degraded says what the client does while Redis is unreachable; the
	// zero value serves cached users for up to 30s and fails new ones fast.
	Degraded DegradedConfig
}

// ServerConfig configures a Server: one pod of one service.
type ServerConfig struct {
	// Store is the link store; required.
	Store *store.Redis
	// Namespace and Service name the pod's service.
	Namespace, Service string
	// Pod is this pod's index (≥ 0).
	Pod int
	Timing
	// MaxRequest is the longest request a client may still be running against
	// this pod after it stops taking new users. Zero means 5s.
	MaxRequest time.Duration
	// Drain is how long Stop keeps the pod in DenyNewCall before Shutdown:
	// long enough for every client to see the change and finish its requests.
	// Zero means Refresh + MaxRequest; it must be at least that.
	Drain time.Duration
	// LoadInterval is the least time between two publishes of a changed
	// load: SetLoadState publishes at once unless the pod published less
	// than LoadInterval ago, and then publishes the latest load at the end
	// of the interval, once for any number of calls. So an application may
	// set its load on every user it gains or loses, and the clients placing
	// users in a storm see it within tens of milliseconds. Zero means
	// Heartbeat/20, at least 10ms; it must not exceed Heartbeat.
	LoadInterval time.Duration
	// Load and Routing are the state published by the first heartbeat. Zero
	// Routing means store.Ready.
	Load    int64
	Routing store.RoutingState
	// Observer, if set, is told about each heartbeat round and each Redis
	// round trip the server makes. Nil observes nothing.
	Observer Observer
}
