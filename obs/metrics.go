package obs

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/puzpuzpuz/xsync/v4"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/store"
)

// Prefix starts the name of every metric this package writes.
const Prefix = "stickyroute_"

// LatencyBuckets are the upper bounds, in seconds, of the latency
// histograms: from 25 µs (a Redis round trip on loopback) to 10 s.
var LatencyBuckets = []float64{
	0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// Metrics records what the engine reports (it is an engine.Observer) into a
// VictoriaMetrics set the application owns, as Prometheus-style metrics
// named stickyroute_*: base units (seconds), counters ending in _total, and
// labels from a bounded set (namespace, service, op, outcome, and pod for
// placements; never a uid).
//
// Cache hits are not observed one by one: the caches of the clients handed
// to Watch are read when the set is written or a snapshot taken, so a hit
// costs nothing here. Everything else is counted as it happens, with no lock
// beyond the metric's own.
//
// The metrics:
//
//	stickyroute_requests_total{namespace,service,op,outcome}          client and server operations that reached Redis
//	stickyroute_request_duration_seconds{namespace,service,op}       their latency (histogram)
//	stickyroute_cache_hits_total, stickyroute_cache_misses_total      link cache lookups
//	stickyroute_cache_stale_total{namespace,service}                  cached links to pods no longer routable
//	stickyroute_cache_evictions_total{reason}                         capacity, expired, invalidated
//	stickyroute_cache_entries, stickyroute_cache_capacity             cache size and bound
//	stickyroute_balancer_picks_total{namespace,service,strategy}      placement picks
//	stickyroute_balancer_pick_duration_seconds{namespace,service}     their latency (histogram)
//	stickyroute_placements_total{namespace,service,pod}               new users placed per pod
//	stickyroute_placement_skew{namespace,service}                     max/mean of placements per pod
//	stickyroute_relinks_total{namespace,service}                      users moved off unroutable pods
//	stickyroute_claim_conflicts_total{namespace,service}              races lost to another process
//	stickyroute_invalidations_total                                   links invalidated by Redis
//	stickyroute_tracking_lost_total                                   tracking connections lost (caches re-validate)
//	stickyroute_invalidation_delay_seconds                            own write → its invalidation (histogram)
//	stickyroute_tracking_links                                        links the watched clients cache (Redis tracks each)
//	stickyroute_tracking_table_keys{node}                             keys a Redis node tracks, for all its clients
//	stickyroute_tracking_table_max_keys{node}                         its tracking-table-max-keys, when readable
//	stickyroute_tracking_table_fill{node}                             keys / max keys (1: Redis evicts tracked keys)
//	stickyroute_store_requests_total{op,outcome}                      Redis round trips per store operation
//	stickyroute_store_request_duration_seconds{op}                    their latency (histogram)
//	stickyroute_health_checks_total{namespace,service,kind,outcome}   refreshes of pod states and heartbeats
//	stickyroute_health_check_duration_seconds{namespace,service,kind} their latency (histogram)
//	stickyroute_heartbeat_failures_total{namespace,service}           failed heartbeat rounds
//	stickyroute_state_fields_skipped_total{namespace,service}         unparsable pod-state fields
//
// Safe for concurrent use.
type Metrics struct {
	set *metrics.Set

	// Handles by label values, so that an operation builds no metric name.
	ops      *xsync.Map[opKey, *opMetrics]
	rts      *xsync.Map[opKey, *opMetrics]
	checks   *xsync.Map[opKey, *opMetrics]
	services *xsync.Map[svcKey, *svcMetrics]

	invalidations, trackingLost *metrics.Counter
	invalDelay                  *histogram

	// What Snapshot reads, by series: the counters and custom gauges (held
	// by the set too) and the histograms (written to the set by writeOwn).
	counters *xsync.Map[string, *metrics.Counter]
	gauges   *xsync.Map[string, *metrics.Gauge]
	hists    *xsync.Map[string, *histogram]

	// mu guards clients and unwatched: the caches read at each write, and
	// the final counts of the clients unwatched, so that counters never go
	// down.
	mu        sync.Mutex
	clients   map[*engine.Client]struct{}
	unwatched engine.CacheStats
	// Counts from the old API's RecordCacheHit/Miss and SetCacheSize.
	manualHits, manualMisses atomic.Uint64
	manualSize               atomic.Int64

	customMu sync.Mutex // serializes AddCustomMetric
}

// opKey names one series of an operation metric.
type opKey struct{ ns, svc, op, outcome string }

// opMetrics are the counter and latency histogram of one opKey (the
// histogram is shared by the outcomes of an op).
type opMetrics struct {
	count    *metrics.Counter
	duration *histogram
}

type svcKey struct{ ns, svc string }

// svcMetrics are the per-service counters.
type svcMetrics struct {
	stale, relinks, conflicts, hbFailures, skipped *metrics.Counter
	pickDuration                                   *histogram
	mu                                             sync.Mutex
	picks                                          map[string]*metrics.Counter // by strategy
	placements                                     map[int]*atomic.Uint64
}

// NewMetrics returns metrics recorded into set (nil: a new set, see Set). The
// set is the application's: NewMetrics never touches the global registry.
func NewMetrics(set *metrics.Set) *Metrics {
	if set == nil {
		set = metrics.NewSet()
	}
	m := &Metrics{
		set:      set,
		ops:      xsync.NewMap[opKey, *opMetrics](),
		rts:      xsync.NewMap[opKey, *opMetrics](),
		checks:   xsync.NewMap[opKey, *opMetrics](),
		services: xsync.NewMap[svcKey, *svcMetrics](),
		counters: xsync.NewMap[string, *metrics.Counter](),
		gauges:   xsync.NewMap[string, *metrics.Gauge](),
		hists:    xsync.NewMap[string, *histogram](),
		clients:  map[*engine.Client]struct{}{},
	}
	m.invalidations = m.counter(Prefix + "invalidations_total")
	m.trackingLost = m.counter(Prefix + "tracking_lost_total")
	m.invalDelay = m.histogram(Prefix + "invalidation_delay_seconds")
	set.RegisterMetricsWriter(m.writeOwn)
	return m
}

// counter returns the set's counter named series, registered for Snapshot.
func (m *Metrics) counter(series string) *metrics.Counter {
	c := m.set.GetOrCreateCounter(series)
	m.counters.Store(series, c)
	return c
}

// histogram returns the histogram named series, creating it on first use.
func (m *Metrics) histogram(series string) *histogram {
	h, _ := m.hists.LoadOrCompute(series, func() (*histogram, bool) { return newHistogram(), false })
	return h
}

// Watch adds the link cache of c to the stickyroute_cache_* metrics: its
// counts are read whenever the set is written or a snapshot taken. A client
// watched twice is counted once.
func (m *Metrics) Watch(c *engine.Client) {
	m.mu.Lock()
	m.clients[c] = struct{}{}
	m.mu.Unlock()
}

// Unwatch stops reading the cache of c, usually once c is closed: its hits,
// misses and evictions stay in the totals (counters never go down), its
// entries and capacity leave the gauges. A closed client still answers
// CacheStats, so until it is unwatched its final counts and last size stay
// in the metrics.
func (m *Metrics) Unwatch(c *engine.Client) {
	m.mu.Lock()
	if _, ok := m.clients[c]; ok {
		delete(m.clients, c)
		addCounts(&m.unwatched, c.CacheStats())
	}
	m.mu.Unlock()
}

// Set returns the set the metrics are recorded into.
func (m *Metrics) Set() *metrics.Set { return m.set }

// WritePrometheus writes every metric of the set in the Prometheus text
// format.
func (m *Metrics) WritePrometheus(w io.Writer) { m.set.WritePrometheus(w) }

// Begin implements engine.Observer; metrics keep nothing in the context.
func (m *Metrics) Begin(ctx context.Context, _ *engine.Op) context.Context { return ctx }

// End implements engine.Observer: it counts op and records its latency.
func (m *Metrics) End(_ context.Context, op *engine.Op) {
	outcome := Outcome(op)
	switch op.Kind {
	case engine.OpCall:
		m.op(m.ops, "requests", opKey{op.Namespace, op.Service, op.Name, outcome}).record(op.Duration)
		if op.Cache == engine.CacheStale {
			m.service(op.Namespace, op.Service).stale.Inc()
		}
	case engine.OpRoundTrip:
		m.op(m.rts, "store_requests", opKey{"", "", op.Name, outcome}).record(op.Duration)
	case engine.OpRefresh, engine.OpHeartbeat, engine.OpWorkload:
		m.op(m.checks, "health_checks", opKey{op.Namespace, op.Service, op.Kind.String(), outcome}).record(op.Duration)
		if op.Kind == engine.OpHeartbeat && isFailure(outcome) && outcome != OutcomeCanceled {
			m.service(op.Namespace, op.Service).hbFailures.Inc()
		}
	}
}

// Note implements engine.Observer.
func (m *Metrics) Note(_ context.Context, n engine.Note) {
	switch n.Kind {
	case engine.NotePicked:
		sm := m.service(n.Namespace, n.Service)
		m.pick(sm, n.Namespace, n.Service, n.Strategy).Inc()
		sm.pickDuration.Update(n.Duration.Seconds())
	case engine.NotePlaced:
		m.service(n.Namespace, n.Service).placed(n.Pod)
	case engine.NoteRelinked:
		sm := m.service(n.Namespace, n.Service)
		sm.relinks.Inc()
		sm.placed(n.Pod)
	case engine.NoteClaimConflict:
		m.service(n.Namespace, n.Service).conflicts.Inc()
	case engine.NoteInvalidated:
		if n.Count < 0 {
			m.trackingLost.Inc()
			break
		}
		m.invalidations.Add(n.Count)
		if n.Delay > 0 {
			m.invalDelay.Update(n.Delay.Seconds())
		}
	case engine.NoteSkippedFields:
		m.service(n.Namespace, n.Service).skipped.Add(n.Count)
	}
}

// record counts one operation that took d.
func (om *opMetrics) record(d time.Duration) {
	om.count.Inc()
	om.duration.Update(d.Seconds())
}

// op returns the metrics of k in family (requests, store_requests or
// health_checks), creating them on first use.
func (m *Metrics) op(tab *xsync.Map[opKey, *opMetrics], family string, k opKey) *opMetrics {
	if om, ok := tab.Load(k); ok {
		return om
	}
	om, _ := tab.LoadOrCompute(k, func() (*opMetrics, bool) {
		var labels, durLabels string
		switch family {
		case "requests":
			durLabels = labelSet("namespace", k.ns, "service", k.svc, "op", k.op)
			labels = labelSet("namespace", k.ns, "service", k.svc, "op", k.op, "outcome", k.outcome)
		case "store_requests":
			durLabels = labelSet("op", k.op)
			labels = labelSet("op", k.op, "outcome", k.outcome)
		default:
			durLabels = labelSet("namespace", k.ns, "service", k.svc, "kind", k.op)
			labels = labelSet("namespace", k.ns, "service", k.svc, "kind", k.op, "outcome", k.outcome)
		}
		durName := strings.TrimSuffix(family, "s") + "_duration_seconds"
		return &opMetrics{
			count:    m.counter(Prefix + family + "_total" + labels),
			duration: m.histogram(Prefix + durName + durLabels),
		}, false
	})
	return om
}

// service returns the per-service metrics, creating them on first use.
func (m *Metrics) service(ns, svc string) *svcMetrics {
	k := svcKey{ns, svc}
	if sm, ok := m.services.Load(k); ok {
		return sm
	}
	sm, _ := m.services.LoadOrCompute(k, func() (*svcMetrics, bool) {
		l := labelSet("namespace", ns, "service", svc)
		return &svcMetrics{
			stale:        m.counter(Prefix + "cache_stale_total" + l),
			relinks:      m.counter(Prefix + "relinks_total" + l),
			conflicts:    m.counter(Prefix + "claim_conflicts_total" + l),
			hbFailures:   m.counter(Prefix + "heartbeat_failures_total" + l),
			skipped:      m.counter(Prefix + "state_fields_skipped_total" + l),
			pickDuration: m.histogram(Prefix + "balancer_pick_duration_seconds" + l),
			picks:        map[string]*metrics.Counter{},
			placements:   map[int]*atomic.Uint64{},
		}, false
	})
	return sm
}

// pick returns the pick counter of strategy in sm.
func (m *Metrics) pick(sm *svcMetrics, ns, svc, strategy string) *metrics.Counter {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	c := sm.picks[strategy]
	if c == nil {
		c = m.counter(Prefix + "balancer_picks_total" + labelSet("namespace", ns, "service", svc, "strategy", strategy))
		sm.picks[strategy] = c
	}
	return c
}

// placed counts a user placed on pod.
func (sm *svcMetrics) placed(pod int) {
	sm.mu.Lock()
	c := sm.placements[pod]
	if c == nil {
		c = new(atomic.Uint64)
		sm.placements[pod] = c
	}
	sm.mu.Unlock()
	c.Add(1)
}

// cacheStats sums the caches of the watched clients, the final counts of the
// unwatched ones and the counts recorded by hand.
func (m *Metrics) cacheStats() engine.CacheStats {
	m.mu.Lock()
	sum := m.unwatched
	sum.Size, sum.MaxEntries = 0, 0
	for c := range m.clients {
		st := c.CacheStats()
		addCounts(&sum, st)
		sum.Size += st.Size
		sum.MaxEntries += st.MaxEntries
	}
	m.mu.Unlock()
	sum.Hits += m.manualHits.Load()
	sum.Misses += m.manualMisses.Load()
	sum.Size += int(m.manualSize.Load())
	return sum
}

// addCounts adds the counters of st to sum.
func addCounts(sum *engine.CacheStats, st engine.CacheStats) {
	sum.Hits += st.Hits
	sum.Misses += st.Misses
	sum.Evictions += st.Evictions
	sum.Expired += st.Expired
	sum.Invalidations += st.Invalidations
}

// own calls f with every series of m that the set does not hold: the
// histograms, and what is read at the time (the caches, the placement counts
// and skew), each family's series together as Prometheus wants them. typ is
// the Prometheus type of the series' family.
func (m *Metrics) own(f func(series, typ string, v float64)) {
	var names []string
	for name := range m.hists.All() {
		names = append(names, name)
	}
	slices.Sort(names) // a family's labelled histograms together
	for _, name := range names {
		h, _ := m.hists.Load(name)
		h.read(name, func(series string, v float64) { f(series, "histogram", v) })
	}
	st := m.cacheStats()
	f(Prefix+"cache_hits_total", "counter", float64(st.Hits))
	f(Prefix+"cache_misses_total", "counter", float64(st.Misses))
	f(Prefix+`cache_evictions_total{reason="capacity"}`, "counter", float64(st.Evictions))
	f(Prefix+`cache_evictions_total{reason="expired"}`, "counter", float64(st.Expired))
	f(Prefix+`cache_evictions_total{reason="invalidated"}`, "counter", float64(st.Invalidations))
	f(Prefix+"cache_entries", "gauge", float64(st.Size))
	f(Prefix+"cache_capacity", "gauge", float64(st.MaxEntries))
	m.ownTracking(f)

	var skews []func()
	for k, sm := range m.services.All() {
		sm.mu.Lock()
		pods := make([]int, 0, len(sm.placements))
		for p := range sm.placements {
			pods = append(pods, p)
		}
		counts := make([]uint64, len(pods))
		for i, p := range pods {
			counts[i] = sm.placements[p].Load()
		}
		sm.mu.Unlock()
		if len(pods) == 0 {
			continue
		}
		var total, most uint64
		for i, p := range pods {
			f(Prefix+"placements_total"+labelSet("namespace", k.ns, "service", k.svc, "pod", strconv.Itoa(p)),
				"counter", float64(counts[i]))
			total += counts[i]
			most = max(most, counts[i])
		}
		skew := float64(most) / (float64(total) / float64(len(pods)))
		skews = append(skews, func() {
			f(Prefix+"placement_skew"+labelSet("namespace", k.ns, "service", k.svc), "gauge", skew)
		})
	}
	for _, skew := range skews {
		skew()
	}
}

// ownTracking calls f with the tracking series of the watched clients: the
// links they cache and, per Redis node, the table each last read (the
// newest read where clients share a node).
func (m *Metrics) ownTracking(f func(series, typ string, v float64)) {
	links := 0
	newest := map[string]store.TrackingTable{}
	at := map[string]time.Time{}
	m.mu.Lock()
	for c := range m.clients {
		st := c.Tracking()
		links += st.Links
		for _, t := range st.Tables {
			if st.ReadAt.After(at[t.Addr]) {
				newest[t.Addr], at[t.Addr] = t, st.ReadAt
			}
		}
	}
	m.mu.Unlock()
	f(Prefix+"tracking_links", "gauge", float64(links))
	nodes := slices.Sorted(maps.Keys(newest))
	for _, a := range nodes {
		if t := newest[a]; t.Keys >= 0 {
			f(Prefix+"tracking_table_keys"+labelSet("node", a), "gauge", float64(t.Keys))
		}
	}
	for _, a := range nodes {
		if t := newest[a]; t.MaxKeys >= 0 {
			f(Prefix+"tracking_table_max_keys"+labelSet("node", a), "gauge", float64(t.MaxKeys))
		}
	}
	for _, a := range nodes {
		if t := newest[a]; t.Keys >= 0 && t.MaxKeys > 0 {
			f(Prefix+"tracking_table_fill"+labelSet("node", a), "gauge", t.Fill())
		}
	}
}

// writeOwn writes the series of own in the Prometheus text format: the set
// calls it when it is written.
func (m *Metrics) writeOwn(w io.Writer) {
	var b []byte
	last := ""
	m.own(func(series, typ string, v float64) {
		family, _, _ := strings.Cut(series, "{")
		if typ == "histogram" {
			family = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(family, "_bucket"), "_sum"), "_count")
		}
		if family != last { // HELP and TYPE once per family, when enabled
			metrics.WriteMetadataIfNeeded(w, family, typ)
			last = family
		}
		b = append(append(b[:0], series...), ' ')
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			b = strconv.AppendInt(b, int64(v), 10)
		} else {
			b = strconv.AppendFloat(b, v, 'g', -1, 64)
		}
		_, _ = w.Write(append(b, '\n'))
	})
}

