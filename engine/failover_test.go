package engine_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redisproc"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/internal/slot"
	"github.com/stickyroute/stickyroute/store"
)

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, addr string
	master   bool
	failed   bool
	slots    [][2]int
}

// clusterNodes reads the cluster's view from the node at addr.
func clusterNodes(t *testing.T, addr string) []clusterNode {
	t.Helper()
	txt, err := redisproc.Do(t, addr, "CLUSTER", "NODES").ToString()
	if err != nil {
		t.Fatalf("CLUSTER NODES on %s: %v", addr, err)
	}
	txt = strings.TrimPrefix(txt, "txt:") // a RESP3 verbatim string
	var out []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(txt), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := clusterNode{id: f[0], addr: strings.Split(f[1], "@")[0],
			master: strings.Contains(f[2], "master"), failed: strings.Contains(f[2], "fail")}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated or imported
			}
			lo, hi, ok := strings.Cut(r, "-")
			if !ok {
				hi = lo
			}
			a, _ := strconv.Atoi(lo)
			b, _ := strconv.Atoi(hi)
			n.slots = append(n.slots, [2]int{a, b})
		}
		out = append(out, n)
	}
	return out
}

// owner returns the healthy master serving slot s, as the node at addr sees it.
func owner(t *testing.T, addr string, s int) (clusterNode, bool) {
	t.Helper()
	for _, n := range clusterNodes(t, addr) {
		if !n.master || n.failed {
			continue
		}
		for _, r := range n.slots {
			if s >= r[0] && s <= r[1] {
				return n, true
			}
		}
	}
	return clusterNode{}, false
}

// replicated returns once a replica of the master at addr has every write
// the master took so far: a write on one connection, in the slot of key,
// then WAIT for one replica (replication is one stream, so every earlier
// write is in with it). Without it, a replica still catching up (a full
// sync after the previous subtest restarted the old master) was promoted
// without the victim's warm links (beside stress-ng, 33 lost, which the
// client had answered from its cache after the kill, as it should).
func replicated(t *testing.T, addr, key string) {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := redistest.Ctx(t)
	redistest.Poll(t, 20*time.Second, "a replica of "+addr+" has every write", func() bool {
		out := c.DoMulti(ctx, c.B().Set().Key(key+":replicated").Value("1").Build(), c.B().Wait().Numreplicas(1).Timeout(1000).Build())
		n, err := out[1].AsInt64()
		return out[0].Error() == nil && err == nil && n >= 1
	})
}

// TestFailover: on the cluster with replicas, the master serving the
// service's state (and a third of the links) is killed mid-traffic; its
// replica takes over; traffic continues. The row counts the errors callers
// saw and the time from the kill until calls succeed again. The killed node
// is started again (it rejoins as a replica) and the cluster left healthy.
func TestFailover(t *testing.T) {
	for _, pl := range []engine.DegradedPlacement{engine.FailFast, engine.HashPlacement} {
		t.Run(pl.String(), func(t *testing.T) { failover(t, pl) })
	}
}

func failover(t *testing.T, pl engine.DegradedPlacement) {
	ha := redisproc.HA(t)
	ha.WaitHealthy(t, 30*time.Second)
	addrs := strings.Join(ha.Addrs(), ",")
	r := newRig(t, rigConfig{serverAddr: addrs, clientAddr: addrs, directAddr: addrs, placement: pl})
	stateSlot := int(slot.Of(store.StateKey(r.ns, svc)))
	victim, ok := owner(t, ha.Nodes[0].Addr, stateSlot)
	if !ok {
		t.Fatalf("no master serves slot %d", stateSlot)
	}
	var node *redisproc.Node
	var witness string // a node that stays up, to watch the failover from
	for _, n := range ha.Nodes {
		if n.Addr == victim.addr {
			node = n
		} else if witness == "" {
			witness = n.Addr
		}
	}
	t.Cleanup(func() {
		if node.Role(t) == "" {
			node.Start(t)
		}
		ha.WaitHealthy(t, 60*time.Second)
	})

	tr, _ := r.warmTraffic()
	replicated(t, victim.addr, store.StateKey(r.ns, svc))
	// The killed master served the pod states: the client's refreshes are
	// refused until a replica takes over.
	outage := r.watchOutage(r.client.DegradedStats().Outages)
	killAt := time.Now()
	node.Kill(t)
	detected := outage()
	redistest.Poll(t, 30*time.Second, "a replica took over the killed master's slots", func() bool {
		n, ok := owner(t, witness, stateSlot)
		return ok && n.addr != victim.addr
	})
	failedOver := time.Since(killAt)
	tr.waitHealthy(killAt.Add(failedOver))
	tr.halt()
	r.waitWrittenBack(pl)
	o := tr.summarize("master killed, failover ("+pl.String()+")", killAt, killAt.Add(failedOver))
	o.detected = detected
	// Calls during the failover window and after are all "after the kill":
	// recovery is measured from the kill.
	o.recovery = 0
	var lastErr time.Time
	for _, c := range tr.calls(killAt, time.Now()) {
		if c.err != nil && c.start.Add(c.took).After(lastErr) {
			lastErr = c.start.Add(c.took)
		}
	}
	if !lastErr.IsZero() {
		o.recovery = lastErr.Sub(killAt)
	}
	// Replication is asynchronous: a link the killed master acknowledged
	// before it died may never have reached the replica that took over
	// (beside stress-ng a run lost 33 links, the 5 it printed answered
	// within 41 ms of one another, and the client's revalidation found 33
	// cached links gone). Answers from before the kill that are missing
	// are lost by Redis itself and reported apart; every answer given
	// after the kill must hold.
	tr.checkLinks(&o, killAt)
	o.report(t)
	t.Logf("failover took %v (replica promoted); degraded stats: %+v", failedOver.Round(time.Millisecond), r.client.DegradedStats())
	if o.warmErrsDuring != 0 {
		t.Errorf("%d calls for cached users failed during the failover, want 0", o.warmErrsDuring)
	}
	if o.linksLost != 0 {
		// A write acknowledged by the old master just before its death and
		// not yet replicated is lost by Redis Cluster itself (asynchronous
		// replication); over loopback that window is well under a
		// millisecond, so any loss here is reported as ours.
		t.Errorf("%d links lost", o.linksLost)
	}
}

