package store

import (
	"testing"

	"github.com/stickyroute/stickyroute/internal/redistest"
)

// TestPlaceK1: the placement on K1 alone, used while a slot migrates,
// answers like the script (placed, found, persistent, tracked) on every
// backend, inside MULTI/EXEC on the cluster.
func TestPlaceK1(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := redistest.Ctx(t)
		ns := redistest.Namespace(t)
		r := New(b.Client)
		if b.Mini == nil {
			// A tracker, so that the CLIENT CACHING YES is sent (the test's
			// client has no tracking on: Redis refuses it, and the placement
			// must say it is not tracked).
			r.tracker = NewTracker()
		}
		key := LinkKey(ns, "u", "room")
		got, err := r.placeK1(ctx, "test", key, 3, 30, true)
		if err != nil || got.Link != (TrackedLink{Pod: 3}) || !got.Placed || got.Tracked {
			t.Fatalf("new user = (%+v, %v), want placed on 3, not tracked", got, err)
		}
		got, err = r.placeK1(ctx, "test", key, 5, 30, false)
		if err != nil || got != (Placement{Link: TrackedLink{Pod: 3}}) {
			t.Fatalf("existing temporary link = (%+v, %v), want found 3", got, err)
		}
		if _, err := r.SetLinkedPod(ctx, ns, "p", "room", 0, Persistent); err != nil {
			t.Fatal(err)
		}
		got, err = r.placeK1(ctx, "test", LinkKey(ns, "p", "room"), 5, 30, false)
		if err != nil || got != (Placement{Link: TrackedLink{Pod: 0, Persistent: true}}) {
			t.Fatalf("existing persistent link = (%+v, %v), want found 0 persistent", got, err)
		}
		if err := b.Client.Do(ctx, b.Client.B().Set().Key(LinkKey(ns, "c", "room")).Value("x").Build()).Error(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.placeK1(ctx, "test", LinkKey(ns, "c", "room"), 5, 30, false); !isCorrupt(err) {
			t.Fatalf("corrupt link: %v, want a CorruptError", err)
		}
	})
}
