package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/obs"
)

// pod is one simulated server process.
type pod struct {
	idx     int
	srv     *engine.Server
	gate    *gate
	closeSt func()
	// gone is set when the process crashed or shut down: it claims and
	// releases no more users.
	gone atomic.Bool
}

// op is one operation the generator asks for.
type op struct {
	at time.Time // intended start
	// released is when the open loop handed the operation to the workers
	// (zero: at).
	released time.Time
	user     uint64  // a Zipf draw: the user of a new session
	repeat   bool    // a request of a user in session, if any
	pick     float64 // which user in session
	storm    bool
	// schedule is the open loop's schedule the operation belongs to: one
	// of a schedule the ramp left is dropped unsent.
	schedule int64
}

// sim is one run: the fleet, the load and the checks.
type sim struct {
	cfg Config
	be  *backend
	tol time.Duration

	metrics  *obs.Metrics
	analyzer *obs.Analyzer
	pods     []*pod
	clients  []*engine.Client
	watchers []*watcher
	closers  []func()
	sess     *sessions
	rec      map[string]*recorder
	storm    *recorder

	start, measureFrom time.Time

	// truth: when each pod's DenyNewCall and Shutdown were published, and
	// when a crashed pod's state went stale at the latest (unix nanos, 0 =
	// never), as the fleet knows it.
	denyAt, downAt, staleAt []atomic.Int64

	errMu   sync.Mutex
	errs    map[string]int64
	samples map[string]string
	doubles atomic.Int64
	// unsure holds the users whose latest claim ended without an answer
	// (a deadline, a dropped connection): Redis may have taken it. Their
	// next operation re-learns the owner from the claim's reply instead
	// of judging the answer against a model that may be stale.
	unsure     sync.Map // uint64 → struct{}
	unroutable atomic.Int64
	drainViol  atomic.Int64
	placements []atomic.Int64
	stormPlace []atomic.Int64
	served     atomic.Int64 // answers naming the draining pod while it drains

	// Measured-part cache counters, from the clients' stats.
	hits0, misses0 uint64
	routeOK        atomic.Int64
	// generatorLate counts open-loop operations released more than
	// generatorSlack after their slot, of released.
	generatorLate, released atomic.Int64

	// blip bookkeeping (unix nanos).
	blipStart, blipEnd, recovered atomic.Int64
	blipErrsDuring, blipErrsAfter atomic.Int64

	rate atomic.Uint64 // math.Float64bits of the open-loop rate
	// The ramp's step: stepFrom is when it began (unix nanos; operations
	// meant to start before it are not judged with it); schedule changes
	// when the ramp leaves a step (the open loop restarts its schedule, and
	// operations of the old one still queued are dropped unsent); paused
	// stops the open loop between steps; inflight counts the open loop's
	// operations queued or under way.
	stepFrom, schedule, inflight atomic.Int64
	paused                       atomic.Bool
	// table is the fixed user → pod table that replaces routing in a floor
	// run (Config.fixed), nil otherwise.
	table []int32
	// turn is this run's side of the ramp steps it takes in turn with
	// another run (-floor); nil when it runs alone.
	turn      *turn
	timeline  []Interval
	timelineM sync.Mutex
	report    Report
}

// run performs the run cfg asks for and returns its report. With -floor
// a second fleet runs beside the first on the same Redis (namespace
// suffixed "-floor"), routing by a fixed table, and the two capacity
// searches take their steps in turn, so that both meet the same machine
// and the same Redis: run one after the other, the second search met
// whatever the first left in Redis and on the machine, and three runs of
// the same command gave ratios of 44.8, 0.08 and 0.47.
// progress, when not nil, receives the live progress line.
func run(ctx context.Context, cfg Config, progress io.Writer) (*Report, error) {
	be, err := openBackend(cfg)
	if err != nil {
		return nil, err
	}
	defer be.close()
	if !cfg.Floor {
		return newSim(cfg, be, nil).run(ctx, progress)
	}
	fc := cfg
	fc.Floor, fc.fixed, fc.Namespace, fc.Listen = false, true, cfg.Namespace+"-floor", ""
	t := newTurns()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var reps [2]*Report
	var errs [2]error
	var first atomic.Int32 // 1 + the side that failed first
	var wg sync.WaitGroup
	sims := [2]*sim{newSim(cfg, be, &turn{t, 0}), newSim(fc, be, &turn{t, 1})}
	for i, s := range sims {
		wg.Go(func() {
			reps[i], errs[i] = s.run(rctx, progress)
			t.quit(i)
			if errs[i] != nil && first.CompareAndSwap(0, int32(i)+1) {
				cancel() // one run failed: the other stops too
			}
		})
	}
	wg.Wait()
	switch first.Load() {
	case 1:
		return nil, errs[0]
	case 2:
		return nil, fmt.Errorf("the floor's run: %w", errs[1])
	}
	rp := reps[0].Ramp
	rp.Floor = reps[1].Ramp
	// The floor's steps on this run's clock: they took turns with its own.
	shift := sims[1].start.Sub(sims[0].start).Seconds()
	for i := range rp.Floor.Steps {
		rp.Floor.Steps[i].At += shift
	}
	if rp.Floor.Capacity > 0 {
		rp.FloorRatio = rp.Capacity / rp.Floor.Capacity
	}
	return reps[0], nil
}

