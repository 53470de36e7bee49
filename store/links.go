package store

import (
	"context"
	"errors"
	"strconv"

	"github.com/redis/rueidis"
)

// Claim is the fixed-shape answer of TrySetLinkedPod.
type Claim struct {
	// Claimed is true when the link now points at the requested pod.
	Claimed bool
	// Owner is the pod linked afterwards: the requested pod when claimed, the
	// pod holding the persistent link when refused.
	Owner int
	// Previous is the pod linked before the call, or NoPod.
	Previous int
}

// linkCall validates the common arguments of a link write and returns its keys.
func linkCall(ns, uid, svc string, pod, ttl int) (keys []string, err error) {
	if err = linkArgs(ns, uid, svc); err != nil {
		return nil, err
	}
	if err = validPod("pod", pod); err != nil {
		return nil, err
	}
	if err = validTTL(ttl); err != nil {
		return nil, err
	}
	return linkKeyPair(ns, uid, svc), nil
}

// checkLink checks that r is usable and then that the arguments shared by
// every link operation are valid.
func (r *Redis) checkLink(ctx context.Context, ns, uid, svc string) error {
	if err := r.usable(ctx); err != nil {
		return err
	}
	return linkArgs(ns, uid, svc)
}

// runLink checks that r is usable and the arguments valid, then runs s on the
// link's {K1, K2} with ARGV {svc, pod, ttl}, as the writes by pod do. It
// returns the keys beside the reply.
func (r *Redis) runLink(ctx context.Context, op string, s script, ns, uid, svc string, pod, ttl int) ([]string, []rueidis.RedisMessage, error) {
	if err := r.usable(ctx); err != nil {
		return nil, nil, err
	}
	keys, err := linkCall(ns, uid, svc, pod, ttl)
	if err != nil {
		return nil, nil, err
	}
	arr, err := r.run(ctx, op, s, keys, []string{svc, strconv.Itoa(pod), strconv.Itoa(ttl)})
	return keys, arr, err
}

// linkKeyPair returns {K1, K2} of a link. K2 is a prefix of K1, so one
// allocation serves both.
func linkKeyPair(ns, uid, svc string) []string {
	k1 := LinkKey(ns, uid, svc)
	return []string{k1, k1[:len(k1)-len(svc)]}
}

// SetLinkedPod links uid to pod unconditionally and returns the pod linked
// before, or NoPod. ttl is Persistent (no expiry, listed in the uid's
// directory) or a temporary link's lifetime in seconds (removed from the
// directory). A previous value that is not a pod index is overwritten (which
// repairs it) and reported as NoPod.
func (r *Redis) SetLinkedPod(ctx context.Context, ns, uid, svc string, pod, ttl int) (previous int, err error) {
	const op = "SetLinkedPod"
	keys, arr, err := r.runLink(ctx, op, scriptSet, ns, uid, svc, pod, ttl)
	if err != nil {
		return NoPod, err
	}
	if len(arr) != 2 {
		return NoPod, unexpected(op, "reply is not {status, previous}")
	}
	prev, err := podValue(keys[0], &arr[1])
	if isCorrupt(err) {
		return NoPod, nil
	}
	return prev, err
}

// TrySetLinkedPod links uid to pod unless another pod holds a persistent link,
// in which case it changes nothing and names that owner. Otherwise it writes
// like SetLinkedPod.
func (r *Redis) TrySetLinkedPod(ctx context.Context, ns, uid, svc string, pod, ttl int) (Claim, error) {
	const op = "TrySetLinkedPod"
	keys, arr, err := r.runLink(ctx, op, scriptTrySet, ns, uid, svc, pod, ttl)
	if err == nil {
		var st int64
		if st, err = status(op, keys[0], arr); err == nil {
			c := Claim{Claimed: st == 1}
			if c.Owner, err = intAt(op, arr, 1); err == nil {
				if c.Previous, err = intAt(op, arr, 2); err == nil {
					return c, nil
				}
			}
		}
	}
	return Claim{Owner: NoPod, Previous: NoPod}, err
}

