package engine

import (
	"context"
	"time"

	"github.com/stickyroute/stickyroute/store"
)

// TrackingNearFill is the fill of a Redis node's tracking table (keys over
// tracking-table-max-keys) from which the client's view of coherence is at
// risk: obs's analyzer warns from here, and from 1 Redis is evicting
// tracked keys by invalidating them, so every client's cache churns.
const TrackingNearFill = 0.8

// TrackingStats is what a client knows of the tracking that keeps its cache
// coherent: how many links it caches (on a tracking store, Redis tracks
// each of them for this client) and the tracking tables of the Redis nodes,
// which hold the keys every client of the node tracks.
type TrackingStats struct {
	// Links is the number of links in the client's cache.
	Links int
	// Tables are the nodes' tracking tables as last read (none on a store
	// without tracking, or before the first read).
	Tables []store.TrackingTable
	// ReadAt is when Tables were read; zero before the first read.
	ReadAt time.Time
	// Err is the last read's error, nil when it succeeded (Tables are then
	// those of the read before).
	Err error
}

// Fill returns the fullest node's fill (store.TrackingTable.Fill), 0 when
// no table is known.
func (s TrackingStats) Fill() float64 {
	f := 0.0
	for _, t := range s.Tables {
		f = max(f, t.Fill())
	}
	return f
}

// trackingRead is the last read of the tracking tables.
type trackingRead struct {
	tables []store.TrackingTable
	at     time.Time
	err    error
}

// Tracking returns the client's tracking statistics: its cached links now
// and the tracking tables as last read, by CheckTracking or by the client
// itself every Cache.TrackingCheck. It makes no Redis call.
func (c *Client) Tracking() TrackingStats {
	st := TrackingStats{Links: c.cache.stats().Size}
	if r := c.tracking.Load(); r != nil {
		st.Tables, st.ReadAt, st.Err = r.tables, r.at, r.err
	}
	return st
}

// CheckTracking reads the tracking tables of the store's Redis nodes now
// (store.Redis.TrackingTables) and returns the statistics, which Tracking
// returns from then on.
func (c *Client) CheckTracking(ctx context.Context) (TrackingStats, error) {
	if err := c.usable(ctx); err != nil {
		return TrackingStats{}, err
	}
	tables, err := c.store.TrackingTables(ctx)
	r := &trackingRead{tables: tables, at: time.Now(), err: err}
	if err != nil {
		if old := c.tracking.Load(); old != nil {
			r.tables = old.tables
		}
	}
	c.tracking.Store(r)
	return c.Tracking(), err
}

// checkTrackingDue reads the tracking tables every Cache.TrackingCheck (the
// first one period after NewClient), on the client's background worker. It does
// not while any service is in an outage: Redis is away, and the worker has
// better things to send it when it comes back.
func (c *Client) checkTrackingDue() {
	every := c.cfg.Cache.TrackingCheck
	if every <= 0 || c.store.Tracker() == nil || c.deg.ndown.Load() > 0 {
		return
	}
	now := time.Now().UnixNano()
	if due := c.trackingDue.Load(); now < due || !c.trackingDue.CompareAndSwap(due, now+int64(every)) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Refresh)
	defer cancel()
	_, _ = c.CheckTracking(ctx) // the error is kept in TrackingStats.Err
}
