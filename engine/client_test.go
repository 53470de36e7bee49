package engine_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

// fast timings for tests: pods are stale 600 ms after their last heartbeat.
var testTiming = engine.Timing{Heartbeat: 200 * time.Millisecond, Staleness: 600 * time.Millisecond, Refresh: 50 * time.Millisecond}

const svc = "room"

// countingClient counts the commands that go through it naming a link key
// (K1): the reads and writes of users' links, not the pod states. An
// EVALSHA answered NOSCRIPT (re-sent as EVAL at once) does not count.
type countingClient struct {
	rueidis.Client
	links atomic.Int64
}

// namesLink reports whether cmd names a link key (read before the command
// is sent: the client library recycles it after).
func namesLink(cmd rueidis.Completed) bool {
	for _, arg := range cmd.Commands()[1:] {
		if _, _, _, ok := store.ParseLinkKey(arg); ok {
			return true
		}
	}
	return false
}

// counted counts a command that named a link and was answered res.
func (c *countingClient) counted(link bool, res rueidis.RedisResult) {
	if e, ok := rueidis.IsRedisErr(res.Error()); link && !(ok && e.IsNoScript()) {
		c.links.Add(1)
	}
}

func (c *countingClient) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	link := namesLink(cmd)
	res := c.Client.Do(ctx, cmd)
	c.counted(link, res)
	return res
}

func (c *countingClient) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	links := make([]bool, len(cmds))
	for i, cmd := range cmds {
		links[i] = namesLink(cmd)
	}
	res := c.Client.DoMulti(ctx, cmds...)
	for i := range cmds {
		c.counted(links[i], res[i])
	}
	return res
}

// scenario is what one row of the client table gets.
type scenario struct {
	t     *testing.T
	ctx   context.Context
	ns    string
	b     *redistest.Backend
	st    *store.Redis // shared by the "servers" of the test
	count *countingClient
	c     *engine.Client
}

func newScenario(t *testing.T, b *redistest.Backend) *scenario {
	cc := &countingClient{Client: b.Client}
	sc := &scenario{t: t, ctx: redistest.Ctx(t), ns: redistest.Namespace(t), b: b, st: store.New(b.Client), count: cc}
	sc.c = sc.newClient(store.New(cc))
	return sc
}

func (sc *scenario) newClient(st *store.Redis) *engine.Client {
	c, err := engine.NewClient(engine.ClientConfig{Store: st, Timing: testTiming, TempLinkTTL: 30 * time.Second})
	if err != nil {
		sc.t.Fatal(err)
	}
	sc.t.Cleanup(c.Close)
	return c
}

// publish writes a pod's state as its server would.
func (sc *scenario) publish(pod int, load int, r store.RoutingState) {
	sc.t.Helper()
	if _, err := sc.st.SetServiceState(sc.ctx, sc.ns, svc, pod, load, r); err != nil {
		sc.t.Fatal(err)
	}
}

// link writes uid's link to pod in Redis, for seconds (store.Persistent:
// persistent).
func (sc *scenario) link(uid string, pod, seconds int) {
	sc.t.Helper()
	if _, err := sc.st.SetLinkedPod(sc.ctx, sc.ns, uid, svc, pod, seconds); err != nil {
		sc.t.Fatal(err)
	}
}

func (sc *scenario) compute(uid string) int {
	sc.t.Helper()
	pod, err := sc.c.ComputeLinkedPod(sc.ctx, sc.ns, uid, svc)
	if err != nil {
		sc.t.Fatalf("ComputeLinkedPod(%s): %v", uid, err)
	}
	return pod
}

