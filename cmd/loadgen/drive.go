package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/obs"
)

// drive runs the load and the scenario, and assembles the report.
func (s *sim) drive(ctx context.Context, progress io.Writer) (*Report, error) {
	cfg := s.cfg
	s.start = time.Now()
	s.measureFrom = s.start.Add(cfg.Warmup)
	bgCtx, stopBg := context.WithCancel(ctx)
	var bg sync.WaitGroup
	goBg := func(f func(context.Context)) {
		bg.Add(1)
		go func() { defer bg.Done(); f(bgCtx) }()
	}
	goBg(s.reap)
	goBg(s.analyzer.Run)
	goBg(func(ctx context.Context) { s.sample(ctx, progress) })
	goBg(func(ctx context.Context) {
		select {
		case <-time.After(cfg.Warmup):
			s.hits0, s.misses0 = s.cacheTotals()
		case <-ctx.Done():
		}
	})

	end := make(chan struct{})
	var scen sync.WaitGroup
	switch {
	case cfg.Scenario == Ramp:
		scen.Add(1)
		go func() { defer scen.Done(); s.ramp(bgCtx, end) }()
	case cfg.Requests <= 0:
		t := time.AfterFunc(cfg.Duration, func() { close(end) })
		defer t.Stop()
	}
	if cfg.Scenario != Steady && cfg.Scenario != Ramp {
		scen.Add(1)
		go func() { defer scen.Done(); s.scenario(bgCtx) }()
	}

	if cfg.Concurrency > 0 {
		s.closedLoop(ctx, end)
	} else {
		s.openLoop(ctx, end)
	}
	stopAt := time.Now()
	scen.Wait()
	stopBg()
	bg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.assemble(ctx, stopAt), nil
}

// eventAt is when the scenario's event happens: a third of the way through
// the measured part.
func (s *sim) eventAt() time.Time {
	return s.measureFrom.Add(max(s.cfg.Duration-s.cfg.Warmup, 0) / 3)
}

// nextOp draws the next operation from r and zipf.
func (s *sim) nextOp(at time.Time, r *rand.Rand, zipf *rand.Zipf) op {
	return op{at: at, user: zipf.Uint64(), repeat: r.Float64() >= s.cfg.NewSessions, pick: r.Float64()}
}

// openLoop sends operations at the configured rate, each stamped with its
// intended start, to a pool of workers, until end (or -requests).
func (s *sim) openLoop(ctx context.Context, end <-chan struct{}) {
	work := make(chan op, 1<<16)
	wait := s.workers(s.cfg.Workers, func(r *rand.Rand) {
		for o := range work {
			if o.schedule == s.schedule.Load() {
				s.released.Add(1)
				s.do(ctx, r, o)
			}
			s.inflight.Add(-1)
		}
	})
	defer func() { close(work); wait() }()
	r := rand.New(rand.NewPCG(s.cfg.Seed, 0))
	zipf := rand.NewZipf(r, s.cfg.Zipf, 1, uint64(s.cfg.Users-1))
	next := time.Now()
	var sent, schedule int64
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := time.Now()
		if sc := s.schedule.Load(); sc != schedule {
			schedule, next = sc, now // a new ramp step: its schedule starts now
		}
		if s.paused.Load() {
			next = now.Add(time.Millisecond)
		}
		// A new ramp step (or a pause) takes effect at once, even while
		// the loop catches up with a backlog it cannot send.
		for !next.After(now) && s.schedule.Load() == schedule && !s.paused.Load() {
			o := s.nextOp(next, r, zipf)
			o.released, o.schedule = now, schedule
			s.inflight.Add(1)
			select {
			case work <- o:
			case <-ctx.Done():
				s.inflight.Add(-1)
				return
			}
			if sent++; s.cfg.Requests > 0 && sent >= s.cfg.Requests {
				return
			}
			next = next.Add(time.Duration(float64(time.Second) / math.Float64frombits(s.rate.Load())))
		}
		timer.Reset(time.Until(next))
		select {
		case <-end:
			return
		case <-ctx.Done():
			return
		case <-timer.C:
		}
	}
}

