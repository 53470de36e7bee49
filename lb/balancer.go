package lb

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/stickyroute/stickyroute/internal/xruntime"
)

// NoPod is the pod index of a failed pick. Pod 0 is a normal pod.
const NoPod = -1

// MaxPods is the most distinct pod indexes one balancer tracks over its life
// (lookup tables index members with 16 bits, one value kept as a marker).
const MaxPods = 1<<16 - 1

// ErrInvalidArgument is matched by every error of a bad setting or
// argument: a Config field, a pod's index, weight or load.
var ErrInvalidArgument = errors.New("lb: invalid argument")

// invalidError is an ErrInvalidArgument with its own message.
type invalidError string

// Error implements error.
func (e invalidError) Error() string { return "lb: " + string(e) }

// Is reports whether target is ErrInvalidArgument.
func (e invalidError) Is(target error) bool { return target == ErrInvalidArgument }

// invalidf returns an invalidError with a formatted message.
func invalidf(format string, args ...any) error { return invalidError(fmt.Sprintf(format, args...)) }

// ErrNoPod is returned by a pick when no pod is eligible: none is a member,
// or every member is unhealthy or ejected.
var ErrNoPod = errors.New("lb: no eligible pod")

// Pod describes a member pod.
type Pod struct {
	// Index is the pod index (≥ 0).
	Index int
	// Weight is the pod's relative share for weighted strategies. Zero means 1.
	Weight int
	// Load is the load the pod published (≥ 0; lower is better).
	Load int64
}

// DoneInfo is what a caller reports when a picked request ends.
type DoneInfo struct {
	// Duration is how long the request took; zero leaves the response-time
	// average alone.
	Duration time.Duration
	// Err is the request's error: nil is a success; a context.Canceled error
	// is neither a success nor a failure (the caller gave up, not the pod).
	Err error
}

// PickResult is a pick: the pod and the callback to call exactly once when
// the request sent there ends.
type PickResult struct {
	// Pod is the picked pod index.
	Pod int
	// Done reports the end of the request: it releases the in-flight count,
	// feeds the response-time average and passive health. It is safe to call
	// from any goroutine. Not calling it leaves the pick in flight, which is how
	// a placement that stays (a user now living on the pod) should count.
	Done func(DoneInfo)
}

// Config configures a Balancer. The zero value is usable: P2C, no members,
// passive ejection after 5 failures, no slow start, no load cap.
type Config struct {
	// Strategy picks among the eligible pods. Nil means P2C{}.
	Strategy Strategy
	// Pods are the initial members; they start at full share (no slow start).
	Pods []Pod
	// LoadCap, when non-zero, bounds every pick: no pod whose load plus
	// in-flight picks would exceed LoadCap × the mean over eligible pods is
	// picked; the pick spills to the next pod in the strategy's order (for
	// Maglev, the next table slot, so spills stay consistent). Must be ≥ 1;
	// 1.25 is typical. It costs a sum over the processor stripes per pick.
	LoadCap float64
	// Band, when its Min or Ratio is set, keeps every pick near the least
	// loaded eligible pod: no pod whose load exceeds the least load by more
	// than max(Band.Min, Band.Ratio × least load) is picked; the pick goes to
	// the least loaded pod instead. A pod's load here is as for LoadCap, with
	// the in-flight picks weighed by SetPickWeight. Setting it counts picks
	// as Shared does. It costs a scan of the eligible pods per pick.
	Band Band
	// Shared counts the picks in flight of each pod over every processor, in
	// one counter per pod, and has P2C and LeastConn compare those counts
	// instead of the caller's processor's (see P2C). A shared counter is
	// written by every core, which makes parallel picks slower; but the
	// processors no longer each fill the least loaded pod on their own,
	// which matters when a pick stands for long-lived work (a user placed on
	// a pod for its session) rather than for a request.
	Shared bool
	// SlowStart is the window over which a pod added later, re-admitted after
	// an ejection or marked healthy again ramps from a tenth of its share to all
	// of it, in ten steps. Zero disables slow start.
	SlowStart time.Duration
	// Ejection configures passive health checking.
	Ejection Ejection
	// DecayTime is how long a pod must go without a response-time sample for
	// its average to count half in LeastTime; it keeps decaying after. Zero means 10s.
	DecayTime time.Duration
}

