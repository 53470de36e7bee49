package store

import (
	"context"
	"slices"
	"strconv"
	"strings"
)

// TrackingTable is one Redis node's table of tracked keys: the keys some
// client read with tracking and will be told about when they change. Redis
// keeps at most MaxKeys of them (tracking-table-max-keys, default 1,000,000
// per node); past that it makes room by invalidating keys it tracks, as if
// they had changed, so every client caching links on that node loses
// entries it still needs and reads them again: the cache churns, silently.
type TrackingTable struct {
	// Addr is the node's address.
	Addr string
	// Keys is the number of keys the node tracks now (INFO stats
	// tracking_total_keys), for every client together; -1 when unknown.
	Keys int64
	// MaxKeys is the node's limit (CONFIG GET tracking-table-max-keys): 0
	// means no limit; -1 unknown (CONFIG refused, as managed Redis services
	// often do).
	MaxKeys int64
}

// Fill returns Keys / MaxKeys: 1 or more means the node is invalidating
// tracked keys to stay within its limit. It is 0 when either is unknown or
// there is no limit.
func (t TrackingTable) Fill() float64 {
	if t.Keys < 0 || t.MaxKeys <= 0 {
		return 0
	}
	return float64(t.Keys) / float64(t.MaxKeys)
}

// TrackingTables reads the tracking table of every node the store's client
// talks to (one for a standalone server, every master of a cluster), in the
// order of their addresses. A store without tracking (built by New without
// a Tracker, or on the embedded Redis) tracks nothing and returns none. An
// unreachable node fails the call with ErrUnavailable.
func (r *Redis) TrackingTables(ctx context.Context) ([]TrackingTable, error) {
	if err := r.usable(ctx); err != nil {
		return nil, err
	}
	if r.tracker == nil {
		return nil, nil
	}
	const op = "TrackingTables"
	nodes := r.client.Nodes()
	addrs := make([]string, 0, len(nodes))
	for a := range nodes {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	tables := make([]TrackingTable, 0, len(addrs))
	for _, a := range addrs {
		c := nodes[a]
		out := c.DoMulti(ctx,
			c.B().Info().Section("stats").Build(),
			c.B().ConfigGet().Parameter("tracking-table-max-keys").Build())
		info, err := out[0].ToString()
		if err != nil {
			return nil, classify(op, a, err)
		}
		t := TrackingTable{Addr: a, Keys: infoInt(info, "tracking_total_keys"), MaxKeys: -1}
		// CONFIG GET answers a map (RESP3) or a flat name, value list.
		if m, err := out[1].AsStrMap(); err == nil {
			if v, err := strconv.ParseInt(m["tracking-table-max-keys"], 10, 64); err == nil {
				t.MaxKeys = v
			}
		} else if l, err := out[1].AsStrSlice(); err == nil && len(l) == 2 {
			if v, err := strconv.ParseInt(l[1], 10, 64); err == nil {
				t.MaxKeys = v
			}
		}
		tables = append(tables, t)
	}
	return tables, nil
}

// infoInt returns the integer field name of an INFO reply, -1 when absent.
func infoInt(info, name string) int64 {
	for line := range strings.Lines(info) {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return -1
}