// closedLoop runs Concurrency workers sending back to back until end (or
// -requests).
func (s *sim) closedLoop(ctx context.Context, end <-chan struct{}) {
	var sent atomic.Int64
	s.workers(s.cfg.Concurrency, func(r *rand.Rand) {
		zipf := rand.NewZipf(r, s.cfg.Zipf, 1, uint64(s.cfg.Users-1))
		for ctx.Err() == nil {
			select {
			case <-end:
				return
			default:
			}
			if s.cfg.Requests > 0 && sent.Add(1) > s.cfg.Requests {
				return
			}
			s.do(ctx, r, s.nextOp(time.Now(), r, zipf))
		}
	})()
}

// workers starts n goroutines running fn, worker w with its own random
// source seeded (Seed, w+1) so that a run repeats; the loop's own source is
// (Seed, 0). The function returned waits for them all.
func (s *sim) workers(n int, fn func(r *rand.Rand)) (wait func()) {
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() { fn(rand.New(rand.NewPCG(s.cfg.Seed, uint64(w)+1))) })
	}
	return wg.Wait
}

// sleepUntil waits for t or the end of ctx; false when ctx ended.
func sleepUntil(ctx context.Context, t time.Time) bool {
	select {
	case <-time.After(time.Until(t)):
		return true
	case <-ctx.Done():
		return false
	}
}

// since is t as seconds since the start of the run.
func (s *sim) since(t time.Time) float64 { return t.Sub(s.start).Seconds() }

// scenario performs the scenario's event.
func (s *sim) scenario(ctx context.Context) {
	if !sleepUntil(ctx, s.eventAt()) {
		return
	}
	switch s.cfg.Scenario {
	case Drain:
		s.drain(ctx)
	case Crash:
		s.crash(ctx)
	case Blip:
		at := time.Now()
		s.blipStart.Store(at.UnixNano())
		err := s.be.blip(ctx, s.cfg.BlipFor)
		s.blipEnd.Store(time.Now().UnixNano())
		s.report.Blip = &BlipReport{At: s.since(at), ForMS: float64(s.cfg.BlipFor.Milliseconds())}
		if err != nil {
			s.fail("blip_restart", "restarting the embedded Redis after the blip: "+err.Error())
		}
	case Storm:
		s.loginStorm(ctx)
	}
}

// drainMaxRequest is the pods' MaxRequest: how long a request may run
// against a pod after it stops taking users.
const drainMaxRequest = 500 * time.Millisecond

// drain takes the last pod out as an operator would: DenyNewCall, a drain
// window in which its users stay, the hand-off of the users still in
// session, then Stop (which publishes Shutdown).
func (s *sim) drain(ctx context.Context) {
	i := len(s.pods) - 1
	p := s.pods[i]
	d := &DrainReport{Pod: i}
	s.report.Drain = d
	if err := p.srv.SetRoutingState(ctx, engine.DenyNewCall); err != nil {
		s.fail("drain_publish", fmt.Sprintf("pod %d publishing DenyNewCall: %v", i, err))
	}
	at := time.Now() // DenyNewCall is published
	s.denyAt[i].Store(at.UnixNano())
	d.DenyAt = s.since(at)
	if !sleepUntil(ctx, at.Add(drainMaxRequest+s.cfg.Refresh)) {
		return
	}
	for _, ss := range s.sess.dropPod(i) {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
		if _, err := p.srv.RemoveLinkedPodWithId(rctx, s.cfg.Namespace, uid(ss.user), s.cfg.Service, i, -1); err == nil {
			d.Released++
		}
		cancel()
	}
	_ = p.srv.Stop(ctx)
	p.gone.Store(true)
	down := time.Now()
	s.downAt[i].Store(down.UnixNano())
	d.ShutdownAt = s.since(down)
	s.sess.dropPod(i) // users who came back within their grace period
}