// Band is the load band of Config.Band. The zero value is off.
type Band struct {
	// Min is the smallest width of the band, in load units (≥ 0).
	Min int64
	// Ratio widens the band in proportion to the least load (≥ 0).
	Ratio float64
}

// on reports whether the band is set.
func (b Band) on() bool { return b.Min != 0 || b.Ratio != 0 }

// width returns the band's width above a least load of least.
func (b Band) width(least int64) int64 {
	return max(b.Min, int64(b.Ratio*float64(least)))
}

// Ejection configures passive health checking: consecutive failures reported
// through Done take a pod out of the picks for a while.
type Ejection struct {
	// Failures is the number of consecutive failures that eject a pod. Zero
	// means 5; a negative value disables ejection.
	Failures int
	// Base is the length of a pod's first ejection; each later one doubles, up
	// to Max. Zero means 10s.
	Base time.Duration
	// Max caps an ejection's length. Zero means 5m.
	Max time.Duration
	// MaxFraction is the largest fraction of the members ejected at once (pods
	// marked unhealthy by hand do not count). Zero means 0.5. A pod that would
	// exceed it stays in.
	MaxFraction float64
	// Jitter spreads each ejection's length by up to ±Jitter of itself. Zero
	// means 0.1; a negative value means none.
	Jitter float64
}

func (c *Config) validate() error {
	e := &c.Ejection
	if c.Strategy == nil {
		c.Strategy = P2C{}
	}
	if c.LoadCap != 0 && (c.LoadCap < 1 || math.IsNaN(c.LoadCap) || math.IsInf(c.LoadCap, 0)) {
		return invalidf("LoadCap %v is neither 0 (off) nor ≥ 1", c.LoadCap)
	}
	if c.Band.Min < 0 || c.Band.Ratio < 0 || math.IsNaN(c.Band.Ratio) || math.IsInf(c.Band.Ratio, 0) {
		return invalidf("Band %+v has a negative or non-finite part", c.Band)
	}
	if c.SlowStart < 0 {
		return invalidf("SlowStart %v is negative", c.SlowStart)
	}
	if c.DecayTime < 0 {
		return invalidf("DecayTime %v is negative", c.DecayTime)
	}
	if c.DecayTime == 0 {
		c.DecayTime = 10 * time.Second
	}
	if e.Failures == 0 {
		e.Failures = 5
	}
	if e.Base < 0 || e.Max < 0 {
		return invalidf("Ejection.Base %v and Ejection.Max %v must not be negative", e.Base, e.Max)
	}
	if e.Base == 0 {
		e.Base = 10 * time.Second
	}
	if e.Max == 0 {
		e.Max = 5 * time.Minute
	}
	if e.Max < e.Base {
		return invalidf("Ejection.Max %v is shorter than Ejection.Base %v", e.Max, e.Base)
	}
	if e.MaxFraction < 0 || e.MaxFraction > 1 || math.IsNaN(e.MaxFraction) {
		return invalidf("Ejection.MaxFraction %v is outside [0, 1]", e.MaxFraction)
	}
	if e.MaxFraction == 0 {
		e.MaxFraction = 0.5
	}
	if e.Jitter >= 1 || math.IsNaN(e.Jitter) {
		return invalidf("Ejection.Jitter %v is not below 1", e.Jitter)
	}
	if e.Jitter == 0 {
		e.Jitter = 0.1
	}
	return nil
}

