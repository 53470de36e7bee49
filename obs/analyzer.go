package obs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stickyroute/stickyroute/engine"
)

// Severity ranks a finding.
type Severity int

// The severities, from least to most urgent.
const (
	Info Severity = iota
	Warning
	Critical
)

// String returns the severity's name.
func (s Severity) String() string {
	switch s {
	case Info:
		return "info"
	case Warning:
		return "warning"
	case Critical:
		return "critical"
	}
	return "unknown"
}

// MarshalText writes the severity's name, so JSON reports read "warning".
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a severity's name back.
func (s *Severity) UnmarshalText(b []byte) error {
	for _, v := range []Severity{Info, Warning, Critical} {
		if v.String() == string(b) {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("obs: unknown severity %q", b)
}

// Finding is what a rule found in the history of metrics: how bad, about
// what, the numbers that show it, and what to do.
type Finding struct {
	Rule     string   `json:"rule"`
	Severity Severity `json:"severity"`
	// Subject names what the finding is about, such as "ns/svc op=GetLinkedPod".
	Subject string `json:"subject,omitempty"`
	Summary string `json:"summary"`
	// Evidence holds the figures the rule judged, by name.
	Evidence   map[string]float64 `json:"evidence"`
	Suggestion string             `json:"suggestion"`
}

// History is the analyzer's rolling history of snapshots, oldest first.
type History []Snapshot

// Window returns the oldest and the newest snapshot; ok is false with fewer
// than two.
func (h History) Window() (old, cur Snapshot, ok bool) {
	if len(h) < 2 {
		return Snapshot{}, Snapshot{}, false
	}
	return h[0], h[len(h)-1], true
}

// Halves returns the oldest, middle and newest snapshots, to compare the
// earlier half of the window with the recent half; ok is false with fewer
// than three.
func (h History) Halves() (old, mid, cur Snapshot, ok bool) {
	if len(h) < 3 {
		return Snapshot{}, Snapshot{}, Snapshot{}, false
	}
	return h[0], h[len(h)/2], h[len(h)-1], true
}

// Delta returns how much the counters of name matching match grew from old
// to cur.
func Delta(old, cur Snapshot, name string, match ...string) float64 {
	return cur.Sum(name, match...) - old.Sum(name, match...)
}

// Rule is a check over the history. Check returns its findings, none when
// all is well or the history is too short to tell.
type Rule struct {
	Name  string
	Check func(h History) []Finding
}

// AnalyzerConfig sets the analyzer's period, history and the bounds of its
// built-in rules. Zero fields take the defaults given.
type AnalyzerConfig struct {
	// Interval is how often Run takes a snapshot. Zero means 10s.
	Interval time.Duration
	// Keep is how many snapshots the history holds. Zero means 30.
	Keep int
	// MinHitRatio is the lowest acceptable cache hit ratio over the window,
	// judged once MinLookups lookups were made. Zero means 0.8 and 1000.
	MinHitRatio float64
	MinLookups  float64
	// MaxP99 bounds the p99 latency of each operation, judged once
	// MinRequests calls were made; four times over is critical. Zero means
	// 5ms and 100.
	MaxP99      time.Duration
	MinRequests float64
	// MaxSkew bounds placements per pod, max/mean over the window, judged
	// once MinPlacements users were placed. Zero means 1.5 and 100.
	MaxSkew       float64
	MinPlacements float64
	// MaxStoreErrorRatio is the share of failed Redis round trips above which
	// a rise is reported. Zero means 0.01.
	MaxStoreErrorRatio float64
	// MaxInvalidationDelay bounds the p99 of the tracking lag. Zero means 50ms.
	MaxInvalidationDelay time.Duration
}

func (c AnalyzerConfig) withDefaults() AnalyzerConfig {
	def := func(v *float64, d float64) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.Interval <= 0 {
		c.Interval = 10 * time.Second
	}
	if c.Keep < 2 {
		c.Keep = 30
	}
	def(&c.MinHitRatio, 0.8)
	def(&c.MinLookups, 1000)
	if c.MaxP99 <= 0 {
		c.MaxP99 = 5 * time.Millisecond
	}
	def(&c.MinRequests, 100)
	def(&c.MaxSkew, 1.5)
	def(&c.MinPlacements, 100)
	def(&c.MaxStoreErrorRatio, 0.01)
	if c.MaxInvalidationDelay <= 0 {
		c.MaxInvalidationDelay = 50 * time.Millisecond
	}
	return c
}

// Analyzer keeps a rolling history of metric snapshots and runs rules over
// it (the old API's performance analyzer): cache hit ratio too low, p99
// above its bound, placement skew, store errors rising, heartbeats failing,
// tracking lag rising, unparsable pod states; plus the application's own
// rules. It runs in the background (Run) or on demand (Collect, Analyze).
// Safe for concurrent use.
type Analyzer struct {
	cfg    AnalyzerConfig
	source func() Snapshot

	mu      sync.Mutex
	rules   []Rule
	history History
}

// NewAnalyzer returns an analyzer with the built-in rules that takes its
// snapshots from source (usually Metrics.Snapshot); with a nil source only
// AddMetrics feeds it.
func NewAnalyzer(source func() Snapshot, cfg AnalyzerConfig) *Analyzer {
	a := &Analyzer{cfg: cfg.withDefaults(), source: source}
	a.rules = a.builtinRules()
	return a
}

// Config returns the analyzer's settings with defaults filled in.
func (a *Analyzer) Config() AnalyzerConfig { return a.cfg }

// AddRule adds a rule run after the others.
func (a *Analyzer) AddRule(r Rule) {
	a.mu.Lock()
	a.rules = append(a.rules, r)
	a.mu.Unlock()
}

// AddMetrics appends s to the history, dropping the oldest past Keep.
func (a *Analyzer) AddMetrics(s Snapshot) {
	a.mu.Lock()
	a.history = append(a.history, s)
	if n := len(a.history) - a.cfg.Keep; n > 0 {
		a.history = append(a.history[:0], a.history[n:]...)
	}
	a.mu.Unlock()
}

// Collect takes one snapshot from the source into the history.
func (a *Analyzer) Collect() {
	if a.source != nil {
		a.AddMetrics(a.source())
	}
}

// History returns a copy of the history.
func (a *Analyzer) History() History {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append(History(nil), a.history...)
}

// Run takes a snapshot now and every Interval until ctx ends.
func (a *Analyzer) Run(ctx context.Context) {
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for ctx.Err() == nil {
		a.Collect()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// Analyze runs every rule over the history and returns the findings, most
// severe first. It fails only when ctx has ended.
func (a *Analyzer) Analyze(ctx context.Context) ([]Finding, error) {
	a.mu.Lock()
	rules := append([]Rule(nil), a.rules...)
	h := append(History(nil), a.history...)
	a.mu.Unlock()
	var out []Finding
	for _, r := range rules {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for _, f := range r.Check(h) {
			if f.Rule == "" {
				f.Rule = r.Name
			}
			out = append(out, f)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Severity > out[j].Severity })
	return out, nil
}

// GenerateSuggestions returns the distinct suggestions of findings, most
// severe first.
func GenerateSuggestions(findings []Finding) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range findings {
		if f.Suggestion != "" && !seen[f.Suggestion] {
			seen[f.Suggestion] = true
			out = append(out, f.Suggestion)
		}
	}
	return out
}

// Report is the analyzer's account of the window it holds.
type Report struct {
	Generated time.Time `json:"generated"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Snapshots int       `json:"snapshots"`
	// Summary holds headline figures over the window: lookups, hit ratio,
	// request rate and p99, store round trips and errors, placements.
	// requests counts every call of the watched clients, those the cache
	// answered (which skip the Observer, so that a hit costs nothing) and
	// those the Observer saw; request_p99_seconds is over the latter: the
	// calls that went to Redis.
	Summary     map[string]float64 `json:"summary"`
	Findings    []Finding          `json:"findings"`
	Suggestions []string           `json:"suggestions"`
}

// GenerateReport analyzes the history and sums it up.
func (a *Analyzer) GenerateReport(ctx context.Context) (*Report, error) {
	findings, err := a.Analyze(ctx)
	if err != nil {
		return nil, err
	}
	h := a.History()
	r := &Report{Generated: time.Now(), Snapshots: len(h), Summary: map[string]float64{},
		Findings: findings, Suggestions: GenerateSuggestions(findings)}
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	if old, cur, ok := h.Window(); ok {
		r.From, r.To = old.Time, cur.Time
		secs := cur.Time.Sub(old.Time).Seconds()
		hits := Delta(old, cur, Prefix+"cache_hits_total")
		misses := Delta(old, cur, Prefix+"cache_misses_total")
		r.Summary["cache_lookups"] = hits + misses
		if hits+misses > 0 {
			r.Summary["cache_hit_ratio"] = hits / (hits + misses)
		}
		reqs := Delta(old, cur, Prefix+"requests_total") + hits
		r.Summary["requests"] = reqs
		if secs > 0 {
			r.Summary["requests_per_second"] = reqs / secs
		}
		if p99, n := Quantile(old, cur, Prefix+"request_duration_seconds", 0.99); n > 0 {
			r.Summary["request_p99_seconds"] = p99
		}
		r.Summary["store_round_trips"] = Delta(old, cur, Prefix+"store_requests_total")
		r.Summary["store_errors"] = storeFailures(old, cur)
		r.Summary["placements"] = Delta(old, cur, Prefix+"placements_total")
	} else if len(h) == 1 {
		r.From, r.To = h[0].Time, h[0].Time
	}
	return r, nil
}

// WriteText writes the report for people to read.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "stickyroute performance report, %s\n", r.Generated.Format(time.RFC3339))
	fmt.Fprintf(&b, "window %s .. %s (%d snapshots)\n", r.From.Format(time.TimeOnly), r.To.Format(time.TimeOnly), r.Snapshots)
	for _, k := range slices.Sorted(maps.Keys(r.Summary)) {
		fmt.Fprintf(&b, "  %-22s %.6g\n", k, r.Summary[k])
	}
	if len(r.Findings) == 0 {
		b.WriteString("no findings\n")
	}
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "[%s] %s", strings.ToUpper(f.Severity.String()), f.Rule)
		if f.Subject != "" {
			fmt.Fprintf(&b, " (%s)", f.Subject)
		}
		fmt.Fprintf(&b, ": %s\n", f.Summary)
		for _, k := range slices.Sorted(maps.Keys(f.Evidence)) {
			fmt.Fprintf(&b, "    %s = %.6g\n", k, f.Evidence[k])
		}
		fmt.Fprintf(&b, "    → %s\n", f.Suggestion)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// JSON returns the report as indented JSON.
func (r *Report) JSON() ([]byte, error) { return json.MarshalIndent(r, "", "  ") }

// storeFailures counts the failed round trips between old and cur.
func storeFailures(old, cur Snapshot) float64 {
	n := 0.0
	for _, s := range cur.Samples(Prefix + "store_requests_total") {
		if isFailure(s.Labels["outcome"]) {
			n += s.Value - old.Values[s.Series]
		}
	}
	return n
}

// builtinRules returns the rules every analyzer starts with.
func (a *Analyzer) builtinRules() []Rule {
	return []Rule{
		{Name: "cache_hit_ratio", Check: a.checkHitRatio},
		{Name: "p99_latency", Check: a.checkP99},
		{Name: "placement_skew", Check: a.checkSkew},
		{Name: "store_errors_rising", Check: a.checkStoreErrors},
		{Name: "heartbeats_failing", Check: a.checkHeartbeats},
		{Name: "invalidation_delay", Check: a.checkInvalidationDelay},
		{Name: "state_fields_skipped", Check: checkSkipped},
		{Name: "tracking_table_full", Check: checkTrackingTable},
	}
}

func (a *Analyzer) checkHitRatio(h History) []Finding {
	old, cur, ok := h.Window()
	if !ok {
		return nil
	}
	hits := Delta(old, cur, Prefix+"cache_hits_total")
	misses := Delta(old, cur, Prefix+"cache_misses_total")
	if hits+misses < a.cfg.MinLookups {
		return nil
	}
	ratio := hits / (hits + misses)
	if ratio >= a.cfg.MinHitRatio {
		return nil
	}
	ev := map[string]float64{
		"hit_ratio": ratio, "min_hit_ratio": a.cfg.MinHitRatio, "lookups": hits + misses,
		"entries":               cur.Sum(Prefix + "cache_entries"),
		"capacity":              cur.Sum(Prefix + "cache_capacity"),
		"evictions_capacity":    Delta(old, cur, Prefix+"cache_evictions_total", "reason", "capacity"),
		"evictions_expired":     Delta(old, cur, Prefix+"cache_evictions_total", "reason", "expired"),
		"evictions_invalidated": Delta(old, cur, Prefix+"cache_evictions_total", "reason", "invalidated"),
	}
	sev := Warning
	if ratio < a.cfg.MinHitRatio/2 {
		sev = Critical
	}
	var sug string
	switch {
	case ev["evictions_capacity"] > 0.1*misses || (ev["capacity"] > 0 && ev["entries"] >= 0.95*ev["capacity"]):
		sug = fmt.Sprintf("The cache is full and evicting (%.0f evictions, %.0f of %.0f entries): raise ClientConfig.Cache.MaxEntries above the working set of users.",
			ev["evictions_capacity"], ev["entries"], ev["capacity"])
	case ev["evictions_invalidated"] > 0.5*misses:
		sug = "Most misses follow invalidations: links move often. Look for pods flapping between states or users relinked repeatedly (stickyroute_relinks_total)."
	case ev["evictions_expired"] > 0.5*misses:
		sug = "Most misses follow expiries: raise ClientConfig.Cache.TTL (it must stay below TempLinkTTL); invalidations keep a longer TTL coherent on a real Redis."
	default:
		sug = "Most misses are first lookups of users: expected while users arrive; if it persists, route each user's requests through the same client process."
	}
	return []Finding{{Severity: sev, Evidence: ev, Suggestion: sug,
		Summary: fmt.Sprintf("cache hit ratio %.1f%% is below %.1f%% over %.0f lookups", 100*ratio, 100*a.cfg.MinHitRatio, hits+misses)}}
}

func (a *Analyzer) checkP99(h History) []Finding {
	old, cur, ok := h.Window()
	if !ok {
		return nil
	}
	bound := a.cfg.MaxP99.Seconds()
	var out []Finding
	type key struct{ ns, svc, op string }
	seen := map[key]bool{}
	for _, s := range cur.Samples(Prefix + "request_duration_seconds_count") {
		k := key{s.Labels["namespace"], s.Labels["service"], s.Labels["op"]}
		if seen[k] {
			continue
		}
		seen[k] = true
		p99, n := Quantile(old, cur, Prefix+"request_duration_seconds", 0.99, "namespace", k.ns, "service", k.svc, "op", k.op)
		if n < a.cfg.MinRequests || !(p99 > bound) {
			continue
		}
		sev := Warning
		if p99 > 4*bound {
			sev = Critical
		}
		ev := map[string]float64{"p99_seconds": p99, "bound_seconds": bound, "calls": n}
		storeP99, storeN := Quantile(old, cur, Prefix+"store_request_duration_seconds", 0.99)
		sug := "Calls are slow without slow round trips: the process may be CPU-starved, or callers queue on single-flight; profile it."
		if storeN > 0 {
			ev["store_p99_seconds"] = storeP99
			if storeP99 > bound/2 {
				sug = fmt.Sprintf("Redis round trips are slow (p99 %.2gs): check Redis CPU and latency (LATENCY DOCTOR), the network, and big batches; more cache hits avoid the round trip.", storeP99)
			}
		}
		out = append(out, Finding{Severity: sev, Subject: fmt.Sprintf("%s/%s op=%s", k.ns, k.svc, k.op), Evidence: ev, Suggestion: sug,
			Summary: fmt.Sprintf("p99 %s is above %s over %.0f calls", seconds(p99), seconds(bound), n)})
	}
	return out
}

func (a *Analyzer) checkSkew(h History) []Finding {
	old, cur, ok := h.Window()
	if !ok {
		return nil
	}
	type svc struct{ ns, name string }
	perPod := map[svc]map[string]float64{}
	for _, s := range cur.Samples(Prefix + "placements_total") {
		k := svc{s.Labels["namespace"], s.Labels["service"]}
		if perPod[k] == nil {
			perPod[k] = map[string]float64{}
		}
		perPod[k][s.Labels["pod"]] += s.Value - old.Values[s.Series]
	}
	var out []Finding
	for k, pods := range perPod {
		total, most, mostPod := 0.0, 0.0, ""
		for p, n := range pods {
			total += n
			if n > most || (n == most && p < mostPod) {
				most, mostPod = n, p
			}
		}
		if total < a.cfg.MinPlacements || len(pods) < 2 {
			continue
		}
		skew := most / (total / float64(len(pods)))
		if skew <= a.cfg.MaxSkew {
			continue
		}
		out = append(out, Finding{Severity: Warning, Subject: k.ns + "/" + k.name,
			Evidence: map[string]float64{"skew": skew, "max_skew": a.cfg.MaxSkew, "placements": total, "pods": float64(len(pods)), "max_pod_placements": most},
			Summary:  fmt.Sprintf("pod %s took %.0f of %.0f placements (max/mean %.2f > %.2f)", mostPod, most, total, skew, a.cfg.MaxSkew),
			Suggestion: "Placements herd onto one pod: check that every pod heartbeats its load (SetLoadState), use the P2C or least-connections strategy, " +
				"and keep the load band (LoadBandMin, LoadBandRatio) tight enough to exclude loaded pods."})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Subject < out[j].Subject })
	return out
}

func (a *Analyzer) checkStoreErrors(h History) []Finding {
	old, mid, cur, ok := h.Halves()
	if !ok {
		return nil
	}
	ratio := func(from, to Snapshot) (float64, float64, float64) {
		total := Delta(from, to, Prefix+"store_requests_total")
		bad := storeFailures(from, to)
		if total <= 0 {
			return 0, 0, 0
		}
		return bad / total, bad, total
	}
	before, _, _ := ratio(old, mid)
	recent, bad, total := ratio(mid, cur)
	if recent <= a.cfg.MaxStoreErrorRatio || recent <= before {
		return nil
	}
	sev := Warning
	if recent > 10*a.cfg.MaxStoreErrorRatio {
		sev = Critical
	}
	ev := map[string]float64{"recent_error_ratio": recent, "earlier_error_ratio": before, "recent_errors": bad, "recent_round_trips": total}
	for _, s := range cur.Samples(Prefix + "store_requests_total") {
		if o := s.Labels["outcome"]; isFailure(o) {
			ev["errors_"+o] += s.Value - mid.Values[s.Series]
		}
	}
	return []Finding{{Severity: sev, Evidence: ev,
		Summary: fmt.Sprintf("%.1f%% of Redis round trips failed recently, up from %.1f%%", 100*recent, 100*before),
		Suggestion: "Redis is failing requests: check that it is up and reachable, its maxclients and memory, and whether timeouts " +
			"(errors_timeout) or refused connections (errors_unavailable) dominate."}}
}

func (a *Analyzer) checkHeartbeats(h History) []Finding {
	old, cur, ok := h.Window()
	if !ok {
		return nil
	}
	var out []Finding
	for _, s := range cur.Samples(Prefix + "heartbeat_failures_total") {
		failed := s.Value - old.Values[s.Series]
		if failed <= 0 {
			continue
		}
		ns, svc := s.Labels["namespace"], s.Labels["service"]
		okBeats := Delta(old, cur, Prefix+"health_checks_total", "namespace", ns, "service", svc, "kind", "heartbeat", "outcome", OutcomeOK)
		sev := Warning
		if okBeats == 0 {
			sev = Critical
		}
		out = append(out, Finding{Severity: sev, Subject: ns + "/" + svc,
			Evidence: map[string]float64{"failed_heartbeats": failed, "ok_heartbeats": okBeats},
			Summary:  fmt.Sprintf("%.0f heartbeat rounds failed (%.0f succeeded)", failed, okBeats),
			Suggestion: "Pods cannot publish their state: after Timing.Staleness they stop being routable and their users move. " +
				"Check the servers' connection to Redis and Redis's latency."})
	}
	return out
}

func (a *Analyzer) checkInvalidationDelay(h History) []Finding {
	old, mid, cur, ok := h.Halves()
	if !ok {
		return nil
	}
	name := Prefix + "invalidation_delay_seconds"
	before, nb := Quantile(old, mid, name, 0.99)
	recent, nr := Quantile(mid, cur, name, 0.99)
	bound := a.cfg.MaxInvalidationDelay.Seconds()
	if nr == 0 {
		return nil
	}
	rising := nb > 0 && recent > 2*before && recent > bound/10
	if !(recent > bound) && !rising {
		return nil
	}
	ev := map[string]float64{"recent_p99_seconds": recent, "bound_seconds": bound, "recent_invalidations": nr}
	if nb > 0 {
		ev["earlier_p99_seconds"] = before
	}
	sev := Warning
	if recent > 4*bound {
		sev = Critical
	}
	return []Finding{{Severity: sev, Evidence: ev,
		Summary: fmt.Sprintf("invalidations arrive %s after the write (p99), earlier %s", seconds(recent), seconds(before)),
		Suggestion: "The tracking channel lags: for that long another process may route a moved user to its old pod. " +
			"Check this process's CPU (the Redis client's reader goroutine), Redis's output buffers and the network."}}
}

// checkTrackingTable warns when a Redis node's tracking table is nearly
// full (engine.TrackingNearFill) and is critical once it is full: Redis then
// invalidates tracked keys to make room, and every client's cache churns.
func checkTrackingTable(h History) []Finding {
	if len(h) == 0 {
		return nil
	}
	cur := h[len(h)-1]
	var out []Finding
	for _, s := range cur.Samples(Prefix + "tracking_table_fill") {
		if s.Value < engine.TrackingNearFill {
			continue
		}
		node := s.Labels["node"]
		ev := map[string]float64{
			"fill":     s.Value,
			"keys":     cur.Sum(Prefix+"tracking_table_keys", "node", node),
			"max_keys": cur.Sum(Prefix+"tracking_table_max_keys", "node", node),
			"links":    cur.Sum(Prefix + "tracking_links"),
		}
		sev, state := Warning, "is nearly full"
		if s.Value >= 1 {
			sev, state = Critical, "is full: Redis is invalidating tracked links to make room"
		}
		out = append(out, Finding{Severity: sev, Evidence: ev,
			Summary: fmt.Sprintf("Redis node %s tracks %.0f keys of its tracking-table-max-keys %.0f (%.0f%%): the table %s",
				node, ev["keys"], ev["max_keys"], 100*s.Value, state),
			Suggestion: "Past the limit every client's cache churns: links still in use are invalidated and read again. " +
				"Raise tracking-table-max-keys on the node (each tracked key costs Redis memory), " +
				"cache fewer links per client (ClientConfig.Cache.MaxEntries), or spread the links over more cluster masters."})
	}
	return out
}

func checkSkipped(h History) []Finding {
	old, cur, ok := h.Window()
	if !ok {
		return nil
	}
	var out []Finding
	for _, s := range cur.Samples(Prefix + "state_fields_skipped_total") {
		if n := s.Value - old.Values[s.Series]; n > 0 {
			out = append(out, Finding{Severity: Warning, Subject: s.Labels["namespace"] + "/" + s.Labels["service"],
				Evidence:   map[string]float64{"skipped_fields": n},
				Summary:    fmt.Sprintf("%.0f pod-state fields could not be parsed", n),
				Suggestion: "A process writes pod states in another format: check the versions of every server writing this service's state (SPEC §3)."})
		}
	}
	return out
}

// seconds formats a duration in seconds for people, to three significant
// digits: 85.3ms, 2.34s, 412µs.
func seconds(v float64) string {
	d := time.Duration(v * float64(time.Second))
	unit := time.Microsecond
	for d >= 1000*unit {
		unit *= 10
	}
	return d.Round(unit).String()
}
