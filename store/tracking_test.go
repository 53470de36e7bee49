package store_test

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

// trackedPair returns, on the named real backend, a store dialled as an
// application dials it (with a tracker) and a plain store for another
// process's writes; both closed when t ends.
func trackedPair(t *testing.T, name string) (reader, writer *store.Redis) {
	t.Helper()
	return trackedPairWith(t, name, store.DialConfig{})
}

// trackedPairWith is trackedPair dialling with cfg (its Addrs set here).
func trackedPairWith(t *testing.T, name string, cfg store.DialConfig) (reader, writer *store.Redis) {
	t.Helper()
	cfg.Addrs = redistest.Addrs(t, name)
	reader, err := store.Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reader.Close)
	if reader.Tracker() == nil {
		t.Fatal("Dial on a real Redis gave no tracker")
	}
	return reader, store.New(redistest.Open(t, name).Client)
}

// TestTracking: a link read with tracking is reported to the Tracker when
// another client changes it, on the real standalone server and cluster.
//
// In broadcast mode (DialConfig.Broadcast, by namespace) the same holds,
// and besides a link nobody read is reported when it changes, a tracked
// placement reports Tracked, and a tracked read of another namespace is
// refused.
func TestTracking(t *testing.T) {
	for _, name := range redistest.Real {
		for _, broadcast := range []bool{false, true} {
			mode := "keys"
			if broadcast {
				mode = "broadcast"
			}
			t.Run(name+"/"+mode, func(t *testing.T) { testTracking(t, name, broadcast) })
		}
	}
}

func testTracking(t *testing.T, name string, broadcast bool) {
	ctx := redistest.Ctx(t)
	ns := redistest.Namespace(t)
	var cfg store.DialConfig
	if broadcast {
		cfg = store.DialConfig{Broadcast: true, BroadcastNamespaces: []string{ns}}
	}
	reader, writer := trackedPairWith(t, name, cfg)
	if reader.Broadcast() != broadcast {
		t.Fatalf("Broadcast() = %v", reader.Broadcast())
	}
	tr := reader.Tracker()
	var mu sync.Mutex
	var seen []string
	cancel := tr.Subscribe(func(links []store.Link) {
		mu.Lock()
		for _, l := range links {
			seen = append(seen, store.LinkKey(l.Namespace, l.UID, l.Service))
		}
		mu.Unlock()
	})
	defer cancel()

	// reported waits until the tracker has reported what of key.
	reported := func(key, what string) {
		t.Helper()
		redistest.Poll(t, 5*time.Second, "the "+what+" of "+key+" is reported", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return slices.Contains(seen, key)
		})
	}
	if broadcast {
		// A link this client never read is reported too, on every node,
		// before the client has sent a command anywhere.
		unread := func(i int) string { return "unread" + strconv.Itoa(i) }
		for _, i := range redistest.Open(t, name).OnEachMaster(t, func(i int) string { return store.LinkKey(ns, unread(i), "room") }) {
			if _, err := writer.SetLinkedPod(ctx, ns, unread(i), "room", 1, store.Persistent); err != nil {
				t.Fatal(err)
			}
			reported(store.LinkKey(ns, unread(i), "room"), "creation (never read)")
		}
	}
	if _, err := writer.SetLinkedPod(ctx, ns, "u1", "room", 3, store.Persistent); err != nil {
		t.Fatal(err)
	}
	got, err := reader.GetLinkedPodTracked(ctx, ns, "u1", "room", time.Minute)
	if err != nil || got != (store.TrackedLink{Pod: 3, Persistent: true}) {
		t.Fatalf("tracked read = (%+v, %v), want pod 3 persistent", got, err)
	}
	pods, err := reader.LinkedPodsTracked(ctx, ns, []string{"u1", "u2"}, "room", time.Minute)
	if err != nil || !slices.Equal(pods, []int{3, store.NoPod}) {
		t.Fatalf("tracked batch = (%v, %v), want [3 -1]", pods, err)
	}
	if _, err := writer.SetLinkedPod(ctx, ns, "u1", "room", 5, store.Persistent); err != nil {
		t.Fatal(err)
	}
	reported(store.LinkKey(ns, "u1", "room"), "change")
	// The next tracked read sees the new value (the client library's own
	// cache was invalidated too).
	got, err = reader.GetLinkedPodTracked(ctx, ns, "u1", "room", time.Minute)
	if err != nil || got.Pod != 5 {
		t.Fatalf("after the change: (%+v, %v), want pod 5", got, err)
	}
	// A temporary link reads as temporary.
	if _, err := writer.SetLinkedPod(ctx, ns, "t1", "room", 2, 30); err != nil {
		t.Fatal(err)
	}
	if got, err := reader.GetLinkedPodTracked(ctx, ns, "t1", "room", time.Minute); err != nil || got != (store.TrackedLink{Pod: 2}) {
		t.Fatalf("tracked read of a temporary link = (%+v, %v), want pod 2 not persistent", got, err)
	}
	if got, err := reader.GetLinkedPodTracked(ctx, ns, "none", "room", time.Minute); err != nil || got != (store.TrackedLink{Pod: store.NoPod}) {
		t.Fatalf("tracked read of no link = (%+v, %v)", got, err)
	}
	// A missing key read with tracking is reported when it appears.
	if _, err := writer.SetLinkedPodIfAbsent(ctx, ns, "u2", "room", 1, 30); err != nil {
		t.Fatal(err)
	}
	reported(store.LinkKey(ns, "u2", "room"), "creation")
	if !broadcast {
		return
	}
	// Broadcast: a tracked placement is tracked, with no CLIENT CACHING.
	p, err := reader.SetLinkedPodIfAbsentTracked(ctx, ns, "new", "room", 4, 30)
	if err != nil || !p.Placed || !p.Tracked || p.Link.Pod != 4 {
		t.Fatalf("tracked placement = (%+v, %v), want placed and tracked on 4", p, err)
	}
	if _, err := reader.GetLinkedPodTracked(ctx, "other-"+ns, "u1", "room", time.Minute); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("tracked read outside BroadcastNamespaces: %v, want ErrInvalidArgument", err)
	}
}