// SetLinkedPodIfAbsent links uid to pod only when no link exists, and returns
// the pod linked afterwards: pod, or the one linked earlier. It never refreshes
// an existing link's TTL. A temporary write also removes a leftover entry of
// svc in the uid's directory (left by a persistent link whose K1 was evicted).
// A corrupted existing value is a *CorruptError and nothing is written.
func (r *Redis) SetLinkedPodIfAbsent(ctx context.Context, ns, uid, svc string, pod, ttl int) (actual int, err error) {
	if err := r.usable(ctx); err != nil {
		return NoPod, err
	}
	const op = "SetLinkedPodIfAbsent"
	keys, err := linkCall(ns, uid, svc, pod, ttl)
	if err != nil {
		return NoPod, err
	}
	if ttl != Persistent {
		p, err := r.place(ctx, op, keys, svc, pod, ttl, false)
		return p.Link.Pod, err
	}
	arr, err := r.run(ctx, op, scriptIfAbsent, keys, []string{svc, strconv.Itoa(pod)})
	if err != nil {
		return NoPod, err
	}
	cur, err := linkIn(op, keys[0], arr, 2, "{status, current}")
	if err != nil || cur == NoPod {
		if err != nil {
			return NoPod, err
		}
		return pod, nil
	}
	return cur, nil
}

// place runs the place script (a temporary SetLinkedPodIfAbsent that reads
// the link back). track asks Redis, in the same round trip, to report later
// changes of the link to the Tracker.
func (r *Redis) place(ctx context.Context, op string, keys []string, svc string, pod, ttl int, track bool) (Placement, error) {
	fail := Placement{Link: TrackedLink{Pod: NoPod}}
	args := []string{svc, strconv.Itoa(pod), strconv.Itoa(ttl)}
	var arr []rueidis.RedisMessage
	var err error
	var tracked bool
	if track {
		arr, tracked, err = r.runTracked(ctx, op, scriptPlace, keys, args)
	} else {
		arr, err = r.run(ctx, op, scriptPlace, keys, args)
	}
	if e, ok := rueidis.IsRedisErr(errors.Unwrap(err)); ok && e.IsTryAgain() {
		// K1 and K2 sit on two nodes while their slot migrates: place with
		// K1 alone (a leftover K2 entry stays; readers check K1).
		return r.placeK1(ctx, op, keys[0], pod, ttl, track)
	}
	if err != nil {
		return fail, err
	}
	if _, err := status(op, keys[0], arr); err != nil {
		return fail, err
	}
	cur, err := linkIn(op, keys[0], arr, 3, "{status, previous, pttl}")
	if err != nil {
		return fail, err
	}
	pttl, err := arr[2].AsInt64()
	if err != nil {
		return fail, unexpected(op, "pttl is not an integer")
	}
	if cur == NoPod {
		return Placement{Link: TrackedLink{Pod: pod}, Placed: true, Tracked: tracked}, nil
	}
	return Placement{Link: TrackedLink{Pod: cur, Persistent: pttl == -1}, Tracked: tracked}, nil
}

