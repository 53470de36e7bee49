package store

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/stickyroute/stickyroute/internal/slot"
)

// batchChunk is the most keys one MGET of a batch carries on a standalone
// server. Several MGETs go out in one pipelined round: Redis answers the first
// while the client is still encoding the next and parses the replies as they
// stream in, and no single command holds the server for long.
const batchChunk = 512

// BatchGetLinkedPod looks up the links of many uids to svc in one pipelined
// round trip and groups them by pod: pod → uids in input order. Uids without a
// link are left out. On a cluster the keys are grouped per hash slot (one MGET
// cannot span slots) and every node is asked at once.
//
// Values that are not pod indexes are left out of the map and reported as
// *CorruptError values joined in err, beside the map of every other uid. A
// failure of the round itself returns a nil map and the error.
func (r *Redis) BatchGetLinkedPod(ctx context.Context, ns string, uids []string, svc string) (map[int][]string, error) {
	const op = "BatchGetLinkedPod"
	if err := validName("namespace", ns); err != nil {
		return nil, err
	}
	if err := validName("service", svc); err != nil {
		return nil, err
	}
	for i, uid := range uids {
		if err := validUID("uid", uid); err != nil {
			err.(*InvalidArgumentError).Arg = "uids[" + strconv.Itoa(i) + "]"
			return nil, err
		}
	}
	if len(uids) == 0 {
		return map[int][]string{}, nil
	}
	keys := make([]string, len(uids))
	for i, uid := range uids {
		keys[i] = LinkKey(ns, uid, svc)
	}

	// order[j] is the input index of the j-th key sent; runs[k] ends the k-th MGET.
	var order []int
	var runs []int
	if r.cluster {
		order, runs = slotRuns(keys)
	} else {
		for end := batchChunk; end < len(keys); end += batchChunk {
			runs = append(runs, end)
		}
		runs = append(runs, len(keys))
	}
	cmds := make(rueidis.Commands, 0, len(runs))
	sent := keys
	if order != nil {
		sent = make([]string, len(keys))
		for j, i := range order {
			sent[j] = keys[i]
		}
	}
	start := 0
	for _, end := range runs {
		cmds = append(cmds, r.client.B().Mget().Key(sent[start:end]...).Build())
		start = end
	}

	// pods[i] is the pod of uids[i], NoPod when missing or corrupt.
	pods := make([]int32, len(uids))
	var bad []error
	j := 0
	for _, res := range r.client.DoMulti(ctx, cmds...) {
		vals, err := res.ToArray()
		if err != nil {
			return nil, classify(op, keys[0], err)
		}
		for k := range vals {
			i := j + k
			if order != nil {
				i = order[j+k]
			}
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
	return groupByPod(uids, pods), errors.Join(bad...)
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

// groupByPod builds pod → uids in input order, sizing every group exactly.
func groupByPod(uids []string, pods []int32) map[int][]string {
	counts := make(map[int32]int)
	for _, p := range pods {
		if p != NoPod {
			counts[p]++
		}
	}
	groups := make(map[int][]string, len(counts))
	for p, n := range counts {
		groups[int(p)] = make([]string, 0, n)
	}
	for i, p := range pods {
		if p != NoPod {
			groups[int(p)] = append(groups[int(p)], uids[i])
		}
	}
	return groups
}