// newSim prepares a run of cfg on be; tn, when not nil, is its side of
// the turns it takes with another run (-floor).
func newSim(cfg Config, be *backend, tn *turn) *sim {
	s := &sim{cfg: cfg, be: be, turn: tn, sess: newSessions(cfg.Pods), errs: map[string]int64{}, samples: map[string]string{},
		rec:   map[string]*recorder{opRoute: newRecorder(), opClaim: newRecorder(), opRelease: newRecorder()},
		storm: newRecorder(), denyAt: make([]atomic.Int64, cfg.Pods), downAt: make([]atomic.Int64, cfg.Pods),
		staleAt:    make([]atomic.Int64, cfg.Pods),
		placements: make([]atomic.Int64, cfg.Pods), stormPlace: make([]atomic.Int64, cfg.Pods)}
	s.tol = 100 * time.Millisecond
	if cfg.fixed {
		s.table = fixedTable(cfg.Users+cfg.StormUsers, cfg.Pods)
	}
	s.rate.Store(math.Float64bits(cfg.Rate))
	s.metrics = obs.NewMetrics(metrics.NewSet())
	s.analyzer = obs.NewAnalyzer(s.metrics.Snapshot, obs.AnalyzerConfig{Interval: time.Second, MaxP99: cfg.SLO})
	return s
}

// run starts the fleet, drives it and returns the report.
func (s *sim) run(ctx context.Context, progress io.Writer) (*Report, error) {
	defer s.closeFleet()
	if err := s.startFleet(ctx); err != nil {
		return nil, err
	}
	if s.cfg.Listen != "" {
		stop, err := s.serve(s.cfg.Listen)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	return s.drive(ctx, progress)
}

// fixedTable spreads n users over pods by a multiplicative hash: the floor's
// routing, a slice read.
func fixedTable(n, pods int) []int32 {
	t := make([]int32, n)
	for u := range t {
		t[u] = int32((uint64(u) * 0x9E3779B97F4A7C15 >> 32) % uint64(pods))
	}
	return t
}

// serve exposes the metrics and the analyzer's report on addr.
func (s *sim) serve(addr string) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: obs.Handler(s.metrics, s.analyzer), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	return func() { _ = srv.Close(); <-done }, nil
}

// timing is the engine timing of the fleet.
func (s *sim) timing() engine.Timing {
	return engine.Timing{Heartbeat: s.cfg.Heartbeat, Staleness: s.cfg.Staleness, Refresh: s.cfg.Refresh}
}

// startFleet starts the server pods and the client processes, each with its
// own Redis client.
func (s *sim) startFleet(ctx context.Context) error {
	for i := range s.cfg.Pods {
		g := &gate{}
		st, closeSt, err := s.be.open(false, g)
		if err != nil {
			return err
		}
		s.closers = append(s.closers, closeSt)
		srv, err := engine.NewServer(engine.ServerConfig{Store: st, Namespace: s.cfg.Namespace, Service: s.cfg.Service, Pod: i,
			Timing: s.timing(), MaxRequest: drainMaxRequest, Observer: s.metrics})
		if err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = srv.Start(sctx)
		cancel()
		if err != nil {
			return fmt.Errorf("starting pod %d: %w", i, err)
		}
		s.pods = append(s.pods, &pod{idx: i, srv: srv, gate: g, closeSt: closeSt})
	}
	for i := range s.cfg.Clients {
		w := newWatcher(s, i)
		s.watchers = append(s.watchers, w)
		st, closeSt, err := s.be.open(true, nil)
		if err != nil {
			return err
		}
		s.closers = append(s.closers, closeSt)
		// A crashed pod cannot release its users: the fleet lets clients
		// move users off a pod that is gone.
		c, err := engine.NewClient(engine.ClientConfig{Store: st, Timing: s.timing(), RelinkPersistent: true,
			TempLinkTTL: 60 * time.Second, Observer: obs.Join(s.metrics, w)})
		if err != nil {
			return err
		}
		s.clients = append(s.clients, c)
		s.metrics.Watch(c) // for the analyzer's cache hit ratio
	}
	return nil
}