func TestTrackingEmbeddedHasNone(t *testing.T) {
	s, err := embedded.Dial(store.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Tracker() != nil {
		t.Fatal("the embedded Redis has no client tracking, yet the store has a tracker")
	}
	ctx := redistest.Ctx(t)
	if _, err := s.SetLinkedPod(ctx, "n", "u", "s", 0, store.Persistent); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetLinkedPodTracked(ctx, "n", "u", "s", time.Minute)
	if err != nil || got != (store.TrackedLink{Pod: 0, Persistent: true}) {
		t.Fatalf("= (%+v, %v)", got, err)
	}
}

// TestPlaceTracked: SetLinkedPodIfAbsentTracked places a new user and reads
// an existing one in one call; Redis then tracks the link for the caller, who
// hears of the next change made by another client, and not of its own write.
//
// Both ways Dial can run the placements: on a client of their own whose
// connections track every read (the default), and on the store's one
// connection with CLIENT CACHING YES (NoPlacementConnection).
func TestPlaceTracked(t *testing.T) {
	for _, name := range redistest.Real {
		for _, own := range []bool{true, false} {
			mode := "placement-connection"
			if !own {
				mode = "one-connection"
			}
			t.Run(name+"/"+mode, func(t *testing.T) { testPlaceTracked(t, name, own) })
		}
	}
}

func testPlaceTracked(t *testing.T, name string, own bool) {
	ctx := redistest.Ctx(t)
	clientName := "placetest-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	reader, writer := trackedPairWith(t, name, store.DialConfig{ClientName: clientName, NoPlacementConnection: !own})
	var mu sync.Mutex
	seen := map[string]int{}
	defer reader.Tracker().Subscribe(func(links []store.Link) {
		mu.Lock()
		for _, l := range links {
			seen[store.LinkKey(l.Namespace, l.UID, l.Service)]++
		}
		mu.Unlock()
	})()
	count := func(k string) int {
		mu.Lock()
		defer mu.Unlock()
		return seen[k]
	}
	ns := redistest.Namespace(t)

	// A new user: placed, tracked; another client's move is heard once.
	got, err := reader.SetLinkedPodIfAbsentTracked(ctx, ns, "new", "room", 2, 30)
	if err != nil || got != (store.Placement{Link: store.TrackedLink{Pod: 2}, Placed: true, Tracked: true}) {
		t.Fatalf("placing a new user = (%+v, %v)", got, err)
	}
	key := store.LinkKey(ns, "new", "room")
	if name == redistest.Standalone {
		// Where the placement ran: the last command of each of the
		// reader's connections.
		list, err := writer.Client().Do(ctx, writer.Client().B().ClientList().Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		var placer, main string
		for line := range strings.Lines(list) {
			for f := range strings.FieldsSeq(line) {
				switch f {
				case "name=" + clientName + "-place":
					placer = line
				case "name=" + clientName:
					main = line
				}
			}
		}
		if own && !strings.Contains(placer, " cmd=evalsha ") {
			t.Fatalf("the placement connection %q did not run the placement", placer)
		}
		if !own && (placer != "" || !strings.Contains(main, " cmd=evalsha ")) {
			t.Fatalf("NoPlacementConnection: placement connection %q, store connection %q; want none, and the placement on the store's", placer, main)
		}
	}
	if _, err := writer.SetLinkedPod(ctx, ns, "new", "room", 4, store.Persistent); err != nil {
		t.Fatal(err)
	}
	redistest.Poll(t, 5*time.Second, "the move of "+key+" is reported", func() bool { return count(key) > 0 })
	// Our own write came first on the connection: had it been reported,
	// it would have been counted before the move.
	if n := count(key); n != 1 {
		t.Fatalf("%s reported %d times, want once (the other client's move only)", key, n)
	}

	// An existing persistent link: found, nothing written, tracked.
	got, err = reader.SetLinkedPodIfAbsentTracked(ctx, ns, "new", "room", 1, 30)
	if err != nil || got != (store.Placement{Link: store.TrackedLink{Pod: 4, Persistent: true}, Tracked: true}) {
		t.Fatalf("an existing persistent link = (%+v, %v)", got, err)
	}
	if _, err := writer.RemoveLinkedPod(ctx, ns, "new", "room", store.Persistent); err != nil {
		t.Fatal(err)
	}
	redistest.Poll(t, 5*time.Second, "the removal of "+key+" is reported", func() bool { return count(key) == 2 })

	// An existing temporary link: found as temporary.
	if _, err := writer.SetLinkedPod(ctx, ns, "temp", "room", 0, 30); err != nil {
		t.Fatal(err)
	}
	got, err = reader.SetLinkedPodIfAbsentTracked(ctx, ns, "temp", "room", 3, 30)
	if err != nil || got != (store.Placement{Link: store.TrackedLink{Pod: 0}, Tracked: true}) {
		t.Fatalf("an existing temporary link = (%+v, %v)", got, err)
	}
	if _, err := reader.SetLinkedPodIfAbsentTracked(ctx, ns, "x", "room", 3, store.Persistent); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("a persistent tracked placement: %v, want an invalid argument", err)
	}
}

// TestTrackingTables: every node of the real servers reports its table of
// tracked keys, holding at least the links this test's client read with
// tracking (other tests' clients may add theirs), and its limit; a store
// without tracking reports none.
func TestTrackingTables(t *testing.T) {
	for _, name := range redistest.Real {
		t.Run(name, func(t *testing.T) {
			ctx := redistest.Ctx(t)
			reader, writer := trackedPair(t, name)
			ns := redistest.Namespace(t)
			const links = 200
			for i := range links {
				uid := "u" + strconv.Itoa(i)
				if _, err := writer.SetLinkedPod(ctx, ns, uid, "room", i%4, -1); err != nil {
					t.Fatal(err)
				}
				if got, err := reader.GetLinkedPodTracked(ctx, ns, uid, "room", time.Minute); err != nil || got.Pod != i%4 {
					t.Fatalf("tracked read of %s: %+v, %v", uid, got, err)
				}
			}
			tables, err := reader.TrackingTables(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := len(redistest.Addrs(t, name)); len(tables) < want {
				t.Fatalf("%d tables, want one per node (%d): %+v", len(tables), want, tables)
			}
			t.Logf("tracking tables: %+v", tables)
			var keys int64
			for i, tt := range tables {
				if i > 0 && tables[i-1].Addr >= tt.Addr {
					t.Errorf("tables not in address order: %+v", tables)
				}
				if tt.Keys < 0 || tt.MaxKeys <= 0 {
					t.Errorf("%s: keys %d, max keys %d; want both read", tt.Addr, tt.Keys, tt.MaxKeys)
				}
				if want := float64(tt.Keys) / float64(tt.MaxKeys); tt.Fill() != want {
					t.Errorf("%s: fill %v, want %v", tt.Addr, tt.Fill(), want)
				}
				keys += tt.Keys
			}
			if keys < links {
				t.Errorf("the nodes track %d keys, fewer than the %d links read with tracking", keys, links)
			}
		})
	}
	t.Run("untracked", func(t *testing.T) {
		s, err := embedded.Dial(store.DialConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if tables, err := s.TrackingTables(redistest.Ctx(t)); err != nil || tables != nil {
			t.Fatalf("TrackingTables without tracking = %+v, %v; want none", tables, err)
		}
	})
	for _, tt := range []store.TrackingTable{{Keys: -1, MaxKeys: 10}, {Keys: 5, MaxKeys: 0}, {Keys: 5, MaxKeys: -1}} {
		if tt.Fill() != 0 {
			t.Errorf("%+v.Fill() = %v, want 0 (unknown or unlimited)", tt, tt.Fill())
		}
	}
}
