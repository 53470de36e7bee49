package engine

import (
	"context"
	"errors"
	"sync"

	"github.com/stickyroute/stickyroute/internal/podgroup"
	"github.com/stickyroute/stickyroute/store"
)

// batchChunk is the most cache misses of a batch that one store read
// carries: as many keys as one MGET of the store's own batch (256). Each
// chunk is read and cached from its own goroutine as soon as the lookups
// found its misses, so that the cache's work (looking the uids up, storing
// what Redis answered) runs while Redis answers the other chunks, instead of
// before and after the whole round.
const batchChunk = 256

// batchRead is one chunk of a batch's cache misses: where each sits in the
// batch, its uid, key hash and the cache token taken before the read (see
// linkCache), and what the read returned. Reused through batchReads.
type batchRead struct {
	n    int
	idx  [batchChunk]int32
	uids [batchChunk]string
	hash [batchChunk]uint64
	tok  [batchChunk]uint64
	// got is false when the read itself failed (err says why); when true,
	// err joins the chunk's corrupt values.
	got bool
	err error
}

var batchReads = sync.Pool{New: func() any { return new(batchRead) }}

// batch is BatchGetLinkedPod; op (may be nil) learns the number of uids and
// whether any missed the cache.
//
// The misses go to Redis by chunks of batchChunk, each read from its own
// goroutine as soon as the lookups have found it, all of them in one
// observed round trip: they are in flight together on the pipelined
// connection. Each chunk caches what it read, guarded by the tokens its
// lookups took before the read.
func (c *Client) batch(ctx context.Context, ns string, uids []string, svc string, op *Op) (map[int][]string, error) {
	if op != nil {
		op.Keys, op.Cache = len(uids), CacheHit
	}
	sv, err := c.states.service(ctx, ns, svc)
	if err != nil {
		return nil, err
	}
	pods := make([]int32, len(uids))
	var (
		reads  []*batchRead
		wg     sync.WaitGroup
		rctx   context.Context
		rt     *Op
		misses int
		hs     [batchChunk]uint64
	)
	r := batchReads.Get().(*batchRead)
	for lo := 0; lo < len(uids); lo += batchChunk {
		part := uids[lo:min(lo+batchChunk, len(uids))]
		for j, uid := range part {
			hs[j] = keyHash(sv.hash, uid)
		}
		c.cache.prefetch(hs[:len(part)])
		for j, uid := range part {
			i, h := lo+j, hs[j]
			if pod, _, ok := c.cache.lookup(h, ns, svc, uid); ok {
				pods[i] = int32(pod)
				continue
			}
			k := r.n
			r.idx[k], r.uids[k], r.hash[k], r.tok[k] = int32(i), uid, h, c.cache.token(h)
			if r.n++; r.n < batchChunk || i == len(uids)-1 {
				continue
			}
			// A full chunk with more uids to look up: read it meanwhile.
			if misses == 0 {
				rctx, rt = c.obs.rt(ctx, rtBatchTracked, ns, svc, 0)
			}
			misses += r.n
			reads = append(reads, r)
			full, rc := r, rctx
			wg.Go(func() { c.readChunk(rc, sv, full, pods) })
			r = batchReads.Get().(*batchRead)
		}
	}
	if r.n > 0 {
		if misses == 0 {
			rctx, rt = c.obs.rt(ctx, rtBatchTracked, ns, svc, 0)
		}
		misses += r.n
		reads = append(reads, r)
		c.readChunk(rctx, sv, r, pods) // the last one, on this goroutine
	} else {
		batchReads.Put(r)
	}
	c.cache.count(len(uids)-misses, misses)
	wg.Wait()
	if misses == 0 {
		return podgroup.ByPod(uids, pods), nil
	}
	if op != nil {
		op.Cache = CacheMiss
	}
	var failed error
	var bad []error
	for _, r := range reads {
		switch {
		case !r.got:
			if failed == nil {
				failed = r.err // the first failed chunk speaks for the round
			}
		case r.err != nil:
			// Corrupt values, reported beside the groups: one join of all of them.
			if j, ok := r.err.(interface{ Unwrap() []error }); ok {
				bad = append(bad, j.Unwrap()...)
			} else {
				bad = append(bad, r.err)
			}
		}
		r.release()
	}
	if rt != nil {
		rt.Keys = misses // known once the last chunk went out
	}
	if failed != nil {
		c.obs.end(rctx, rt, failed)
		return nil, failed
	}
	err = errors.Join(bad...)
	c.obs.end(rctx, rt, err)
	return podgroup.ByPod(uids, pods), err
}

// readChunk reads r's links with tracking, caches the ones found (unless
// invalidated since r's lookups) and writes every pod in pods.
func (c *Client) readChunk(ctx context.Context, sv *service, r *batchRead, pods []int32) {
	got, err := c.store.LinkedPodsTracked(ctx, sv.ns, r.uids[:r.n], sv.name, c.cfg.Cache.TTL)
	r.got, r.err = got != nil, err
	c.cache.prefetch(r.hash[:r.n])
	for k, p := range got {
		pods[r.idx[k]] = int32(p)
		if p != store.NoPod {
			c.cache.put(r.hash[k], sv, r.uids[k], p, r.tok[k])
		}
	}
}

// release hands r back to batchReads, its uids cleared so that the pool
// pins none of the caller's strings.
func (r *batchRead) release() {
	clear(r.uids[:r.n])
	r.n, r.got, r.err = 0, false, nil
	batchReads.Put(r)
}