// labelSet renders name/value pairs as a Prometheus label set, values escaped.
func labelSet(kv ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(kv[i])
		b.WriteString(`="`)
		for _, r := range kv[i+1] {
			switch r {
			case '\\':
				b.WriteString(`\\`)
			case '"':
				b.WriteString(`\"`)
			case '\n':
				b.WriteString(`\n`)
			default:
				b.WriteRune(r)
			}
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// The old API's performance monitor, for code that records by hand. These
// land in the same series as what the engine reports.

// RecordRequest counts one request of op that took d, as outcome "ok" or
// "error", with empty namespace and service.
func (m *Metrics) RecordRequest(op string, d time.Duration, success bool) {
	outcome := OutcomeOK
	if !success {
		outcome = OutcomeOtherFailure
	}
	m.op(m.ops, "requests", opKey{"", "", op, outcome}).record(d)
}

// RecordCacheHit counts one cache hit besides those of the clients' caches.
func (m *Metrics) RecordCacheHit() { m.manualHits.Add(1) }

// RecordCacheMiss counts one cache miss besides those of the clients' caches.
func (m *Metrics) RecordCacheMiss() { m.manualMisses.Add(1) }

// SetCacheSize sets the size of a cache of the application's own, added to
// the clients' in stickyroute_cache_entries.
func (m *Metrics) SetCacheSize(n int) { m.manualSize.Store(int64(n)) }

// RecordLoadBalancerRequest counts one pick of the application's own
// balancer for ns/svc that took d, under strategy "custom".
func (m *Metrics) RecordLoadBalancerRequest(ns, svc string, d time.Duration) {
	m.Note(context.Background(), engine.Note{Kind: engine.NotePicked, Namespace: ns, Service: svc,
		Strategy: "custom", Duration: d})
}

// RecordHealthCheck counts one health check of ns/svc that took d, under
// kind "custom".
func (m *Metrics) RecordHealthCheck(ns, svc string, d time.Duration, success bool) {
	outcome := OutcomeOK
	if !success {
		outcome = OutcomeOtherFailure
	}
	m.op(m.checks, "health_checks", opKey{ns, svc, "custom", outcome}).record(d)
}

var metricName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// AddCustomMetric adds a gauge named stickyroute_<name> whose value is read
// from value each time the set is written. The name must be a valid metric
// name (letters, digits, underscores) not added before.
func (m *Metrics) AddCustomMetric(name string, value func() float64) error {
	if !metricName.MatchString(name) || value == nil {
		return fmt.Errorf("obs: custom metric %q: want a name of letters, digits and _ and a value func", name)
	}
	full := Prefix + strings.TrimPrefix(name, Prefix)
	m.customMu.Lock()
	defer m.customMu.Unlock()
	if _, ok := m.gauges.Load(full); ok {
		return fmt.Errorf("obs: custom metric %q already added", full)
	}
	m.gauges.Store(full, m.set.NewGauge(full, value))
	return nil
}

// GetMetrics returns every series of m as it would be exposed now:
// "name{labels}" → value (histograms as their _bucket, _sum and _count
// series).
func (m *Metrics) GetMetrics() map[string]float64 { return m.Snapshot().Values }

// Snapshot reads every series of m now, from the metrics themselves: the
// series and values its part of the set's Prometheus text shows (metrics the
// application added to the set are not included).
func (m *Metrics) Snapshot() Snapshot {
	s := Snapshot{Time: time.Now(), Values: map[string]float64{}}
	for series, c := range m.counters.All() {
		s.Values[series] = float64(c.Get())
	}
	for series, g := range m.gauges.All() {
		s.Values[series] = g.Get()
	}
	m.own(func(series, _ string, v float64) { s.Values[series] = v })
	return s
}