// Balancer picks pods for requests. Picks never block, take no lock and
// allocate nothing: they read an immutable snapshot of the pod set and write
// one counter of the caller's processor. Changes to the pod set (Add, Remove,
// SetLoad, SetHealthy, ejections, slow-start steps) take a mutex and publish a
// new snapshot. A Balancer is safe for concurrent use; Close stops its timers.
type Balancer struct {
	snap     atomic.Pointer[snapshot]
	strategy Strategy
	stripes  []stripe
	mask     int
	loadCap  float64
	// Where a pick is counted. local: in the cell of the caller's stripe
	// (cells hold picks and dones, in-flight is their difference), what P2C
	// reads. global: in each pod's shared in-flight counter, what LeastConn,
	// LeastTime and the load cap read with one load per pod. Done always counts
	// in the cell, and undoes the global count when there is one.
	local, global bool
	// shared: P2C and LeastConn read the global in-flight counts (Config.Shared).
	shared bool
	band   Band
	// weight is how many load units a pick in flight stands for in the
	// global comparisons (SetPickWeight); 1 unless set.
	weight atomic.Int64
	epoch  time.Time
	tau    int64
	cfg    Config

	// mu guards the fields below and serializes snapshot publication. It is
	// never taken by a pick; Done takes it only when a pod reaches its
	// failure threshold.
	mu       sync.Mutex
	members  map[int]*member
	states   map[int]*podState // pod index → state, kept after removal
	blocks   [][]*block        // [stripe] → counter blocks
	conns    []*dense          // reported connections by slot
	inflight []*dense          // global in-flight counts by slot
	// table is the strategy's table for the current membership, weights,
	// eligibility and ramps; nil with tableOK when the strategy has none.
	table   []uint16
	tableOK bool
	ramper  *time.Timer
	closed  bool
	// connsSeen: some pod has reported connections (UpdateStats).
	connsSeen bool
}

// member is a pod of the set, as the writers see it.
type member struct {
	pod    int
	weight int
	load   int64
	state  *podState
	// down: marked unhealthy by SetHealthy.
	down bool
	// ejected by passive health checking, until timer fires.
	ejected    bool
	until      time.Time // end of the current ejection
	ejections  int
	readmitted time.Time
	timer      *time.Timer
	// rampStart is when slow start began; ramp is the current share (rampOne: done).
	rampStart time.Time
	ramp      uint32
}

func (m *member) eligible() bool { return !m.down && !m.ejected }