// closeFleet stops the pods (without draining) and the clients.
func (s *sim) closeFleet() {
	var wg sync.WaitGroup
	for _, p := range s.pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A cut-short drain: the run is over. Stop still withdraws the
			// pod and ends its goroutines.
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_ = p.srv.Stop(ctx)
		}()
	}
	wg.Wait()
	for _, c := range s.clients {
		c.Close()
		s.metrics.Unwatch(c)
	}
	for _, f := range s.closers {
		f()
	}
}

// watcher observes one client: when its view of the pod states first
// included each pod's DenyNewCall and Shutdown, and each user it places.
type watcher struct {
	s      *sim
	client int
	// knowDeny and knowDown hold, per pod, when a refresh that began after
	// the publish ended (unix nanos; 0 = not yet): from then on the client's
	// decisions must reflect it.
	knowDeny, knowDown []atomic.Int64
}

func newWatcher(s *sim, client int) *watcher {
	return &watcher{s: s, client: client, knowDeny: make([]atomic.Int64, s.cfg.Pods), knowDown: make([]atomic.Int64, s.cfg.Pods)}
}

func (w *watcher) Begin(ctx context.Context, _ *engine.Op) context.Context { return ctx }

func (w *watcher) End(_ context.Context, op *engine.Op) {
	if op.Kind != engine.OpRefresh || op.Err != nil {
		return
	}
	began, ended := op.Start.UnixNano(), time.Now().UnixNano()
	for p := range w.knowDeny {
		if d := w.s.denyAt[p].Load(); d != 0 && began > d {
			w.knowDeny[p].CompareAndSwap(0, ended)
		}
		if d := w.s.downAt[p].Load(); d != 0 && began > d {
			w.knowDown[p].CompareAndSwap(0, ended)
		}
	}
}

func (w *watcher) Note(_ context.Context, n engine.Note) {
	s := w.s
	if n.Pod < 0 || n.Pod >= len(s.placements) {
		return
	}
	switch n.Kind {
	case engine.NotePicked:
		if knew(&w.knowDeny[n.Pod], time.Now().Add(-n.Duration)) {
			// The client picked, for a new user, a pod it knew took no
			// new users.
			s.drainViol.Add(1)
		}
	case engine.NotePlaced, engine.NoteRelinked:
		s.placements[n.Pod].Add(1)
	}
}

// knew reports whether the time in k (unix nanos, 0 = never) is before t.
func knew(k *atomic.Int64, t time.Time) bool {
	v := k.Load()
	return v != 0 && v < t.UnixNano()
}

// offLimits reports whether client w, in a call that began at began, may not
// answer pod: its view already held the pod's Shutdown, or the crashed pod's
// last state was older than the staleness window (clients judge that by
// their own clock, no refresh needed).
func (s *sim) offLimits(w *watcher, pod int, began time.Time) bool {
	if knew(&w.knowDown[pod], began) {
		return true
	}
	st := s.staleAt[pod].Load()
	return st != 0 && began.UnixNano() > st+int64(s.tol)
}

// inView reports whether client c sees pod as routable.
func (s *sim) inView(c *engine.Client, pod int) bool {
	return c.States().IsPodRoutable(s.cfg.Namespace, s.cfg.Service, pod)
}

// fail counts a failed operation by class, and keeps the first sample of
// each class (what happened, to whom) for the report.
func (s *sim) fail(class, sample string) {
	s.errMu.Lock()
	s.errs[class]++
	if _, ok := s.samples[class]; !ok {
		s.samples[class] = sample
	}
	s.errMu.Unlock()
}

// failErr counts a failed operation by the class of err (obs.ErrorClass),
// err's message its sample.
func (s *sim) failErr(err error) { s.fail(obs.ErrorClass(err), err.Error()) }