var clientScenarios = []struct {
	name string
	run  func(sc *scenario)
}{
	{"new_user_placed_on_accepting_pod", func(sc *scenario) {
		sc.publish(0, 0, store.DenyNewCall)
		sc.publish(1, 50, store.Ready)
		sc.publish(2, 0, store.Shutdown)
		if pod := sc.compute("new"); pod != 1 {
			sc.t.Fatalf("placed on %d, want 1, the only accepting pod", pod)
		}
		if p, err := sc.st.GetLinkedPod(sc.ctx, sc.ns, "new", svc); err != nil || p != 1 {
			sc.t.Fatalf("link in Redis = (%d, %v), want 1", p, err)
		}
		if p, err := sc.st.GetLinkedPodIfPersist(sc.ctx, sc.ns, "new", svc); err != nil || p != store.NoPod {
			sc.t.Fatalf("persistent link = (%d, %v), want none: a client's link is temporary", p, err)
		}
	}},
	{"pod0_when_only_one", func(sc *scenario) {
		sc.publish(0, 7, store.Ready)
		for i := range 5 {
			if pod := sc.compute("u" + strconv.Itoa(i)); pod != 0 {
				sc.t.Fatalf("placed on %d, want 0", pod)
			}
		}
	}},
	{"existing_user_stays_on_DenyNewCall_pod_new_users_avoid_it", func(sc *scenario) {
		sc.publish(0, 0, store.DenyNewCall)
		sc.publish(1, 100, store.Ready)
		sc.publish(2, 100, store.Ready)
		sc.link("old", 0, store.Persistent)
		for range 3 {
			if pod := sc.compute("old"); pod != 0 {
				sc.t.Fatalf("existing user routed to %d, want its DenyNewCall pod 0", pod)
			}
		}
		for i := range 50 {
			if pod := sc.compute("new" + strconv.Itoa(i)); pod == 0 {
				sc.t.Fatalf("new user %d placed on DenyNewCall pod 0", i)
			}
		}
	}},
	{"stale_pod_not_routable_within_staleness", func(sc *scenario) {
		sc.publish(0, 0, store.Ready)
		sc.publish(1, 0, store.Ready)
		sc.link("u", 0, 30)
		if pod := sc.compute("u"); pod != 0 {
			sc.t.Fatalf("= %d, want 0", pod)
		}
		last := time.Now()
		// Pod 1 keeps heartbeating, pod 0 stops.
		redistest.Poll(sc.t, 5*time.Second, "pod 0 stops being routable", func() bool {
			sc.publish(1, 0, store.Ready)
			return !sc.c.States().IsPodRoutable(sc.ns, svc, 0)
		})
		// The window, plus one refresh and the round trips that measure it,
		// with a heartbeat period of room for a loaded machine.
		if d := time.Since(last); d > testTiming.Staleness+testTiming.Refresh+testTiming.Heartbeat {
			sc.t.Fatalf("pod 0 stayed routable %v after its last heartbeat, window %v", d, testTiming.Staleness)
		}
		if pod := sc.compute("u"); pod != 1 {
			sc.t.Fatalf("temporary link to the stale pod: = %d, want moved to 1", pod)
		}
	}},
	{"temporary_link_to_shutdown_pod_moved_persistent_not", func(sc *scenario) {
		sc.publish(0, 0, store.Shutdown)
		sc.publish(1, 0, store.Ready)
		sc.link("temp", 0, 30)
		sc.link("pers", 0, store.Persistent)
		if pod := sc.compute("temp"); pod != 1 {
			sc.t.Fatalf("temporary link: = %d, want moved to 1", pod)
		}
		if p, _ := sc.st.GetLinkedPod(sc.ctx, sc.ns, "temp", svc); p != 1 {
			sc.t.Fatalf("temporary link in Redis = %d, want 1", p)
		}
		_, err := sc.c.ComputeLinkedPod(sc.ctx, sc.ns, "pers", svc)
		var nr *engine.PodNotRoutableError
		if !errors.As(err, &nr) || nr.Pod != 0 || !errors.Is(err, engine.ErrPodNotRoutable) {
			sc.t.Fatalf("persistent link: err = %v, want *PodNotRoutableError for pod 0", err)
		}
		if p, _ := sc.st.GetLinkedPod(sc.ctx, sc.ns, "pers", svc); p != 0 {
			sc.t.Fatalf("persistent link in Redis = %d, want untouched 0", p)
		}
	}},
	{"no_accepting_pod", func(sc *scenario) {
		sc.publish(0, 0, store.DenyNewCall)
		if _, err := sc.c.ComputeLinkedPod(sc.ctx, sc.ns, "u", svc); !errors.Is(err, engine.ErrNoAvailablePod) {
			sc.t.Fatalf("err = %v, want ErrNoAvailablePod", err)
		}
	}},
	{"100_goroutines_one_uid_one_write", func(sc *scenario) {
		sc.publish(0, 0, store.Ready)
		sc.publish(1, 0, store.Ready)
		if _, err := sc.c.States().Snapshot(sc.ctx, sc.ns, svc); err != nil {
			sc.t.Fatal(err)
		}
		before := sc.count.links.Load()
		pods := make([]int, 100)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range pods {
			wg.Go(func() {
				<-start
				pods[i] = sc.compute("same")
			})
		}
		close(start)
		wg.Wait()
		for i, p := range pods {
			if p != pods[0] {
				sc.t.Fatalf("goroutine %d got %d, goroutine 0 got %d", i, p, pods[0])
			}
		}
		// One placement, which reads the link and writes it at once.
		if n := sc.count.links.Load() - before; n != 1 {
			sc.t.Fatalf("%d Redis commands on the link of one new user, want 1", n)
		}
	}},
	{"two_clients_race_a_new_uid", func(sc *scenario) {
		for p := range 8 {
			sc.publish(p, 0, store.Ready)
		}
		other := sc.newClient(store.New(redistest.Open(sc.t, sc.b.Name).Client))
		if sc.b.Mini != nil { // the embedded Redis is one process: share its client
			other = sc.newClient(store.New(sc.b.Client))
		}
		for i := range 20 {
			uid := "race" + strconv.Itoa(i)
			var a, b int
			var wg sync.WaitGroup
			wg.Go(func() { a = sc.compute(uid) })
			wg.Go(func() {
				var err error
				if b, err = other.ComputeLinkedPod(sc.ctx, sc.ns, uid, svc); err != nil {
					sc.t.Error(err)
				}
			})
			wg.Wait()
			if a != b {
				sc.t.Fatalf("%s: clients disagree: %d vs %d", uid, a, b)
			}
		}
	}},
	{"cache_answers_without_redis", func(sc *scenario) {
		sc.publish(0, 0, store.Ready)
		sc.link("u", 0, store.Persistent)
		sc.compute("u")
		if got := sc.c.GetLinkedInCache(sc.ns, "u", svc); got != 0 {
			sc.t.Fatalf("GetLinkedInCache = %d, want 0 cached", got)
		}
		st := sc.c.CacheStats()
		for range 100 {
			sc.compute("u")
		}
		if hits := sc.c.CacheStats().Hits - st.Hits; hits != 100 {
			sc.t.Fatalf("%d cache hits for 100 calls", hits)
		}
		if prev := sc.c.CacheExpired(sc.ns, "u", svc); prev != 0 {
			sc.t.Fatalf("CacheExpired = %d, want 0", prev)
		}
		if got := sc.c.GetLinkedInCache(sc.ns, "u", svc); got != engine.NoPod {
			sc.t.Fatalf("after CacheExpired: %d cached", got)
		}
	}},
}

func TestClientScenarios(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		for _, c := range clientScenarios {
			t.Run(c.name, func(t *testing.T) { c.run(newScenario(t, b)) })
		}
	})
}
