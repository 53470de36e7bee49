package engine_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redisproc"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

// ownBackend is a Redis of the test's own, so that every command it
// processes is one the test's processes sent: the embedded one, a standalone
// redis-server, or a one-node Redis Cluster (all 16384 slots on one node).
type ownBackend struct {
	name  string
	addrs []string // empty for the embedded one
	b     *redistest.Backend
}

func startOwn(t *testing.T, name string) *ownBackend {
	t.Helper()
	switch name {
	case redistest.Embedded:
		return &ownBackend{name: name, b: redistest.Open(t, name)}
	case redistest.Standalone:
		srv := redisproc.Start(t)
		return &ownBackend{name: name, addrs: []string{srv.Addr}}
	}
	srv := redisproc.Start(t, "--cluster-enabled", "yes")
	if err := redisproc.Do(t, srv.Addr, "CLUSTER", "ADDSLOTSRANGE", "0", "16383").Error(); err != nil {
		t.Fatal(err)
	}
	redistest.Poll(t, 10*time.Second, "the one-node cluster ok", func() bool {
		s, err := redisproc.Do(t, srv.Addr, "CLUSTER", "INFO").ToString()
		return err == nil && strings.Contains(s, "cluster_state:ok")
	})
	return &ownBackend{name: name, addrs: []string{srv.Addr}}
}

