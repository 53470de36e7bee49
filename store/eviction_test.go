package store_test

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redisproc"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

// evictionServices are the services every uid of TestEviction links, the
// first evictionMinServices of them always and the rest for some uids, so the
// directories (K2) hold 2 or 3 fields.
var evictionServices = []string{"room", "chat", "call"}

const (
	evictionMinServices = 2
	// evictionBatch uids are written between two looks at INFO stats.
	evictionBatch = 512
	// evictionWorkers goroutines share a batch (the client pipelines them).
	evictionWorkers = 8
)

// TestEviction fills a Redis of its own past maxmemory (allkeys-lru) with
// persistent links until it evicts keys, independently of one another: a
// link (K1) may be gone while its uid's directory (K2) still lists it. It
// then checks every uid: no read reports a link whose K1 is gone or names
// another pod (SPEC §6), GetLinkService still reports every link K1 and K2
// both hold, and an engine client routes every user to the pod K1 names (a
// user whose link was evicted is placed anew).
func TestEviction(t *testing.T) {
	srv := redisproc.Start(t, "--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru")
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr},
		ForceSingleClient: true, DisableCache: true})
	if err != nil {
		t.Fatalf("connecting to %s: %v", srv.Addr, err)
	}
	t.Cleanup(client.Close)
	s := store.New(client)
	ns := redistest.Namespace(t)

	// Fill, a batch at a time, until Redis reports evictions.
	var links []map[string]int // links[i] are uid i's links as written
	ctx := redistest.Ctx(t)
	// Filling 4 MB takes well under a second on a quiet machine; the
	// deadline is the test context's (a second before it, to say so), for
	// a starved one.
	deadline, _ := ctx.Deadline()
	deadline = deadline.Add(-time.Second)
	began := time.Now()
	evicted := int64(0)
	for evicted == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no eviction after writing %d uids for %v (used_memory %s)", len(links), time.Since(began).Round(time.Second), infoField(t, client, "memory", "used_memory"))
		}
		from := len(links)
		for i := from; i < from+evictionBatch; i++ {
			l := map[string]int{}
			for j, svc := range evictionServices[:evictionMinServices+i%(len(evictionServices)-evictionMinServices+1)] {
				l[svc] = (i + j) % 50
			}
			links = append(links, l)
		}
		inParallel(t, from, len(links), func(i int) error {
			for svc, pod := range links[i] {
				if _, err := s.SetLinkedPod(ctx, ns, evictionUID(i), svc, pod, store.Persistent); err != nil {
					return err
				}
			}
			return nil
		})
		evicted, _ = strconv.ParseInt(infoField(t, client, "stats", "evicted_keys"), 10, 64)
	}
	// Freeze: no more evictions while the truth is compared with the reads.
	if err := client.Do(ctx, client.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", "0").Build()).Error(); err != nil {
		t.Fatalf("CONFIG SET maxmemory 0: %v", err)
	}

	// The truth, read raw: each uid's K1s (value and PTTL) and K2.
	type truth struct {
		k1   map[string]string // service → K1's value, for the K1s that exist
		pttl map[string]int64
		k2   map[string]string
	}
	truths := make([]truth, len(links))
	ctx = redistest.Ctx(t)
	for i := range links {
		uid := evictionUID(i)
		cmds := rueidis.Commands{client.B().Hgetall().Key(store.DirKey(ns, uid)).Build()}
		for _, svc := range evictionServices {
			k1 := store.LinkKey(ns, uid, svc)
			cmds = append(cmds, client.B().Get().Key(k1).Build(), client.B().Pttl().Key(k1).Build())
		}
		res := client.DoMulti(ctx, cmds...)
		k2, err := res[0].AsStrMap()
		if err != nil {
			t.Fatalf("HGETALL of uid %d: %v", i, err)
		}
		tr := truth{k1: map[string]string{}, pttl: map[string]int64{}, k2: k2}
		for j, svc := range evictionServices {
			v, err := res[1+2*j].ToString()
			if rueidis.IsRedisNil(err) {
				continue
			}
			if err != nil {
				t.Fatalf("GET K1 of uid %d %s: %v", i, svc, err)
			}
			if tr.pttl[svc], err = res[2+2*j].AsInt64(); err != nil {
				t.Fatalf("PTTL K1 of uid %d %s: %v", i, svc, err)
			}
			tr.k1[svc] = v
		}
		truths[i] = tr
	}

	// The reads, checked against it.
	var (
		mu                       sync.Mutex
		wrong, missed            []string
		gone, stale, k2sEvicted  int
		reportedLinks, confirmed int
	)
	inParallel(t, 0, len(links), func(i int) error {
		uid, tr := evictionUID(i), truths[i]
		got, err := s.GetLinkService(ctx, ns, uid)
		if err != nil {
			return err
		}
		persist := map[string]int{}
		for svc := range links[i] {
			if persist[svc], err = s.GetLinkedPodIfPersist(ctx, ns, uid, svc); err != nil {
				return err
			}
		}
		mu.Lock()
		defer mu.Unlock()
		reportedLinks += len(got)
		if len(tr.k2) == 0 {
			k2sEvicted++
		}
		for svc, pod := range links[i] {
			v, exists := tr.k1[svc]
			if !exists {
				gone++
				if _, listed := tr.k2[svc]; listed {
					stale++ // a plain HGETALL of K2 would report it
				}
			}
			holds := exists && v == strconv.Itoa(pod) && tr.pttl[svc] == -1
			if p, reported := got[svc]; reported && (!holds || p != pod) {
				wrong = append(wrong, "GetLinkService uid "+uid+" "+svc+"="+strconv.Itoa(p)+" but K1 "+k1State(exists, v, tr.pttl[svc]))
			}
			if p := persist[svc]; p != store.NoPod && (!holds || p != pod) {
				wrong = append(wrong, "GetLinkedPodIfPersist uid "+uid+" "+svc+"="+strconv.Itoa(p)+" but K1 "+k1State(exists, v, tr.pttl[svc]))
			}
			if holds && persist[svc] != pod {
				missed = append(missed, "GetLinkedPodIfPersist uid "+uid+" "+svc+"="+strconv.Itoa(persist[svc])+", K1 holds "+v)
			}
			if _, listed := tr.k2[svc]; holds && listed {
				confirmed++
				if p, reported := got[svc]; !reported || p != pod {
					missed = append(missed, "GetLinkService uid "+uid+" misses "+svc+"="+v+" that K1 and K2 hold")
				}
			}
		}
		return nil
	})

	written := 0
	for _, l := range links {
		written += len(l)
	}
	t.Logf("%d uids, %d persistent links written; Redis evicted %d keys: %d links (K1 gone), of which %d still listed in K2, and %d directories (K2); GetLinkService reported %d links (%d confirmed by K1 and K2); wrong reports %d, missed links %d",
		len(links), written, evicted, gone, stale, k2sEvicted, reportedLinks, confirmed, len(wrong), len(missed))
	for _, w := range firstN(wrong, 10) {
		t.Errorf("wrong report: %s", w)
	}
	for _, m := range firstN(missed, 10) {
		t.Errorf("missed link: %s", m)
	}
	if len(wrong) != 0 || len(missed) != 0 {
		t.Fatalf("%d wrong reports and %d missed links, want 0 and 0", len(wrong), len(missed))
	}
	if gone == 0 {
		t.Fatalf("Redis evicted %d keys but no link (K1): the check proved nothing", evicted)
	}
	if stale == 0 {
		t.Fatalf("no evicted link was still listed in K2: the check proved nothing")
	}
	checkEngineAfterEviction(t, srv.Addr, s, ns, links, func(i int, svc string) (string, bool) {
		v, ok := truths[i].k1[svc]
		return v, ok
	})
}