// placeK1 is place with commands on K1 only, for a slot in migration:
// SET NX GET, then the PTTL that reads the link back (after CLIENT CACHING
// YES when track), in one round trip; inside MULTI/EXEC on a cluster, so that
// a redirection moves them together.
func (r *Redis) placeK1(ctx context.Context, op, key string, pod, ttl int, track bool) (Placement, error) {
	fail := Placement{Link: TrackedLink{Pod: NoPod}}
	b := r.client.B()
	track = track && r.tracker != nil
	cmds := rueidis.Commands{b.Set().Key(key).Value(strconv.Itoa(pod)).Nx().Get().ExSeconds(int64(ttl)).Build()}
	if track {
		cmds = append(cmds, b.ClientCaching().Yes().Build())
	}
	cmds = append(cmds, b.Pttl().Key(key).Build())
	var replies []rueidis.RedisResult
	if r.cluster {
		res := r.client.DoMulti(ctx, append(append(rueidis.Commands{b.Multi().Build()}, cmds...), b.Exec().Build())...)
		exec, err := res[len(res)-1].ToArray()
		if err != nil {
			// Aborted: a queued command's reply says why.
			for _, x := range res[1 : len(res)-1] {
				if x.Error() != nil {
					err = x.Error()
					break
				}
			}
			return fail, classify(op, key, err)
		}
		for _, m := range exec {
			replies = append(replies, rueidis.NewResult(m, nil))
		}
	} else {
		replies = r.client.DoMulti(ctx, cmds...)
	}
	if len(replies) != len(cmds) {
		return fail, unexpected(op, "placement replies missing")
	}
	old, err := replies[0].ToMessage()
	if err != nil && !rueidis.IsRedisNil(err) {
		return fail, classify(op, key, err)
	}
	cur, err := podValue(key, &old)
	if err != nil {
		return fail, err
	}
	pttl, err := replies[len(replies)-1].AsInt64()
	if err != nil {
		return fail, classify(op, key, err)
	}
	tracked := track && replies[1].Error() == nil
	if cur == NoPod {
		return Placement{Link: TrackedLink{Pod: pod}, Placed: true, Tracked: tracked}, nil
	}
	return Placement{Link: TrackedLink{Pod: cur, Persistent: pttl == -1}, Tracked: tracked}, nil
}

// ReplaceLinkedPod is a compare-and-set: it links uid to pod only while the
// link points at expected (NoPod: only while there is no link). It answers
// whether it wrote and the pod linked afterwards (NoPod when none). Clients use
// it to move a user off a dead pod without racing each other.
func (r *Redis) ReplaceLinkedPod(ctx context.Context, ns, uid, svc string, expected, pod, ttl int) (replaced bool, actual int, err error) {
	if err := r.usable(ctx); err != nil {
		return false, NoPod, err
	}
	const op = "ReplaceLinkedPod"
	keys, err := linkCall(ns, uid, svc, pod, ttl)
	if err != nil {
		return false, NoPod, err
	}
	if expected != NoPod {
		if err := validPod("expected", expected); err != nil {
			return false, NoPod, err
		}
	}
	arr, err := r.run(ctx, op, scriptReplace, keys,
		[]string{svc, strconv.Itoa(pod), strconv.Itoa(ttl), strconv.Itoa(expected)})
	if err != nil {
		return false, NoPod, err
	}
	st, err := status(op, keys[0], arr)
	if err != nil {
		return false, NoPod, err
	}
	if actual, err = intAt(op, arr, 1); err != nil {
		return false, NoPod, err
	}
	return st == 1, actual, nil
}

// GetLinkedPod returns the pod uid is linked to for svc, or NoPod.
func (r *Redis) GetLinkedPod(ctx context.Context, ns, uid, svc string) (int, error) {
	const op = "GetLinkedPod"
	if err := r.checkLink(ctx, ns, uid, svc); err != nil {
		return NoPod, err
	}
	key := LinkKey(ns, uid, svc)
	msg, err := r.client.Do(ctx, r.client.B().Get().Key(key).Build()).ToMessage()
	if err != nil && !rueidis.IsRedisNil(err) {
		return NoPod, classify(op, key, err)
	}
	p, err := podValue(key, &msg)
	if err != nil {
		return NoPod, err
	}
	return p, nil
}

// GetLinkedPodIfPersist returns the pod uid is linked to for svc only when the
// link is persistent, NoPod otherwise.
func (r *Redis) GetLinkedPodIfPersist(ctx context.Context, ns, uid, svc string) (int, error) {
	const op = "GetLinkedPodIfPersist"
	if err := r.checkLink(ctx, ns, uid, svc); err != nil {
		return NoPod, err
	}
	keys := linkKeyPair(ns, uid, svc)
	arr, err := r.run(ctx, op, scriptGetPersist, keys, nil)
	if err != nil {
		return NoPod, err
	}
	p, err := linkIn(op, keys[0], arr, 2, "{status, value}")
	if err != nil {
		return NoPod, err
	}
	return p, nil
}