// uid names user u.
func uid(u uint64) string { return "user-" + strconv.FormatUint(u, 10) }

// do performs one operation: a routing call, then the claim that starts a
// session or the move of one whose pod went away; and checks the answer.
func (s *sim) do(ctx context.Context, r *rand.Rand, o op) {
	user := o.user
	if o.repeat {
		if u, ok := s.sess.pick(o.pick); ok {
			user = u
		}
	}
	id := uid(user)
	k := int(user % uint64(len(s.clients)))
	c, w := s.clients[k], s.watchers[k]
	owner, had := s.sess.get(user)
	ownerBefore := had && s.inView(c, owner)
	measured := !o.at.Before(s.measureFrom)
	began := time.Now()
	octx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	var pod int
	var err error
	if s.table != nil {
		pod = int(s.table[user%uint64(len(s.table))])
	} else {
		pod, err = c.ComputeLinkedPod(octx, s.cfg.Namespace, id, s.cfg.Service)
	}
	took := time.Since(s.startOf(o))
	s.rec[opRoute].record(took, err != nil, measured, o.at.UnixNano() >= s.stepFrom.Load())
	if o.storm {
		s.storm.record(took, err != nil, true, false)
	}
	s.noteBlip(began, err)
	if err != nil {
		if ctx.Err() == nil {
			s.failErr(err)
		}
		return
	}
	s.routeOK.Add(1)
	if s.offLimits(w, pod, began) {
		s.unroutable.Add(1)
	}
	if had && owner == pod {
		if s.denyAt[pod].Load() != 0 && s.downAt[pod].Load() == 0 {
			s.served.Add(1)
		}
		return
	}
	_, unsure := s.unsure.LoadAndDelete(user)
	if had && ownerBefore && s.inView(c, owner) && !unsure && s.sess.heldBefore(user, owner, began) {
		// The pod holding the user was routable to this client before and
		// after the call, and held it throughout (no claim moved it
		// meanwhile), yet it answered another: a user on two pods.
		s.doubles.Add(1)
		return
	}
	s.claim(octx, r, c, user, id, pod, began, had, measured, o.storm, unsure)
}

// claimedAway reports whether a claim refused because owner holds user
// shows the client routing the user away from its pod: owner, which the
// client sees routable, held the user from before the routing call began.
// A claim that landed during the call raced this one (two operations of a
// user with no link, one answering from a link that lapsed as it read it),
// and the refusal settled it: the user is on one pod.
func (s *sim) claimedAway(c *engine.Client, user uint64, owner int, began time.Time) bool {
	return s.sess.heldBefore(user, owner, began) && s.inView(c, owner)
}

// generatorSlack is how late the open loop may release an operation and
// still have it timed from its release: Go's timers fire up to about 1 ms
// late on some hosts (measured here: 1.05 ms for a 50 µs sleep), and the
// generator's own tick must not be charged to the system under test.
// Released later than that (the generator fell behind), the operation is
// timed from its intended start, so a stall still shows in full.
const generatorSlack = 2 * time.Millisecond

// startOf is the moment o's latency is timed from.
func (s *sim) startOf(o op) time.Time {
	if o.released.IsZero() {
		return o.at
	}
	if late := o.released.Sub(o.at); late > generatorSlack {
		s.generatorLate.Add(1)
		return o.at
	}
	return o.released
}