// New returns a balancer over cfg.Pods, or an error naming a bad setting.
func New(cfg Config) (*Balancer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := xruntime.Stripes()
	b := &Balancer{
		strategy: cfg.Strategy,
		stripes:  make([]stripe, n),
		mask:     n - 1,
		loadCap:  cfg.LoadCap,
		local:    !cfg.Strategy.global(),
		global:   cfg.LoadCap != 0 || cfg.Strategy.global() || cfg.Shared || cfg.Band.on(),
		shared:   cfg.Shared || cfg.Band.on(),
		band:     cfg.Band,
		epoch:    time.Now(),
		tau:      int64(cfg.DecayTime),
		cfg:      cfg,
		members:  map[int]*member{},
		states:   map[int]*podState{},
		blocks:   make([][]*block, n),
	}
	b.weight.Store(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range cfg.Pods {
		if err := b.addLocked(p, false); err != nil {
			return nil, err
		}
	}
	b.publishLocked()
	return b, nil
}

// Strategy returns the balancer's strategy.
func (b *Balancer) Strategy() Strategy { return b.strategy }

// Pick picks an eligible pod. It never blocks; it returns ErrNoPod when no
// pod is eligible. With a hashing strategy (Maglev) an unkeyed pick is spread
// at random by weight.
func (b *Balancer) Pick() (PickResult, error) { return b.pick(0, false) }

// PickKey picks the pod for key. With a hashing strategy the same key maps to
// the same pod while the membership is unchanged; other strategies ignore key.
func (b *Balancer) PickKey(key string) (PickResult, error) {
	return b.pick(xxhash.Sum64String(key), true)
}

// PickHash is PickKey for a key the caller already hashed.
func (b *Balancer) PickHash(h uint64) (PickResult, error) { return b.pick(h, true) }

func (b *Balancer) pick(h uint64, keyed bool) (PickResult, error) {
	s := b.snap.Load()
	sid := xruntime.ProcID() & b.mask
	i := b.strategy.pick(b, s, sid, h, keyed)
	if i < 0 {
		return PickResult{Pod: NoPod}, ErrNoPod
	}
	if b.loadCap != 0 {
		i = b.underCap(s, i, h, keyed)
	}
	if b.band.on() {
		i = b.inBand(s, i)
	}
	c := s.cells[sid][i]
	if b.local {
		c.picks.Add(1)
	}
	if b.global {
		s.entries[i].state.inflight.Add(1)
	}
	return PickResult{Pod: s.entries[i].pod, Done: c.done}, nil
}

// underCap returns i if its pod stays within the load cap after this pick,
// else the first pod in the strategy's spill order that does.
//
// A pod's load here is its published load plus its in-flight picks (times
// the pick weight) and its reported connections, on both sides of the
// comparison; the mean is over the eligible pods only. With a pick weight of
// 1 the least loaded eligible pod always fits (its load + 1 ≤ ceil(mean +
// 1/n) ≤ the limit), so a spill finds a pod unless the counters moved under
// us, in which case the strategy's pick stands.
func (b *Balancer) underCap(s *snapshot, i int, h uint64, keyed bool) int {
	n := len(s.cands)
	total := s.loadSum
	w := b.weight.Load()
	for k := range s.cands {
		total += w*s.cands[k].inflight.Load() + s.cands[k].conns.Load()
	}
	limit := int64(math.Ceil(b.loadCap * float64(total+w) / float64(n)))
	if fits(s, i, limit, w) {
		return i
	}
	if p, ok := b.strategy.(prober); ok && keyed && s.table != nil {
		// Spill along the key's probe sequence, so it stays consistent.
		for k := 1; k < len(s.table); k++ {
			if j := p.probeAt(s, h, k); fits(s, j, limit, w) {
				return j
			}
		}
	}
	// Spill in eligible order after i.
	start := slices.Index(s.eligible, int32(i))
	for k := 1; k < n; k++ {
		j := int(s.eligible[(start+k)%n])
		if fits(s, j, limit, w) {
			return j
		}
	}
	return i
}

// inBand returns i if its pod is within the band above the least loaded
// eligible pod, else the least loaded pod (ties go to the first after a
// random start, so equal pods share the spill).
func (b *Balancer) inBand(s *snapshot, i int) int {
	cs := s.cands
	n := len(cs)
	w := b.weight.Load()
	start := int(uint64(xruntime.Rand32()) * uint64(n) >> 32)
	least, leastAt, mine := int64(math.MaxInt64), -1, int64(-1)
	for k := range n {
		c := &cs[(start+k)%n]
		l := c.load + w*c.inflight.Load()
		if s.conns {
			l += c.conns.Load()
		}
		if l < least {
			least, leastAt = l, int(c.i)
		}
		if int(c.i) == i {
			mine = l
		}
	}
	if leastAt < 0 || mine <= least+b.band.width(least) {
		return i
	}
	return leastAt
}

// SetPickWeight sets how many load units one pick in flight stands for when
// picks are counted over every processor (LoadCap, Band, Shared, LeastTime):
// the balancer compares published load + n × in-flight picks. It starts at
// 1. A process that is one of n similar ones placing work on the same pods
// with the same view sets n, so that its own picks stand for the fleet's
// until the published loads include them. n below 1 counts as 1.
func (b *Balancer) SetPickWeight(n int64) { b.weight.Store(max(n, 1)) }

// fits reports whether entry j may take one more pick under limit.
func fits(s *snapshot, j int, limit, w int64) bool {
	e := &s.entries[j]
	return e.ok && e.load+w*(e.state.inflight.Load()+1)+e.state.conns.Load() <= limit
}

// Add makes pod a member with the given weight (0 means 1), or updates the
// weight of a member. A pod added while others are eligible slow-starts.
func (b *Balancer) Add(pod, weight int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m, ok := b.members[pod]; ok {
		if weight < 0 {
			return invalidf("pod %d: weight %d is negative", pod, weight)
		}
		m.weight = max(weight, 1)
		b.tableOK = false
		b.publishLocked()
		return nil
	}
	if err := b.addLocked(Pod{Index: pod, Weight: weight}, true); err != nil {
		return err
	}
	b.publishLocked()
	return nil
}

// Remove takes pod out of the set; it answers whether pod was a member. Its
// counters are kept: picks still in flight report Done safely, and a pod that
// comes back finds them.
func (b *Balancer) Remove(pod int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.members[pod]
	if !ok {
		return false
	}
	if m.timer != nil {
		m.timer.Stop()
	}
	delete(b.members, pod)
	b.tableOK = false
	b.publishLocked()
	return true
}

// Update replaces the whole pod set with pods in one swap: members not listed
// leave, new ones join (slow-starting if others are eligible), weights and
// loads are set. Health marks and ejections of staying pods are kept.
func (b *Balancer) Update(pods []Pod) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := make(map[int]bool, len(pods))
	for _, p := range pods {
		if err := checkPod(p); err != nil {
			return err
		}
		if seen[p.Index] {
			return invalidf("pod %d listed twice", p.Index)
		}
		seen[p.Index] = true
	}
	fresh := 0
	for _, p := range pods {
		if _, known := b.states[p.Index]; !known {
			fresh++
		}
	}
	if len(b.states)+fresh > MaxPods {
		return invalidf("more than %d distinct pods", MaxPods)
	}
	// New pods slow-start only against eligible pods that stay in the set.
	running := false
	for pod, m := range b.members {
		running = running || seen[pod] && m.eligible()
	}
	for pod, m := range b.members {
		if !seen[pod] {
			if m.timer != nil {
				m.timer.Stop()
			}
			delete(b.members, pod)
			b.tableOK = false
		}
	}
	for _, p := range pods {
		if m, ok := b.members[p.Index]; ok {
			w := max(p.Weight, 1)
			if m.weight != w {
				m.weight = w
				b.tableOK = false
			}
			m.load = p.Load
			continue
		}
		if err := b.addLocked(p, running); err != nil {
			return err
		}
	}
	b.publishLocked()
	return nil
}

