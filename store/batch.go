package store

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"

	"github.com/redis/rueidis"

	"github.com/stickyroute/stickyroute/internal/podgroup"
	"github.com/stickyroute/stickyroute/internal/slot"
)

// batchChunk is the most keys one MGET of a batch carries on a standalone
// server. The chunks go out together on the pipelined connection (one round
// trip), each from its own goroutine: Redis answers the first while the client
// is still building the keys of the next and parsing earlier replies, and no
// single command holds the server for long. 256 measured best between 128 and
// 4096 (BenchmarkBatch), and again after the keys got cheaper: 512 and 1024
// were no faster, nor were runs of chunks sent in one DoMulti (from 1 to 8
// goroutines), nor runs on dedicated connections (faster only while other
// processes load the machine). On 2 cores shared with Redis the batch is then
// bound by Redis's work per key and rueidis's writing and parsing of each key
// and value: the same MGETs with their keys built in advance and their replies
// left unread are only 6–12% faster than the whole of BatchGetLinkedPod.
const batchChunk = 256

const batchOp = "BatchGetLinkedPod"

// BatchGetLinkedPod looks up the links of many uids to svc in one pipelined
// round trip and groups them by pod: pod → uids in input order. Uids without a
// link are left out. On a cluster the keys are grouped per hash slot (one MGET
// cannot span slots) and every node is asked at once.
//
// Values that are not pod indexes are left out of the map and reported as
// *CorruptError values joined in err, beside the map of every other uid. A
// failure of the round itself returns a nil map and the error.
func (r *Redis) BatchGetLinkedPod(ctx context.Context, ns string, uids []string, svc string) (map[int][]string, error) {
	if err := r.usable(ctx); err != nil {
		return nil, err
	}
	if err := batchArgs(ns, uids, svc); err != nil {
		return nil, err
	}
	if len(uids) == 0 {
		return map[int][]string{}, nil
	}
	pods := make([]int32, len(uids))
	var bad []error
	var err error
	if r.cluster {
		bad, err = r.batchCluster(ctx, r.client, batchOp, ns, uids, svc, pods)
	} else {
		bad, err = r.batchStandalone(ctx, r.client, false, batchOp, ns, uids, svc, pods)
	}
	if err != nil {
		return nil, err
	}
	return podgroup.ByPod(uids, pods), errors.Join(bad...)
}

// batchStandalone sends one MGET per chunk of batchChunk uids, each from its
// own goroutine, so that all chunks are in flight on the pipelined connection
// at once (one round trip) while keys of later chunks are still being built
// and replies of earlier ones parsed. It fills pods[i] for uids[i]. The
// MGETs go through client; with caching, each is preceded on its connection,
// in the same round trip, by CLIENT CACHING YES, so that Redis tracks all
// of its keys for the client.
func (r *Redis) batchStandalone(ctx context.Context, client rueidis.Client, caching bool, op, ns string, uids []string, svc string, pods []int32) ([]error, error) {
	chunks := (len(uids) + batchChunk - 1) / batchChunk
	bad := make([][]error, chunks)
	fail := make([]error, chunks)
	do := func(c int) {
		lo, hi := c*batchChunk, min((c+1)*batchChunk, len(uids))
		s := chunkPool.Get().(*chunkKeys)
		keys := s.build(ns, uids[lo:hi], svc)
		mget := client.B().Mget().Key(keys...).Build()
		var vals []rueidis.RedisMessage
		var err error
		if caching {
			out := client.DoMulti(ctx, r.caching, mget)
			if err = out[0].Error(); err == nil {
				vals, err = out[1].ToArray()
			}
		} else {
			vals, err = client.Do(ctx, mget).ToArray()
		}
		if err != nil {
			fail[c] = classify(op, keys[0], err)
			return // the keys may still be queued to be written: not reused
		}
		if len(vals) != len(keys) {
			fail[c] = unexpected(op, "MGET answered "+strconv.Itoa(len(vals))+" values for "+strconv.Itoa(len(keys))+" keys")
			return
		}
		for k := range vals {
			p, err := podValue(keys[k], &vals[k])
			if err != nil {
				bad[c] = append(bad[c], err)
				p = NoPod
			}
			pods[lo+k] = int32(p)
		}
		if bad[c] == nil { // the errors name keys in s
			chunkPool.Put(s)
		}
	}
	if chunks == 1 {
		do(0)
	} else {
		var wg sync.WaitGroup
		for c := range chunks {
			wg.Go(func() { do(c) })
		}
		wg.Wait()
	}
	for _, err := range fail {
		if err != nil {
			return nil, err // the first failed chunk speaks for the round
		}
	}
	return slices.Concat(bad...), nil
}

// chunkKeys is the memory a chunk's keys are built in. It is reused from
// chunkPool once the chunk's MGET was answered and none of its keys went
// into an error: rueidis is done with the command then and nothing else
// holds the keys. A batch of 10,000 uids would otherwise allocate about
// 460 KB of keys per call, garbage the moment the replies are in.
type chunkKeys struct {
	buf  []byte
	keys []string
}

var chunkPool = sync.Pool{New: func() any { return new(chunkKeys) }}

// build returns the LinkKeys of uids, in s's memory.
func (s *chunkKeys) build(ns string, uids []string, svc string) []string {
	if cap(s.keys) < len(uids) {
		s.keys = make([]string, len(uids), max(len(uids), batchChunk))
	}
	s.keys = s.keys[:len(uids)]
	s.buf = buildLinkKeys(s.buf, s.keys, ns, uids, svc)
	return s.keys
}

// batchCluster groups the keys per hash slot (one MGET cannot span slots) and
// sends every group in one DoMulti through client, which asks each node at
// once.
func (r *Redis) batchCluster(ctx context.Context, client rueidis.Client, op, ns string, uids []string, svc string, pods []int32) ([]error, error) {
	keys := linkKeys(ns, uids, svc)
	order, runs := slotRuns(keys)
	cmds := make(rueidis.Commands, 0, len(runs))
	sent := make([]string, len(keys))
	for j, i := range order {
		sent[j] = keys[i]
	}
	start := 0
	for _, end := range runs {
		cmds = append(cmds, client.B().Mget().Key(sent[start:end]...).Build())
		start = end
	}
	var bad []error
	j := 0
	for _, res := range client.DoMulti(ctx, cmds...) {
		vals, err := res.ToArray()
		if err != nil {
			return nil, classify(op, keys[0], err)
		}
		if j+len(vals) > len(order) {
			break
		}
		for k := range vals {
			i := order[j+k]
			p, err := podValue(keys[i], &vals[k])
			if err != nil {
				bad = append(bad, err)
				p = NoPod
			}
			pods[i] = int32(p)
		}
		j += len(vals)
	}
	if j != len(keys) {
		return nil, unexpected(op, "MGET answered "+strconv.Itoa(j)+" values for "+strconv.Itoa(len(keys))+" keys")
	}
	return bad, nil
}

// slotRuns orders the keys by hash slot (stably, so input order holds inside a
// slot) and returns that order and the end of each run of one slot.
func slotRuns(keys []string) (order, runs []int) {
	slots := make([]uint16, len(keys))
	order = make([]int, len(keys))
	for i, k := range keys {
		slots[i] = slot.Of(k)
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(slots[a], slots[b]) })
	for j := 1; j < len(order); j++ {
		if slots[order[j]] != slots[order[j-1]] {
			runs = append(runs, j)
		}
	}
	return order, append(runs, len(order))
}