// claim has pod take user persistently: a new session, or one moved off a
// pod that went away; began is when the routing call that chose pod began.
// unsure says the user's previous claim ended without an answer: a refusal
// then names the owner the model missed, not a second pod.
func (s *sim) claim(ctx context.Context, r *rand.Rand, c *engine.Client, user uint64, id string, pod int, began time.Time, moving, measured, storm, unsure bool) {
	p := s.pods[pod]
	if p.gone.Load() {
		s.fail("pod_down", fmt.Sprintf("user %s routed to pod %d, which is gone (crashed or shut down), before its claim", id, pod))
		return
	}
	start := time.Now()
	owner, err := p.srv.TrySetLinkedPod(ctx, s.cfg.Namespace, id, s.cfg.Service, pod)
	refused := errors.Is(err, engine.ErrClaimed) || errors.Is(err, engine.ErrDraining)
	s.rec[opClaim].record(time.Since(start), err != nil && !refused, measured, false)
	switch {
	case errors.Is(err, engine.ErrDraining):
		// The pod drains: it keeps the users linked to it and takes no
		// other (one whose link lapsed while a client still had it cached).
		s.fail("draining", fmt.Sprintf("pod %d claiming user %s: %v", pod, id, err))
		return
	case errors.Is(err, engine.ErrClosed):
		s.fail("pod_down", fmt.Sprintf("pod %d stopped while claiming user %s: %v", pod, id, err))
		return
	case errors.Is(err, engine.ErrClaimed) && unsure:
		if moving {
			s.sess.move(user, owner)
		} else if s.sess.start(user, owner, time.Now().Add(s.cfg.Session)) {
			s.setLoad(ctx, owner)
		}
		return
	case errors.Is(err, engine.ErrClaimed):
		if s.claimedAway(c, user, owner, began) {
			s.doubles.Add(1)
		}
		return
	case err != nil:
		switch {
		case p.gone.Load():
			s.fail("pod_down", fmt.Sprintf("pod %d crashed while claiming user %s (its connections were cut): %v", pod, id, err))
		case ctx.Err() == nil || errors.Is(err, context.DeadlineExceeded):
			s.failErr(err)
		}
		s.unsure.Store(user, struct{}{})
		return
	}
	if moving {
		if from, ok := s.sess.get(user); ok && from != pod {
			defer s.setLoad(ctx, from)
		}
		s.sess.move(user, pod)
		s.setLoad(ctx, pod)
		return
	}
	life := time.Duration(r.ExpFloat64() * float64(s.cfg.Session))
	if s.sess.start(user, pod, time.Now().Add(life)) {
		if storm {
			s.stormPlace[pod].Add(1)
		}
		s.setLoad(ctx, pod)
	}
}

// noteBlip keeps the store-blip figures: errors during and after the outage,
// and the first success after it.
func (s *sim) noteBlip(began time.Time, err error) {
	bs := s.blipStart.Load()
	if bs == 0 || began.UnixNano() < bs {
		return
	}
	be := s.blipEnd.Load()
	switch {
	case be == 0 && err != nil:
		s.blipErrsDuring.Add(1)
	case be != 0 && began.UnixNano() >= be && err != nil:
		s.blipErrsAfter.Add(1)
	case be != 0 && began.UnixNano() >= be:
		s.recovered.CompareAndSwap(0, time.Now().UnixNano())
	}
}

// reap ends the sessions whose time is up: their pod releases them with a
// grace period during which they still reach it.
func (s *sim) reap(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	defer wg.Wait()
	grace := int(s.cfg.Grace / time.Second)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, ss := range s.sess.expired(time.Now()) {
			p := s.pods[ss.pod]
			if p.gone.Load() {
				s.sess.finish(ss.user)
				continue
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() {
					if pod := s.sess.finish(ss.user); pod >= 0 {
						s.setLoad(ctx, pod)
					}
					<-sem
					wg.Done()
				}()
				rctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
				defer cancel()
				start := time.Now()
				_, err := p.srv.RemoveLinkedPodWithId(rctx, s.cfg.Namespace, uid(ss.user), s.cfg.Service, ss.pod, grace)
				if ctx.Err() != nil {
					return // the run ended: not a failure of the release
				}
				s.rec[opRelease].record(time.Since(start), err != nil, !start.Before(s.measureFrom), false)
				switch {
				case err != nil && (p.gone.Load() || errors.Is(err, engine.ErrClosed)):
					s.fail("pod_down", fmt.Sprintf("pod %d crashed or stopped while releasing user %s: %v", ss.pod, uid(ss.user), err))
				case err != nil:
					s.failErr(err)
				}
			}()
		}
	}
}

// setLoad has pod set its number of users in session as its load, as an
// application does on every user it gains or loses: the Server publishes
// it at once, or coalesces it with others within its load interval.
func (s *sim) setLoad(ctx context.Context, pod int) {
	p := s.pods[pod]
	if p.gone.Load() {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, s.cfg.Heartbeat)
	defer cancel()
	_ = p.srv.SetLoadState(lctx, s.sess.count(pod)) // a failed publish is retried by the next heartbeat
}

// cacheTotals sums the clients' cache hits and misses.
func (s *sim) cacheTotals() (hits, misses uint64) {
	for _, c := range s.clients {
		st := c.CacheStats()
		hits += st.Hits
		misses += st.Misses
	}
	return hits, misses
}