// SetLoad sets the published load of a member.
func (b *Balancer) SetLoad(pod int, load int64) error {
	if load < 0 {
		return invalidf("pod %d: load %d is negative", pod, load)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.members[pod]
	if !ok {
		return invalidf("pod %d is not a member", pod)
	}
	m.load = load
	b.publishLocked()
	return nil
}

// UpdateStats sets what the application measured itself for pod: its open
// connection count (LeastConn adds it to the in-flight picks) and a response
// time folded into the average (zero leaves it alone). The old API's
// UpdatePodStats.
func (b *Balancer) UpdateStats(pod int, conns int64, rt time.Duration) error {
	if conns < 0 || rt < 0 {
		return invalidf("pod %d: negative connections %d or response time %v", pod, conns, rt)
	}
	b.mu.Lock()
	st, ok := b.states[pod]
	_, member := b.members[pod]
	if ok && member && conns != 0 && !b.connsSeen {
		// From now on scans read the reported counts too (see snapshot.conns).
		b.connsSeen = true
		st.conns.Store(conns)
		b.publishLocked()
	}
	b.mu.Unlock()
	if !ok || !member {
		return invalidf("pod %d is not a member", pod)
	}
	st.conns.Store(conns)
	if rt > 0 {
		st.observe(rt, b.now())
	}
	return nil
}

// now is the monotonic time since the balancer was made, in nanoseconds.
func (b *Balancer) now() int64 { return int64(time.Since(b.epoch)) }

func checkPod(p Pod) error {
	switch {
	case p.Index < 0:
		return invalidf("pod index %d is negative", p.Index)
	case p.Weight < 0:
		return invalidf("pod %d: weight %d is negative", p.Index, p.Weight)
	case p.Weight > math.MaxInt32:
		return invalidf("pod %d: weight %d is above %d", p.Index, p.Weight, math.MaxInt32)
	case p.Load < 0:
		return invalidf("pod %d: load %d is negative", p.Index, p.Load)
	}
	return nil
}

// addLocked makes p a member. ramp says whether it may slow-start.
func (b *Balancer) addLocked(p Pod, ramp bool) error {
	if err := checkPod(p); err != nil {
		return err
	}
	if _, dup := b.members[p.Index]; dup {
		return invalidf("pod %d listed twice", p.Index)
	}
	st, err := b.stateLocked(p.Index)
	if err != nil {
		return err
	}
	m := &member{pod: p.Index, weight: max(p.Weight, 1), load: p.Load, state: st, ramp: rampOne}
	b.members[p.Index] = m
	if ramp {
		b.startRampLocked(m)
	}
	b.tableOK = false
	return nil
}

// stateLocked returns pod's state, giving it a slot and counters on first sight.
func (b *Balancer) stateLocked(pod int) (*podState, error) {
	if st, ok := b.states[pod]; ok {
		return st, nil
	}
	slot := len(b.states)
	if slot >= MaxPods {
		return nil, fmt.Errorf("lb: more than %d distinct pods", MaxPods)
	}
	if slot>>blockShift == len(b.conns) {
		b.conns = append(b.conns, new(dense))
		b.inflight = append(b.inflight, new(dense))
	}
	st := &podState{
		pod: pod, slot: slot,
		conns:    &b.conns[slot>>blockShift][slot&(blockSize-1)],
		inflight: &b.inflight[slot>>blockShift][slot&(blockSize-1)],
	}
	for sid := range b.blocks {
		if slot>>blockShift == len(b.blocks[sid]) {
			b.blocks[sid] = append(b.blocks[sid], new(block))
		}
		c := &b.blocks[sid][slot>>blockShift][slot&(blockSize-1)]
		c.done = b.doneFunc(c, st)
	}
	b.states[pod] = st
	return st, nil
}

// doneFunc builds the Done callback of one pod in one stripe.
func (b *Balancer) doneFunc(c *cell, st *podState) func(DoneInfo) {
	return func(info DoneInfo) {
		c.dones.Add(1)
		if b.global {
			st.inflight.Add(-1)
		}
		b.report(st, info)
	}
}

// publishLocked builds a snapshot of the members and swaps it in.
func (b *Balancer) publishLocked() {
	b.capEjectionsLocked()
	b.settleRampsLocked()
	s := &snapshot{
		entries: make([]entry, 0, len(b.members)),
		cells:   make([][]*cell, len(b.blocks)),
		uniform: true,
		conns:   b.connsSeen,
	}
	for _, m := range b.members {
		s.entries = append(s.entries, entry{
			pod: m.pod, weight: m.weight, load: m.load, slot: m.state.slot,
			ramp: m.ramp, ok: m.eligible(), state: m.state,
		})
	}
	slices.SortFunc(s.entries, func(x, y entry) int { return x.pod - y.pod })
	for sid, blocks := range b.blocks {
		row := make([]*cell, len(s.entries))
		for i := range s.entries {
			slot := s.entries[i].slot
			row[i] = &blocks[slot>>blockShift][slot&(blockSize-1)]
		}
		s.cells[sid] = row
	}
	for i := range s.entries {
		e := &s.entries[i]
		if e.ok {
			if len(s.eligible) > 0 && e.weight != s.entries[s.eligible[0]].weight {
				s.uniform = false
			}
			s.eligible = append(s.eligible, int32(i))
			s.cands = append(s.cands, cand{
				load: e.load, conns: e.state.conns, inflight: e.state.inflight, state: e.state,
				i: int32(i), weight: int32(e.weight), ramp: e.ramp,
			})
			s.loadSum += e.load
			s.ramping = s.ramping || e.ramp < rampOne
		}
	}
	s.candCells = make([][]*cell, len(s.cells))
	for sid, row := range s.cells {
		cc := make([]*cell, len(s.cands))
		for k := range s.cands {
			cc[k] = row[s.cands[k].i]
		}
		s.candCells[sid] = cc
	}
	if !b.tableOK {
		b.table = b.strategy.build(s)
		b.tableOK = true
	}
	s.table = b.table
	b.snap.Store(s)
}

// settleRampsLocked ends the slow start of every member when no eligible
// member is at full share: ramping against nobody would only starve the pods
// (an Update that brings a whole new set, the first Update of an empty set).
func (b *Balancer) settleRampsLocked() {
	ramping := false
	for _, m := range b.members {
		if m.eligible() {
			if m.ramp >= rampOne {
				return
			}
			ramping = true
		}
	}
	if !ramping {
		return
	}
	for _, m := range b.members {
		if m.ramp < rampOne {
			m.ramp = rampOne
			b.healthChangedLocked()
		}
	}
}

// Close stops the balancer's timers: an ejected pod stays out and a
// slow-starting pod keeps its current share. Picks keep working.
func (b *Balancer) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.ramper != nil {
		b.ramper.Stop()
	}
	for _, m := range b.members {
		if m.timer != nil {
			m.timer.Stop()
		}
	}
}