// checkEngineAfterEviction routes every user of TestEviction through an
// engine client on the evicted Redis (its pods all published Ready): a user
// whose link survived gets the pod it names, and one whose link was evicted
// is a new user, placed anew and answered the pod Redis now holds. k1 tells
// what K1 held after the evictions.
func checkEngineAfterEviction(t *testing.T, addr string, s *store.Redis, ns string, links []map[string]int, k1 func(i int, svc string) (string, bool)) {
	t.Helper()
	ctx := redistest.Ctx(t)
	for _, svc := range evictionServices {
		for pod := range 50 {
			if _, err := s.SetServiceState(ctx, ns, svc, pod, 0, store.Ready); err != nil {
				t.Fatal(err)
			}
		}
	}
	st, err := store.Dial(store.DialConfig{Addrs: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The pods publish once: alive for the whole check however long it takes.
	c, err := engine.NewClient(engine.ClientConfig{Store: st,
		Timing: engine.Timing{Heartbeat: time.Minute, Staleness: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var mu sync.Mutex
	var wrong []string
	var kept, placed int
	inParallel(t, 0, len(links), func(i int) error {
		uid := evictionUID(i)
		for svc := range links[i] {
			pod, err := c.ComputeLinkedPod(ctx, ns, uid, svc)
			if err != nil {
				return err
			}
			want, survived := k1(i, svc)
			if !survived {
				// Placed anew: the answer is the link written now.
				if want, err = s.Client().Do(ctx, s.Client().B().Get().Key(store.LinkKey(ns, uid, svc)).Build()).ToString(); err != nil {
					return err
				}
			}
			mu.Lock()
			if strconv.Itoa(pod) != want {
				wrong = append(wrong, "uid "+uid+" "+svc+": engine answered "+strconv.Itoa(pod)+", K1 holds "+want)
			}
			if survived {
				kept++
			} else {
				placed++
			}
			mu.Unlock()
		}
		return nil
	})
	t.Logf("engine on the evicted Redis: %d users routed to their surviving link, %d whose link was evicted placed anew; wrong pods %d", kept, placed, len(wrong))
	for _, w := range firstN(wrong, 10) {
		t.Errorf("wrong pod: %s", w)
	}
	if len(wrong) != 0 || placed == 0 {
		t.Fatalf("%d wrong pods (want 0), %d evicted users placed anew (want some)", len(wrong), placed)
	}
}

// evictionUID is the uid of the i-th user of TestEviction.
func evictionUID(i int) string { return "u" + strconv.Itoa(i) }

// inParallel runs fn(i) for i in [from, to) on evictionWorkers goroutines and fails
// t on the first error.
func inParallel(t *testing.T, from, to int, fn func(i int) error) {
	t.Helper()
	errs := make([]error, evictionWorkers)
	var wg sync.WaitGroup
	for w := range evictionWorkers {
		wg.Go(func() {
			for i := from + w; i < to; i += evictionWorkers {
				if errs[w] = fn(i); errs[w] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// infoField returns field of the INFO section.
func infoField(t *testing.T, c rueidis.Client, section, field string) string {
	t.Helper()
	txt, err := c.Do(redistest.Ctx(t), c.B().Info().Section(section).Build()).ToString()
	if err != nil {
		t.Fatalf("INFO %s: %v", section, err)
	}
	for _, line := range strings.Split(txt, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	t.Fatalf("INFO %s has no %s", section, field)
	return ""
}

// k1State describes a K1 for a wrong report.
func k1State(exists bool, v string, pttl int64) string {
	if !exists {
		return "is gone"
	}
	return "= " + v + " (pttl " + strconv.FormatInt(pttl, 10) + ")"
}

// firstN returns the first n elements of s, or s.
func firstN(s []string, n int) []string {
	return s[:min(n, len(s))]
}