// crash cuts the last pod off Redis: it stops heartbeating, and its state
// goes stale after the staleness period.
func (s *sim) crash(ctx context.Context) {
	i := len(s.pods) - 1
	p := s.pods[i]
	at := time.Now()
	p.gone.Store(true)
	p.gate.crash()
	s.staleAt[i].Store(at.Add(s.cfg.Staleness).UnixNano())
	c := &CrashReport{Pod: i, At: s.since(at), BoundMS: float64((s.cfg.Staleness + s.cfg.Refresh + 100*time.Millisecond).Milliseconds())}
	s.report.Crash = c
	c.UsersLost = int64(len(s.sess.dropPod(i)))
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		seen := false
		for _, cl := range s.clients {
			if cl.States().IsPodRoutable(s.cfg.Namespace, s.cfg.Service, i) {
				seen = true
			}
		}
		if !seen {
			c.Detected = true
			c.DetectedAfterMS = float64(time.Since(at).Microseconds()) / 1e3
			c.Within = c.DetectedAfterMS <= c.BoundMS
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// loginStorm sends StormUsers users never seen before at once.
func (s *sim) loginStorm(ctx context.Context) {
	inSession, _ := s.sess.counts()
	at := time.Now()
	ops := make(chan op)
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(s.cfg.Seed, 1<<32+uint64(w)))
			for o := range ops {
				s.do(ctx, r, o)
			}
		}()
	}
	for k := range s.cfg.StormUsers {
		ops <- op{at: at, user: uint64(s.cfg.Users + k), storm: true}
	}
	close(ops)
	wg.Wait()
	st := &StormReport{Users: s.cfg.StormUsers, At: s.since(at), CompletedAfterMS: float64(time.Since(at).Microseconds()) / 1e3,
		Latency: s.storm.totals(), Placements: map[string]int64{}, InSession: map[string]int64{}}
	var total, most, placed, mostPlaced int64
	for i := range s.stormPlace {
		n := s.stormPlace[i].Load()
		st.Placements[strconv.Itoa(i)] = n
		st.InSession[strconv.Itoa(i)] = inSession[i]
		total += inSession[i] + n
		most = max(most, inSession[i]+n)
		placed += n
		mostPlaced = max(mostPlaced, n)
	}
	if total > 0 {
		st.Skew = float64(most) / (float64(total) / float64(len(s.stormPlace)))
	}
	if placed > 0 {
		st.PlacedSkew = float64(mostPlaced) / (float64(placed) / float64(len(s.stormPlace)))
	}
	s.report.Storm = st
}

// ramp searches for the capacity (rampSearch): each step runs one rate for
// RampStep and holds when its p99 is within the SLO, without errors, and
// the rate was achieved. Only operations meant to start within the step
// judge it. A rate misses only when it misses twice in a row: a step that
// missed is run again at once (Retry), so that a moment of noise on a busy
// machine does not move the search. After a step that missed, the generator
// pauses until the operations still under way are done (up to the operation
// timeout), so that its backlog is not charged to the next step.
func (s *sim) ramp(ctx context.Context, end chan<- struct{}) {
	defer close(end)
	rp := &RampReport{SLOUS: float64(s.cfg.SLO.Microseconds()), StepMS: float64(s.cfg.RampStep.Milliseconds())}
	s.report.Ramp = rp
	if !sleepUntil(ctx, s.measureFrom) {
		return
	}
	search := newRampSearch(s.cfg.Rate, s.cfg.RampFactor, s.cfg.RampMax)
	defer func() { rp.Capacity, rp.Missed = search.held, search.missed }()
	if s.turn != nil {
		defer s.turn.t.quit(s.turn.side)
		if !s.pause(ctx) {
			return
		}
		s.turn.begin()
	}
	for rate, ok := search.rate(); ok; rate, ok = search.rate() {
		if s.turn != nil && !s.turn.wait(ctx) {
			return
		}
		st, ok := s.rampStep(ctx, rate, rp.SLOUS)
		if !ok {
			return
		}
		rp.Steps = append(rp.Steps, st)
		if !st.Held {
			if st, ok = s.rampStep(ctx, rate, rp.SLOUS); !ok {
				return
			}
			st.Retry = true
			rp.Steps = append(rp.Steps, st)
		}
		search.judged(rate, st.Held)
		if s.turn != nil {
			if !s.pause(ctx) {
				return
			}
			s.turn.pass()
		}
	}
}

// pause stops the open loop, drops what it queued and waits until the
// operations under way are done (up to the operation timeout), so that a
// step's backlog is not charged to the next; false when ctx ended.
func (s *sim) pause(ctx context.Context) bool {
	if s.paused.Swap(true) {
		return true // paused at the end of a step that missed
	}
	s.schedule.Add(1)
	deadline := time.Now().Add(s.cfg.OpTimeout + time.Second)
	for s.inflight.Load() > 0 && time.Now().Before(deadline) {
		if !sleepUntil(ctx, time.Now().Add(5*time.Millisecond)) {
			return false
		}
	}
	return true
}

