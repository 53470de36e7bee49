package engine_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

// TestTracking: on the real servers a client counts the links it caches and
// reads the nodes' tracking tables, on demand (CheckTracking) and by itself
// every Cache.TrackingCheck; the tables hold at least the links it read.
func TestTracking(t *testing.T) {
	for _, name := range redistest.Real {
		t.Run(name, func(t *testing.T) {
			ctx := redistest.Ctx(t)
			ns := redistest.Namespace(t)
			tracked, err := store.Dial(store.DialConfig{Addrs: redistest.Addrs(t, name)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(tracked.Close)
			// The period is the client's refresh: its worker checks on that tick.
			c, err := engine.NewClient(engine.ClientConfig{Store: tracked, Timing: testTiming,
				Cache: engine.CacheConfig{TrackingCheck: testTiming.Refresh}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			writer := store.New(redistest.Open(t, name).Client)
			heartbeat(t, writer, ns, 3)
			const links = 100
			for i := range links {
				uid := "u" + strconv.Itoa(i)
				if _, err := writer.SetLinkedPod(ctx, ns, uid, svc, 3, store.Persistent); err != nil {
					t.Fatal(err)
				}
				if pod, err := c.ComputeLinkedPod(ctx, ns, uid, svc); err != nil || pod != 3 {
					t.Fatalf("%s: = (%d, %v), want 3", uid, pod, err)
				}
			}
			st, err := c.CheckTracking(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("tracking: %d links, fill %.6f, tables %+v", st.Links, st.Fill(), st.Tables)
			// Entries only leave the cache from here on (an invalidation: the
			// cluster is shared with tests that move slots).
			if after := c.CacheStats().Size; st.Links > links || st.Links < after || st.Links == 0 {
				t.Errorf("Links = %d, want the cache's size: at most the %d links read, at least the %d cached after", st.Links, links, after)
			}
			var keys int64
			for _, tt := range st.Tables {
				keys += tt.Keys
			}
			if len(st.Tables) == 0 || keys < links || st.ReadAt.IsZero() || st.Err != nil {
				t.Fatalf("after CheckTracking: %+v; want tables tracking at least %d keys", st, links)
			}
			if got := c.Tracking(); !got.ReadAt.Equal(st.ReadAt) || len(got.Tables) != len(st.Tables) {
				t.Errorf("Tracking() = %+v, want the read of CheckTracking %+v", got, st)
			}
			// The worker reads them again by itself.
			redistest.Poll(t, 20*testTiming.Refresh+5*time.Second, "the client rereads the tracking tables", func() bool {
				return c.Tracking().ReadAt.After(st.ReadAt)
			})
		})
	}
	t.Run("fill", func(t *testing.T) {
		st := engine.TrackingStats{Tables: []store.TrackingTable{{Keys: 1, MaxKeys: 10}, {Keys: 9, MaxKeys: 10}, {Keys: -1, MaxKeys: 10}}}
		if st.Fill() != 0.9 {
			t.Errorf("Fill = %v, want the fullest node's 0.9", st.Fill())
		}
		if (engine.TrackingStats{}).Fill() != 0 {
			t.Error("Fill with no tables is not 0")
		}
	})
}
