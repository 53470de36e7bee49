//go:build unix

package benchmarks

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

// BenchmarkBatchCPU splits the time of a batch lookup of 10,000 uids into
// the CPU each side spends on it: client-cpu-µs/op is this process's (its
// user and system time, the client library's goroutines and the collector
// included), redis-cpu-µs/op the server's (INFO's used_cpu_user and
// used_cpu_sys, read around each call). It has no goal and make bench does
// not run it: it says where a row of BenchmarkStoreBatch spends its time,
// which a ratio alone does not. The rows: store, the store's batch (plain
// MGETs); tracked and trackedbcast, the engine's read alone
// (LinkedPodsTracked) in the default and the broadcast mode; engine and
// enginebcast, a cold engine batch (every uid forgotten before each call,
// untimed) in each mode; goredis_mget, one MGET on go-redis.
//
// On 2 cores that the client and the server share, the call's time follows
// their CPU together. 2026-12-07, a fresh server, -benchtime 1s -count 3
// (client ms + server ms a call): store 3.3–3.6 + 3.0–3.5; tracked 3.5–3.7
// + 4.2–4.7; trackedbcast 3.2–3.7 + 2.8–3.8; engine 6.3–6.9 + 5.0–5.3;
// enginebcast 5.3–5.5 + 3.1–3.4; goredis_mget 4.2–4.4 + 2.7–2.9. The
// default mode's tracking costs the server about a millisecond more per
// 10,000 keys, and the engine's cache work (a lookup before the read, a put
// after it, each a random slot of a table larger than the processor's
// caches) costs the client 2–3 ms: together, the cold batch's gap to the
// store's. A second run of the two engine rows alone gave 5.7 + 4.6 and
// 5.3 + 4.3: the rows move by a few tenths between runs.
func BenchmarkBatchCPU(b *testing.B) {
	e := newStoreEnv(b)
	ctx := benchCtx(b)
	uids := e.linkBatch(b, ctx, 10000)
	bst, err := store.Dial(store.DialConfig{Addrs: redistest.Addrs(b, redistest.Standalone), Broadcast: true, BroadcastNamespaces: []string{e.ns}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(bst.Close)
	read := func(st *store.Redis) func() error {
		return func() error {
			_, err := st.LinkedPodsTracked(ctx, e.ns, uids, benchSvc, time.Hour)
			return err
		}
	}
	cold := func(st *store.Redis) namedCall {
		c, err := engine.NewClient(engine.ClientConfig{Store: st, TempLinkTTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
		return namedCall{"", func() error {
			_, err := c.BatchGetLinkedPod(ctx, e.ns, uids, benchSvc)
			return err
		}, func() {
			for _, uid := range uids {
				c.CacheExpired(e.ns, uid, benchSvc)
			}
		}}
	}
	engineCall, bcastCall := cold(e.ours), cold(bst)
	for _, im := range []namedCall{
		{"store", func() error { _, err := e.ours.BatchGetLinkedPod(ctx, e.ns, uids, benchSvc); return err }, nil},
		{"tracked", read(e.ours), nil},
		{"trackedbcast", read(bst), nil},
		{"engine", engineCall.call, engineCall.prep},
		{"enginebcast", bcastCall.call, bcastCall.prep},
		{"goredis_mget", func() error { _, err := batchGoRedisMGET(ctx, e.rdb, e.ns, uids, benchSvc); return err }, nil},
	} {
		b.Run("impl="+im.name, func(b *testing.B) {
			var server, client float64
			for b.Loop() {
				if im.prep != nil {
					b.StopTimer()
					im.prep()
					b.StartTimer()
				}
				s0, c0 := serverCPU(b, ctx, e), processCPU()
				if err := im.call(); err != nil {
					b.Fatal(err)
				}
				client += processCPU() - c0
				server += serverCPU(b, ctx, e) - s0
			}
			b.ReportMetric(client*1e6/float64(b.N), "client-cpu-µs/op")
			b.ReportMetric(server*1e6/float64(b.N), "redis-cpu-µs/op")
		})
	}
}

// serverCPU returns the seconds of CPU the standalone server has used.
func serverCPU(b *testing.B, ctx context.Context, e *storeEnv) float64 {
	info, err := e.rdb.Info(ctx, "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(info, "\r\n") {
		name, v, ok := strings.Cut(line, ":")
		if ok && (name == "used_cpu_user" || name == "used_cpu_sys") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("INFO cpu: %s: %v", line, err)
			}
			sum += f
		}
	}
	return sum
}

// processCPU returns the seconds of CPU this process has used.
func processCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