// rampStep runs one step of the ramp at rate and judges it against the SLO
// (in µs); false when ctx ended first.
func (s *sim) rampStep(ctx context.Context, rate, sloUS float64) (RampStep, bool) {
	start := time.Now()
	s.rate.Store(math.Float64bits(rate))
	s.stepFrom.Store(start.UnixNano())
	s.rec[opRoute].cutStep()
	late0, released0 := s.generatorLate.Load(), s.released.Load()
	s.schedule.Add(1)
	s.paused.Store(false)
	if !sleepUntil(ctx, start.Add(s.cfg.RampStep)) {
		return RampStep{}, false
	}
	l := s.rec[opRoute].cutStep()
	st := RampStep{Rate: rate, At: s.since(start), Achieved: float64(l.Count) / time.Since(start).Seconds(), P99: l.P99, Errors: l.Errors}
	if n := s.released.Load() - released0; n > 0 {
		st.Late = float64(s.generatorLate.Load()-late0) / float64(n)
	}
	st.Held = l.P99 <= sloUS && l.Errors == 0 && st.Achieved >= 0.95*rate
	if !st.Held && !s.pause(ctx) {
		return RampStep{}, false
	}
	return st, true
}

// sample cuts the timeline every second and prints the progress line.
func (s *sim) sample(ctx context.Context, progress io.Writer) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	term := isTerminal(progress)
	lastH, lastM := s.cacheTotals()
	total := s.cfg.Duration
	last := time.Now()
	cut := func(now time.Time) Interval {
		l := s.rec[opRoute].cutInterval()
		h, m := s.cacheTotals()
		perPod, sessions := s.sess.counts()
		secs := now.Sub(last).Seconds()
		iv := Interval{T: s.since(now), Ops: l.Count, Errors: l.Errors, P50: l.P50, P90: l.P90, P99: l.P99, Max: l.Max,
			UsersPerPod: perPod, Sessions: sessions, Rate: float64(l.Count) / secs}
		if n := (h - lastH) + (m - lastM); n > 0 {
			iv.HitRatio = float64(h-lastH) / float64(n)
		}
		lastH, lastM, last = h, m, now
		s.timelineM.Lock()
		s.timeline = append(s.timeline, iv)
		s.timelineM.Unlock()
		return iv
	}
	for {
		select {
		case <-ctx.Done():
			if now := time.Now(); now.Sub(last) > 100*time.Millisecond {
				cut(now) // the last part of a second
			}
			if term && progress != nil && !s.cfg.Quiet {
				fmt.Fprintln(progress)
			}
			return
		case now := <-t.C:
			iv := cut(now)
			if progress == nil || s.cfg.Quiet {
				continue
			}
			line := fmt.Sprintf("[%5.1fs/%v] %6.0f ops/s  p99 %-8s errors %d  sessions %d", iv.T, total, iv.Rate, us(iv.P99), iv.Errors, iv.Sessions)
			if s.cfg.Scenario == Ramp {
				if iv.Ops == 0 && s.paused.Load() {
					continue // the other search's turn (-floor), or a pause after a miss
				}
				what := "rate"
				if s.cfg.fixed {
					what = "floor rate"
				}
				line = fmt.Sprintf("[%5.1fs] %s %.0f: %6.0f ops/s  p99 %-8s errors %d", iv.T, what, math.Float64frombits(s.rate.Load()), iv.Rate, us(iv.P99), iv.Errors)
			}
			if term {
				fmt.Fprintf(progress, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(progress, line)
			}
		}
	}
}