// TestSlotMigration: a slot holding links of live users is migrated from
// its master to another one, key by key, while those users are placed and
// routed: the clients meet ASK and then MOVED redirections (and TRYAGAIN
// while a user's two keys sit on different nodes). No error escapes.
func TestSlotMigration(t *testing.T) {
	ha := redisproc.HA(t)
	ha.WaitHealthy(t, 30*time.Second)
	addrs := strings.Join(ha.Addrs(), ",")
	// The calls get the detection window as their deadline, not the fault
	// tests' 300 ms: what counts here is that no redirection escapes as an
	// error, and a call a busy machine merely schedules late is not one (b5
	// beside stress-ng: one deadline error after the migration, max call
	// 69 ms otherwise). A hang still fails: it waits 10 s.
	r := newRig(t, rigConfig{serverAddr: addrs, clientAddr: addrs, directAddr: addrs, deadline: faultDetect})
	ctx := redistest.Ctx(t)
	r.waitAccepting(ctx)

	// Users whose links all live in one slot.
	target := int(slot.Of(store.LinkKey(r.ns, "m0", svc)))
	var uids []string
	for i := 0; len(uids) < 60; i++ {
		uid := "m" + strconv.Itoa(i)
		if int(slot.Of(store.LinkKey(r.ns, uid, svc))) == target {
			uids = append(uids, uid)
		}
	}
	src, ok := owner(t, ha.Nodes[0].Addr, target)
	if !ok {
		t.Fatalf("no master serves slot %d", target)
	}
	var dst clusterNode
	for _, n := range clusterNodes(t, src.addr) {
		if n.master && !n.failed && n.id != src.id {
			dst = n
			break
		}
	}
	// Half the users are linked before the migration, half arrive during it.
	tr := &traffic{r: r, stop: make(chan struct{})}
	for _, uid := range uids[:30] {
		pod, err := r.client.ComputeLinkedPod(ctx, r.ns, uid, svc)
		if err != nil {
			t.Fatal(err)
		}
		tr.record(call{uid: uid, start: time.Now(), pod: pod})
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			uid := uids[i%len(uids)]
			cctx, cancel := contextWithTimeout(r.deadline)
			start := time.Now()
			pod, err := r.client.ComputeLinkedPod(cctx, r.ns, uid, svc)
			took := time.Since(start)
			if err == nil && i%3 == 0 {
				// Reads straight from Redis, past the cache, meet the
				// redirections too.
				_, err = r.client.GetLinkedPodNotCache(cctx, r.ns, uid, svc)
			}
			cancel()
			tr.record(call{uid: uid, start: start, took: took, pod: pod, err: err})
			time.Sleep(time.Millisecond)
		}
	}()

	migrateAt := time.Now()
	do := func(addr string, args ...string) {
		t.Helper()
		if err := redisproc.Do(t, addr, args...).Error(); err != nil {
			t.Fatalf("%s on %s: %v", strings.Join(args, " "), addr, err)
		}
	}
	s := strconv.Itoa(target)
	do(dst.addr, "CLUSTER", "SETSLOT", s, "IMPORTING", src.id)
	do(src.addr, "CLUSTER", "SETSLOT", s, "MIGRATING", dst.id)
	host, port, _ := strings.Cut(dst.addr, ":")
	moved := 0
	for {
		keys, err := redisproc.Do(t, src.addr, "CLUSTER", "GETKEYSINSLOT", s, "1").AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			break
		}
		// One key at a time, with traffic in between: a user's two keys
		// spend a while on different nodes.
		do(src.addr, append([]string{"MIGRATE", host, port, "", "0", "5000", "KEYS"}, keys...)...)
		moved++
		n := len(tr.calls(migrateAt, time.Now()))
		redistest.Poll(t, 10*time.Second, "traffic between two keys", func() bool {
			return len(tr.calls(migrateAt, time.Now())) >= n+3
		})
	}
	for _, n := range ha.Nodes {
		if n.Role(t) == "master" {
			do(n.Addr, "CLUSTER", "SETSLOT", s, "NODE", dst.id)
		}
	}
	settledAt := time.Now()
	tr.waitCalls(settledAt, 200, "traffic after the migration")
	close(stop)
	<-done
	o := tr.summarize("slot migrated during traffic (ASK/MOVED)", migrateAt, settledAt)
	tr.checkLinks(&o, time.Time{})
	o.report(t)
	t.Logf("slot %d: %d keys moved from %s to %s", target, moved, src.addr, dst.addr)
	if moved == 0 {
		t.Fatal("the slot held no key: nothing was migrated")
	}
	if o.errsDuring+o.errsAfter != 0 || o.linksLost != 0 {
		t.Errorf("%d errors escaped, %d links lost; want none", o.errsDuring+o.errsAfter, o.linksLost)
	}
}