// plain returns a store on a client of the test's own, which the store does
// not close: after the store's Close the client stays open, so a call that
// reached Redis anyway would be seen.
func (o *ownBackend) plain(t *testing.T) *store.Redis {
	t.Helper()
	if o.b != nil {
		return store.New(o.b.Client)
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: o.addrs, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return store.New(c)
}

// tracked returns a store as an application dials it (with tracking on a
// real Redis), closed when t ends.
func (o *ownBackend) tracked(t *testing.T) *store.Redis {
	t.Helper()
	if o.b != nil {
		return store.New(o.b.Client)
	}
	return dial(t, store.DialConfig{Addrs: o.addrs})
}

// observing are the commands the count leaves out: the connection that asks
// (its handshake and INFO) and the client library's keep-alive (PING).
var observing = []string{"info", "ping", "hello", "client|setinfo", "client|setname"}

// commands returns how many commands the server processed, leaving out the
// observing ones.
func (o *ownBackend) commands(t *testing.T) int {
	t.Helper()
	if o.b != nil {
		return o.b.Mini.CommandCount()
	}
	s, err := redisproc.Do(t, o.addrs[0], "INFO", "commandstats").ToString()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(s, "\r\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok || slices.Contains(observing, name) {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		c, err := strconv.Atoi(calls)
		if err != nil {
			t.Fatalf("INFO commandstats line %q", line)
		}
		n += c
	}
	return n
}

// call is one exported method called with some context; it returns the
// method's error (nil for methods without one) and whether the other
// results were the "nothing" a closed object answers (NoPod, false, empty).
type methodCall func(ctx context.Context) (err error, nothing bool)

// exported returns the exported method names of v's type.
func exported(v any) []string {
	var names []string
	tp := reflect.TypeOf(v)
	for i := range tp.NumMethod() {
		names = append(names, tp.Method(i).Name)
	}
	return names
}

// checkCovers fails t unless table names every exported method of v except
// those in skip (methods that only read in-memory values).
func checkCovers(t *testing.T, what string, v any, table map[string]methodCall, skip ...string) {
	t.Helper()
	for _, m := range exported(v) {
		if _, ok := table[m]; !ok && !slices.Contains(skip, m) {
			t.Errorf("%s.%s has no row in the lifecycle table", what, m)
		}
	}
}

// clientCalls are the Client's methods that touch links, with valid arguments.
func clientCalls(c *engine.Client, ns string) map[string]methodCall {
	// readU1 is the row of a reader of u1's link, whose "nothing" is NoPod.
	readU1 := func(read func(ctx context.Context, ns, uid, svc string) (int, error)) methodCall {
		return func(ctx context.Context) (error, bool) {
			p, err := read(ctx, ns, "u1", svc)
			return err, p == engine.NoPod
		}
	}
	return map[string]methodCall{
		"ComputeLinkedPod":               readU1(c.ComputeLinkedPod),
		"GetLinkedPod":                   readU1(c.GetLinkedPod),
		"GetLinkedPodInCacheOrIfPersist": readU1(c.GetLinkedPodInCacheOrIfPersist),
		"GetLinkedPodNotCache":           readU1(c.GetLinkedPodNotCache),
		"SetCache": func(ctx context.Context) (error, bool) {
			err := c.SetCache(ctx, ns, "u2", svc, 1)
			return err, c.GetLinkedInCache(ns, "u2", svc) == engine.NoPod
		},
		"GetLinkService": func(ctx context.Context) (error, bool) {
			m, err := c.GetLinkService(ctx, ns, "u1")
			return err, len(m) == 0
		},
		"BatchGetLinkedPod": func(ctx context.Context) (error, bool) {
			g, err := c.BatchGetLinkedPod(ctx, ns, []string{"u1", "u3"}, svc)
			return err, len(g) == 0
		},
		"SetLinkedPodIfAbsent": func(ctx context.Context) (error, bool) {
			p, err := c.SetLinkedPodIfAbsent(ctx, ns, "u4", svc, 0)
			return err, p == engine.NoPod
		},
		"CheckTracking": func(ctx context.Context) (error, bool) {
			st, err := c.CheckTracking(ctx)
			return err, len(st.Tables) == 0
		},
		"GetLinkedInCache": func(context.Context) (error, bool) {
			return nil, c.GetLinkedInCache(ns, "u1", svc) == engine.NoPod
		},
		"CacheExpired": func(context.Context) (error, bool) {
			return nil, c.CacheExpired(ns, "u1", svc) == engine.NoPod
		},
	}
}

// statesCalls are the methods of a client's States.
func statesCalls(s *engine.States, ns string) map[string]methodCall {
	return map[string]methodCall{
		"Snapshot": func(ctx context.Context) (error, bool) {
			snap, err := s.Snapshot(ctx, ns, svc)
			return err, len(snap.Pods) == 0
		},
		"AlivePods": func(ctx context.Context) (error, bool) {
			p, err := s.AlivePods(ctx, ns, svc)
			return err, len(p) == 0
		},
		"RoutablePods": func(ctx context.Context) (error, bool) {
			p, err := s.RoutablePods(ctx, ns, svc)
			return err, len(p) == 0
		},
		"GetServiceBestPod": func(ctx context.Context) (error, bool) {
			p, err := s.GetServiceBestPod(ctx, ns, svc)
			return err, p == engine.NoPod
		},
		"GetPodLoadScore": func(ctx context.Context) (error, bool) {
			l, err := s.GetPodLoadScore(ctx, ns, svc, 0)
			return err, l == 0
		},
		"GetServiceState": func(ctx context.Context) (error, bool) {
			st, err := s.GetServiceState(ctx, ns, svc)
			return err, len(st.Pods) == 0
		},
		"IsPodRoutable": func(context.Context) (error, bool) { return nil, !s.IsPodRoutable(ns, svc, 0) },
		"IsPodAvailable": func(context.Context) (error, bool) {
			return nil, !s.IsPodAvailable(ns, svc, 0)
		},
		"Subscribe": func(context.Context) (error, bool) {
			s.Subscribe(func(engine.Event) {})() // delivers nothing, cancels at once
			return nil, true
		},
	}
}

// serverCalls are a Server's methods that write or publish.
func serverCalls(s *engine.Server, ns string) map[string]methodCall {
	return map[string]methodCall{
		"SetLoadState":    func(ctx context.Context) (error, bool) { return s.SetLoadState(ctx, 3), true },
		"SetRoutingState": func(ctx context.Context) (error, bool) { return s.SetRoutingState(ctx, engine.Ready), true },
		"SetLinkedPod": func(ctx context.Context) (error, bool) {
			p, err := s.SetLinkedPod(ctx, ns, "u5", svc, 0)
			return err, p == store.NoPod
		},
		"TrySetLinkedPod": func(ctx context.Context) (error, bool) {
			p, err := s.TrySetLinkedPod(ctx, ns, "u5", svc, 0)
			return err, p == store.NoPod
		},
		"RemoveLinkedPod": func(ctx context.Context) (error, bool) {
			ok, err := s.RemoveLinkedPod(ctx, ns, "u1", svc)
			return err, !ok
		},
		"RemoveLinkedPodWithId": func(ctx context.Context) (error, bool) {
			ok, err := s.RemoveLinkedPodWithId(ctx, ns, "u1", svc, 0, 5)
			return err, !ok
		},
		"Start": func(ctx context.Context) (error, bool) { return s.Start(ctx), true },
	}
}

// storeCalls are the store's operations.
func storeCalls(st *store.Redis, ns string) map[string]methodCall {
	nothing := func(p int, err error) (error, bool) { return err, p == store.NoPod }
	return map[string]methodCall{
		"SetLinkedPod": func(ctx context.Context) (error, bool) {
			return nothing(st.SetLinkedPod(ctx, ns, "u1", svc, 1, store.Persistent))
		},
		"TrySetLinkedPod": func(ctx context.Context) (error, bool) {
			c, err := st.TrySetLinkedPod(ctx, ns, "u1", svc, 1, store.Persistent)
			return err, !c.Claimed && c.Owner == store.NoPod
		},
		"SetLinkedPodIfAbsent": func(ctx context.Context) (error, bool) {
			return nothing(st.SetLinkedPodIfAbsent(ctx, ns, "u6", svc, 1, 30))
		},
		"ReplaceLinkedPod": func(ctx context.Context) (error, bool) {
			ok, p, err := st.ReplaceLinkedPod(ctx, ns, "u1", svc, 0, 1, 30)
			return err, !ok && p == store.NoPod
		},
		"GetLinkedPod": func(ctx context.Context) (error, bool) { return nothing(st.GetLinkedPod(ctx, ns, "u1", svc)) },
		"GetLinkedPodIfPersist": func(ctx context.Context) (error, bool) {
			return nothing(st.GetLinkedPodIfPersist(ctx, ns, "u1", svc))
		},
		"RemoveLinkedPod": func(ctx context.Context) (error, bool) {
			ok, err := st.RemoveLinkedPod(ctx, ns, "u1", svc, store.Persistent)
			return err, !ok
		},
		"RemoveLinkedPodWithId": func(ctx context.Context) (error, bool) {
			ok, err := st.RemoveLinkedPodWithId(ctx, ns, "u1", svc, 0, store.Persistent)
			return err, !ok
		},
		"GetLinkService": func(ctx context.Context) (error, bool) {
			m, err := st.GetLinkService(ctx, ns, "u1")
			return err, len(m) == 0
		},
		"BatchGetLinkedPod": func(ctx context.Context) (error, bool) {
			g, err := st.BatchGetLinkedPod(ctx, ns, []string{"u1"}, svc)
			return err, len(g) == 0
		},
		"SetServiceState": func(ctx context.Context) (error, bool) {
			u, err := st.SetServiceState(ctx, ns, svc, 0, 1, store.Ready)
			return err, u == 0
		},
		"GetServiceState": func(ctx context.Context) (error, bool) {
			s, err := st.GetServiceState(ctx, ns, svc)
			return err, len(s.Pods) == 0
		},
		"PublishServiceState": func(ctx context.Context) (error, bool) {
			p, err := st.PublishServiceState(ctx, ns, svc, 0, 1, store.Ready)
			return err, p == (store.Published{})
		},
		"RequestRoutingState": func(ctx context.Context) (error, bool) {
			return st.RequestRoutingState(ctx, ns, svc, 0, store.DenyNewCall), true
		},
		"ClearRoutingRequest": func(ctx context.Context) (error, bool) {
			ok, err := st.ClearRoutingRequest(ctx, ns, svc, 0)
			return err, !ok
		},
		"RoutingRequests": func(ctx context.Context) (error, bool) {
			m, err := st.RoutingRequests(ctx, ns, svc)
			return err, len(m) == 0
		},
		"RemoveServiceState": func(ctx context.Context) (error, bool) {
			ok, err := st.RemoveServiceState(ctx, ns, svc, 0)
			return err, !ok
		},
		"SetWorkloadState": func(ctx context.Context) (error, bool) {
			u, err := st.SetWorkloadState(ctx, ns, svc, 1, 1, 5)
			return err, u == 0
		},
		"GetWorkloadState": func(ctx context.Context) (error, bool) {
			w, err := st.GetWorkloadState(ctx, ns, svc)
			return err, w == (store.WorkloadState{})
		},
		"GetWorkloadStateBatch": func(ctx context.Context) (error, bool) {
			m, err := st.GetWorkloadStateBatch(ctx, ns, []string{svc})
			return err, len(m) == 0
		},
		"GetLinkedPodTracked": func(ctx context.Context) (error, bool) {
			l, err := st.GetLinkedPodTracked(ctx, ns, "u1", svc, time.Minute)
			return err, l.Pod == store.NoPod
		},
		"SetLinkedPodIfAbsentTracked": func(ctx context.Context) (error, bool) {
			p, err := st.SetLinkedPodIfAbsentTracked(ctx, ns, "u7", svc, 1, 30)
			return err, p.Link.Pod == store.NoPod && !p.Placed
		},
		"LinkedPodsTracked": func(ctx context.Context) (error, bool) {
			p, err := st.LinkedPodsTracked(ctx, ns, []string{"u1"}, svc, time.Minute)
			return err, len(p) == 0
		},
		"TrackingTables": func(ctx context.Context) (error, bool) {
			tt, err := st.TrackingTables(ctx)
			return err, len(tt) == 0
		},
		"UserLinks": func(ctx context.Context) (error, bool) {
			l, err := st.UserLinks(ctx, ns, "u1", []string{svc})
			return err, len(l) == 0
		},
		"Services": func(ctx context.Context) (error, bool) {
			s, err := st.Services(ctx, ns)
			return err, len(s) == 0
		},
	}
}

// runClosed calls every row with a live context and checks each answers
// ErrClosed (or nothing, for the methods without an error) and that the
// server processed no command meanwhile.
func runClosed(t *testing.T, o *ownBackend, what string, table map[string]methodCall) {
	t.Helper()
	ctx := redistest.Ctx(t)
	before := o.commands(t)
	names := make([]string, 0, len(table))
	for name := range table {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		err, nothing := table[name](ctx)
		if err != nil && !errors.Is(err, engine.ErrClosed) {
			t.Errorf("%s.%s after close: %v, want ErrClosed", what, name, err)
		}
		if !nothing {
			t.Errorf("%s.%s after close answered something", what, name)
		}
	}
	if n := o.commands(t) - before; n != 0 {
		t.Errorf("%s: the server processed %d commands from methods called after close, want 0", what, n)
	}
}

// TestClosedSendsNothing: after Client.Close, Server.Stop and store.Close
// every exported method returns ErrClosed (or nothing) and the server, one
// of the test's own, processes no command; on every backend. The tables
// must cover every exported method.
func TestClosedSendsNothing(t *testing.T) {
	for _, name := range redistest.Names {
		t.Run(name, func(t *testing.T) {
			o := startOwn(t, name)
			ctx := redistest.Ctx(t)
			ns := redistest.Namespace(t)
			pods := o.plain(t)
			srv, err := engine.NewServer(engine.ServerConfig{Store: pods, Namespace: ns, Service: svc, Pod: 0,
				Timing: testTiming, MaxRequest: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Start(ctx); err != nil {
				t.Fatal(err)
			}
			tracked := o.tracked(t)
			c, err := engine.NewClient(engine.ClientConfig{Store: tracked, Timing: testTiming})
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range []string{"u1", "u3"} {
				if _, err := c.ComputeLinkedPod(ctx, ns, u, svc); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := srv.TrySetLinkedPod(ctx, ns, "u1", svc, 0); err != nil {
				t.Fatal(err)
			}

			// The client and the server closed, their stores left open.
			// Both first: the server counts every command, and one still
			// running would send its refreshes or heartbeats while the other
			// is checked (beside stress-ng, a heartbeat landed in the
			// client's checks).
			c.Close()
			stop, cancel := context.WithCancel(ctx)
			cancel() // no drain
			_ = srv.Stop(stop)
			// A round trip on each connection, after whatever a call that
			// gave up left in it: Redis has processed all of it before the
			// counts below begin.
			for _, st := range []*store.Redis{pods, tracked} {
				if err := st.Client().Do(ctx, st.Client().B().Ping().Build()).Error(); err != nil {
					t.Fatal(err)
				}
			}
			cc, sc := clientCalls(c, ns), statesCalls(c.States(), ns)
			checkCovers(t, "Client", c, cc, "States", "CacheStats", "DegradedStats", "Tracking", "Close")
			checkCovers(t, "States", c.States(), sc)
			runClosed(t, o, "Client", cc)
			runClosed(t, o, "States", sc)

			svr := serverCalls(srv, ns)
			checkCovers(t, "Server", srv, svr, "GetLoadState", "GetRoutingState", "RequestedRoutingState", "Stats", "Stop")
			runClosed(t, o, "Server", svr)
			if err := srv.Stop(ctx); err != nil {
				t.Errorf("Stop again: %v, want nil", err)
			}

			// The store: its client stays open (a store made by New).
			pods.Close()
			pods.Close() // idempotent
			stc := storeCalls(pods, ns)
			checkCovers(t, "store.Redis", pods, stc, "Client", "Close", "Tracker", "Broadcast")
			runClosed(t, o, "store", stc)
		})
	}
}

// TestNilContexts: every exported method that takes a context rejects a
// nil one with an error matching store.ErrInvalidArgument, and sends
// nothing; the objects work normally afterwards.
func TestNilContexts(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ns := redistest.Namespace(t)
		st := store.New(b.Client)
		srv, err := engine.NewServer(engine.ServerConfig{Store: st, Namespace: ns, Service: svc, Pod: 0,
			Timing: testTiming, MaxRequest: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		c, err := engine.NewClient(engine.ClientConfig{Store: st, Timing: testTiming})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		tables := map[string]map[string]methodCall{
			"Client": clientCalls(c, ns), "States": statesCalls(c.States(), ns),
			"Server": serverCalls(srv, ns), "store": storeCalls(st, ns),
		}
		tables["Server"]["Stop"] = func(ctx context.Context) (error, bool) { return srv.Stop(ctx), true }
		noContext := []string{"GetLinkedInCache", "CacheExpired", "IsPodRoutable", "IsPodAvailable", "Subscribe"}
		var nilCtx context.Context
		for what, table := range tables {
			for name, call := range table {
				if slices.Contains(noContext, name) {
					continue
				}
				err, _ := call(nilCtx)
				if !errors.Is(err, store.ErrInvalidArgument) || !strings.Contains(err.Error(), "ctx") {
					t.Errorf("%s.%s(nil ctx) = %v, want an invalid argument naming ctx", what, name, err)
				}
			}
		}
		// All still usable.
		ctx := redistest.Ctx(t)
		if err := srv.Start(ctx); err != nil {
			t.Fatalf("Start after the nil-context calls: %v", err)
		}
		stop, cancel := context.WithCancel(ctx)
		cancel()
		defer func() { _ = srv.Stop(stop) }()
		redistest.Poll(t, 10*time.Second, "pod 0 accepting", func() bool {
			snap, err := c.States().Snapshot(ctx, ns, svc)
			return err == nil && len(snap.Pods) == 1 && snap.Pods[0].Accepting
		})
		if pod, err := c.ComputeLinkedPod(ctx, ns, "after", svc); pod != 0 || err != nil {
			t.Fatalf("ComputeLinkedPod after the nil-context calls = %d, %v", pod, err)
		}
	})
}

// panicker is an Observer that panics the first time a round trip ends, and
// observes nothing else.
type panicker struct{ fired atomic.Bool }

func (p *panicker) Begin(ctx context.Context, _ *engine.Op) context.Context { return ctx }
func (p *panicker) Note(context.Context, engine.Note)                       {}
func (p *panicker) End(_ context.Context, op *engine.Op) {
	if op.Kind == engine.OpRoundTrip && p.fired.CompareAndSwap(false, true) {
		panic("observer panic")
	}
}

// recovered runs fn and returns what it panicked with, or nil.
func recovered(fn func()) (v any) {
	defer func() { v = recover() }()
	fn()
	return nil
}

// TestPanicLeavesNothingBehind: an Observer that panics in the middle of a
// call (inside the single flight, on the caller's goroutine) leaves no
// entry, lock or goroutine behind: 100 later calls for the same user each
// get its pod, well within a 5 s deadline. A Server whose first publish
// panics stays unstarted and starts and stops normally after; Start(nil) is
// an invalid argument and Stop then returns.
func TestPanicLeavesNothingBehind(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ns := redistest.Namespace(t)
		st := store.New(b.Client)
		publishLoads(t, st, ns, 0, 0, 0)
		c, err := engine.NewClient(engine.ClientConfig{Store: st, Timing: stormTiming, Observer: &panicker{}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if v := recovered(func() { _, _ = c.ComputeLinkedPod(ctx, ns, "victim", svc) }); v == nil {
			t.Fatal("the observer did not panic")
		}
		for i := range 100 {
			pod, err := c.ComputeLinkedPod(ctx, ns, "victim", svc)
			want, rerr := st.GetLinkedPod(ctx, ns, "victim", svc)
			if err != nil || rerr != nil || pod != want {
				t.Fatalf("call %d after the panic = %d, %v; linked to %d (%v)", i, pod, err, want, rerr)
			}
		}

		srv, err := engine.NewServer(engine.ServerConfig{Store: st, Namespace: ns, Service: svc, Pod: 1,
			Timing: testTiming, MaxRequest: 10 * time.Millisecond, Observer: &panicker{}})
		if err != nil {
			t.Fatal(err)
		}
		var nilCtx context.Context
		if err := srv.Start(nilCtx); !errors.Is(err, store.ErrInvalidArgument) {
			t.Fatalf("Start(nil) = %v, want an invalid argument", err)
		}
		if v := recovered(func() { _ = srv.Start(ctx) }); v == nil {
			t.Fatal("the server's observer did not panic")
		}
		if err := srv.Start(ctx); err != nil {
			t.Fatalf("Start after a panicking Start: %v", err)
		}
		if err := srv.Stop(ctx); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if _, err := srv.TrySetLinkedPod(ctx, ns, "late", svc, 1); !errors.Is(err, engine.ErrClosed) {
			t.Fatalf("a claim after Stop: %v, want ErrClosed", err)
		}
	})
}

// TestDrainClaimsOnlyItsUsers: while Stop drains a pod, the pod still claims
// (persistently) a user a client linked to it, refuses one linked elsewhere
// or not at all (ErrDraining, changing nothing), and after Stop writes no
// link at all (ErrClosed).
func TestDrainClaimsOnlyItsUsers(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx, ns := redistest.Ctx(t), redistest.Namespace(t)
		st := store.New(b.Client)
		srv, err := engine.NewServer(engine.ServerConfig{Store: st, Namespace: ns, Service: svc, Pod: 2,
			Timing: testTiming, MaxRequest: 10 * time.Millisecond, Drain: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := st.SetLinkedPod(ctx, ns, "mine", svc, 2, 60); err != nil { // a client's reservation
			t.Fatal(err)
		}
		if _, err := st.SetLinkedPod(ctx, ns, "theirs", svc, 5, 60); err != nil {
			t.Fatal(err)
		}
		stopCtx, stop := context.WithCancel(ctx)
		stopped := make(chan error, 1)
		go func() { stopped <- srv.Stop(stopCtx) }()
		redistest.Poll(t, 10*time.Second, "the drain begun", func() bool { return srv.GetRoutingState() == engine.DenyNewCall })

		if owner, err := srv.TrySetLinkedPod(ctx, ns, "mine", svc, 2); owner != 2 || err != nil {
			t.Fatalf("claim of a user linked to the draining pod = %d, %v; want 2, nil", owner, err)
		}
		if p, err := st.GetLinkedPodIfPersist(ctx, ns, "mine", svc); p != 2 || err != nil {
			t.Fatalf("after the drain claim the link is %d (%v), want persistent to 2", p, err)
		}
		if owner, err := srv.TrySetLinkedPod(ctx, ns, "theirs", svc, 2); owner != 5 || !errors.Is(err, engine.ErrDraining) {
			t.Fatalf("claim of a user linked to pod 5 = %d, %v; want 5, ErrDraining", owner, err)
		}
		if owner, err := srv.TrySetLinkedPod(ctx, ns, "nobody", svc, 2); owner != store.NoPod || !errors.Is(err, engine.ErrDraining) {
			t.Fatalf("claim of a new user = %d, %v; want -1, ErrDraining", owner, err)
		}
		if _, err := srv.SetLinkedPod(ctx, ns, "nobody", svc, 2); !errors.Is(err, engine.ErrDraining) {
			t.Fatalf("forced link of a new user while draining: %v, want ErrDraining", err)
		}
		if p, err := st.GetLinkedPod(ctx, ns, "theirs", svc); p != 5 || err != nil {
			t.Fatalf("a refused claim changed the link: %d, %v", p, err)
		}
		if p, err := st.GetLinkedPod(ctx, ns, "nobody", svc); p != store.NoPod || err != nil {
			t.Fatalf("a refused claim wrote a link: %d, %v", p, err)
		}

		stop() // end the drain early: Stop publishes Shutdown and returns
		if err := <-stopped; !errors.Is(err, context.Canceled) {
			t.Fatalf("Stop = %v, want the drain cut short", err)
		}
		for name, write := range map[string]func() error{
			"TrySetLinkedPod": func() error { _, err := srv.TrySetLinkedPod(ctx, ns, "mine", svc, 2); return err },
			"SetLinkedPod":    func() error { _, err := srv.SetLinkedPod(ctx, ns, "other", svc, 3); return err },
			"RemoveLinkedPod": func() error { _, err := srv.RemoveLinkedPod(ctx, ns, "mine", svc); return err },
		} {
			if err := write(); !errors.Is(err, engine.ErrClosed) {
				t.Errorf("%s after Stop: %v, want ErrClosed", name, err)
			}
		}
	})
}