// assemble builds the report once the load has stopped at stopAt.
func (s *sim) assemble(ctx context.Context, stopAt time.Time) *Report {
	cfg := s.cfg
	r := &s.report
	r.Schema, r.Scenario, r.Backend, r.Started = SchemaVersion, cfg.Scenario, s.be.name, s.start
	r.Proxied = s.be.proxies != nil
	mode := "open"
	if cfg.Concurrency > 0 {
		mode = "closed"
	} else {
		r.TargetRate = cfg.Rate
	}
	r.Settings = Settings{Pods: cfg.Pods, Clients: cfg.Clients, Users: cfg.Users, Zipf: cfg.Zipf,
		SessionMS: ms(cfg.Session), NewSessions: cfg.NewSessions, Mode: mode, Rate: cfg.Rate, Concurrency: cfg.Concurrency,
		DurationMS: ms(cfg.Duration), WarmupMS: ms(cfg.Warmup), Seed: cfg.Seed,
		HeartbeatMS: ms(cfg.Heartbeat), StaleMS: ms(cfg.Staleness), RefreshMS: ms(cfg.Refresh), SLOMS: ms(cfg.SLO)}
	r.MeasuredSeconds = max(stopAt.Sub(s.measureFrom).Seconds(), 0)
	r.Ops = map[string]Latency{}
	for _, name := range opNames {
		r.Ops[name] = s.rec[name].totals()
	}
	if r.MeasuredSeconds > 0 {
		r.AchievedRate = float64(r.Ops[opRoute].Count) / r.MeasuredSeconds
	}
	h, m := s.cacheTotals()
	if n := (h - s.hits0) + (m - s.misses0); n > 0 {
		r.CacheHitRatio = float64(h-s.hits0) / float64(n)
	}
	s.errMu.Lock()
	r.Errors = map[string]int64{}
	for k, v := range s.errs {
		r.Errors[k] = v
	}
	r.ErrorSamples = map[string]string{}
	for k, v := range s.samples {
		r.ErrorSamples[k] = v
	}
	s.errMu.Unlock()
	r.GeneratorLate, r.GeneratorReleased = s.generatorLate.Load(), s.released.Load()
	r.Invariants = Invariants{DoubleLinked: s.doubles.Load(), UnroutableRoutes: s.unroutable.Load(),
		DrainViolations: s.drainViol.Load(), ToleranceMS: ms(s.tol)}
	r.Placements = map[string]int64{}
	for i := range s.placements {
		r.Placements[strconv.Itoa(i)] = s.placements[i].Load()
	}
	s.timelineM.Lock()
	r.Timeline = append([]Interval{}, s.timeline...)
	s.timelineM.Unlock()
	r.Skew = s.skew(r.Timeline)
	if d := r.Drain; d != nil {
		d.PlacedAfterDeny = r.Invariants.DrainViolations
		d.ServedDuringDrain = s.served.Load()
		d.Respected = d.PlacedAfterDeny == 0 && d.ShutdownAt > 0 && r.Invariants.DoubleLinked == 0
	}
	if b := r.Blip; b != nil {
		b.ErrorsDuring, b.ErrorsAfter = s.blipErrsDuring.Load(), s.blipErrsAfter.Load()
		if rec := s.recovered.Load(); rec != 0 {
			b.Recovered = true
			b.RecoveredAfterMS = float64(rec-s.blipEnd.Load()) / 1e6
		}
	}
	s.analyzer.Collect()
	r.Findings, _ = s.analyzer.Analyze(ctx)
	if r.Findings == nil {
		r.Findings = []obs.Finding{}
	}
	return r
}

// skew is max/mean users per pod over the pods that took users, for each
// measured interval with users.
func (s *sim) skew(tl []Interval) SkewStats {
	var st SkewStats
	n := 0
	warm := s.since(s.measureFrom)
	for _, iv := range tl {
		if iv.T <= warm {
			continue
		}
		var total, most int64
		pods := 0
		for i, u := range iv.UsersPerPod {
			if out := s.outOfPlacement(i); out != 0 && s.since(time.Unix(0, out)) < iv.T {
				continue // no longer placed on: not part of the balance
			}
			total += u
			most = max(most, u)
			pods++
		}
		if total == 0 || pods == 0 {
			continue
		}
		k := float64(most) / (float64(total) / float64(pods))
		st.Mean += k
		st.Max = max(st.Max, k)
		n++
	}
	if n > 0 {
		st.Mean /= float64(n)
	}
	return st
}

// outOfPlacement is when pod stopped taking users (unix nanos), 0 if never.
func (s *sim) outOfPlacement(pod int) int64 {
	if d := s.denyAt[pod].Load(); d != 0 {
		return d
	}
	if st := s.staleAt[pod].Load(); st != 0 {
		// A crashed pod: its users were dropped when it crashed.
		return st - int64(s.cfg.Staleness)
	}
	return 0
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
