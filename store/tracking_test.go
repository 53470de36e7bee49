package store_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

// TestTracking: a link read with tracking is reported to the Tracker when
// another client changes it, on the real standalone server and cluster.
func TestTracking(t *testing.T) {
	for _, name := range redistest.Real {
		t.Run(name, func(t *testing.T) {
			addrs := redistest.Addrs(t, name)
			ctx := redistest.Ctx(t)
			reader, err := store.Dial(store.DialConfig{Addrs: addrs})
			if err != nil {
				t.Fatal(err)
			}
			defer reader.Close()
			writer := store.New(redistest.Open(t, name).Client)
			tr := reader.Tracker()
			if tr == nil {
				t.Fatal("Dial on a real Redis gave no tracker")
			}
			var mu sync.Mutex
			var seen []string
			cancel := tr.Subscribe(func(keys []string) {
				mu.Lock()
				seen = append(seen, keys...)
				mu.Unlock()
			})
			defer cancel()

			ns := redistest.Namespace(t)
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
			key := store.LinkKey(ns, "u1", "room")
			redistest.Poll(t, 5*time.Second, "the change of "+key+" is reported", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return slices.Contains(seen, key)
			})
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
			key2 := store.LinkKey(ns, "u2", "room")
			redistest.Poll(t, 5*time.Second, "the creation of "+key2+" is reported", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return slices.Contains(seen, key2)
			})
		})
	}
}

func TestTrackingEmbeddedHasNone(t *testing.T) {
	s, err := store.Dial(store.DialConfig{})
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