// RemoveLinkedPod removes uid's link to svc. ttl Persistent deletes it now; a
// positive ttl keeps it readable for ttl seconds as a temporary link (a grace
// period). The directory entry is always removed. It answers whether a link existed.
func (r *Redis) RemoveLinkedPod(ctx context.Context, ns, uid, svc string, ttl int) (existed bool, err error) {
	const op = "RemoveLinkedPod"
	if err := r.checkLink(ctx, ns, uid, svc); err != nil {
		return false, err
	}
	if err := validTTL(ttl); err != nil {
		return false, err
	}
	keys := linkKeyPair(ns, uid, svc)
	arr, err := r.run(ctx, op, scriptRemove, keys, []string{svc, strconv.Itoa(ttl)})
	if err != nil {
		return false, err
	}
	st, err := status(op, keys[0], arr)
	return st == 1, err
}

// RemoveLinkedPodWithId is RemoveLinkedPod applied only while the link still
// points at pod; it answers whether it removed (or started the grace period of)
// the link. A corrupted link is a *CorruptError and is left alone.
func (r *Redis) RemoveLinkedPodWithId(ctx context.Context, ns, uid, svc string, pod, ttl int) (removed bool, err error) {
	const op = "RemoveLinkedPodWithId"
	keys, arr, err := r.runLink(ctx, op, scriptRemoveID, ns, uid, svc, pod, ttl)
	if err != nil {
		return false, err
	}
	st, err := status(op, keys[0], arr)
	return st == 1, err
}

// GetLinkService returns uid's persistent links, service → pod (an empty map
// when there are none), in one script. The uid's directory is only an index:
// an entry is returned only when its link (K1) still exists, has no expiry and
// names the same pod, so a directory entry outliving its link (K1 evicted by a
// Redis under maxmemory, or rewritten since) is never reported. Such entries
// are left out, not deleted: the read changes nothing. Directory entries that
// are not pod indexes are left out and reported together as *CorruptError
// values joined in err, beside the map.
func (r *Redis) GetLinkService(ctx context.Context, ns, uid string) (map[string]int, error) {
	if err := r.usable(ctx); err != nil {
		return nil, err
	}
	const op = "GetLinkService"
	if err := validName("namespace", ns); err != nil {
		return nil, err
	}
	if err := validUID("uid", uid); err != nil {
		return nil, err
	}
	key := DirKey(ns, uid)
	arr, err := r.run(ctx, op, scriptLinkService, []string{key}, nil)
	if err != nil {
		return nil, err
	}
	if len(arr) != 3 {
		return nil, unexpected(op, "reply is not {status, links, bad}")
	}
	confirmed, err1 := arr[1].AsStrSlice()
	rest, err2 := arr[2].AsStrSlice()
	if err1 != nil || err2 != nil || len(confirmed)%2 != 0 || len(rest)%2 != 0 {
		return nil, unexpected(op, "links are not field, value pairs")
	}
	links := make(map[string]int, len(confirmed)/2)
	var bad []error
	for i := 0; i < len(confirmed); i += 2 {
		svc, v := confirmed[i], confirmed[i+1]
		// The script checked both; checked again so that a field Go would
		// not accept is reported, never returned.
		p, ok := parsePod(v)
		if !ok || validName("service", svc) != nil {
			bad = append(bad, &CorruptError{Key: key, Field: svc, Value: v})
			continue
		}
		links[svc] = p
	}
	for i := 0; i < len(rest); i += 2 {
		bad = append(bad, &CorruptError{Key: key, Field: rest[i], Value: rest[i+1]})
	}
	return links, errors.Join(bad...)
}
