package store

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"

	"github.com/redis/rueidis"
)

// SetServiceState publishes pod's load and routing state for svc, stamped with
// the Redis server's clock. It returns the stamp (Unix milliseconds).
func (r *Redis) SetServiceState(ctx context.Context, ns, svc string, pod, load int, routing RoutingState) (updated int64, err error) {
	const op = "SetServiceState"
	if err := r.serviceCall(ctx, ns, svc); err != nil {
		return 0, err
	}
	if err := validPod("pod", pod); err != nil {
		return 0, err
	}
	if load < 0 {
		return 0, invalid("load", strconv.Itoa(load)+" is negative")
	}
	w, ok := routing.wire()
	if !ok {
		return 0, invalid("routing", routing.String()+" is not Ready, DenyNewCall or Shutdown")
	}
	key := StateKey(ns, svc)
	res := scriptSetState.lua.Exec(ctx, r.client, []string{key},
		[]string{strconv.Itoa(pod), strconv.Itoa(load), string(w)})
	return stamp(op, key, res)
}

// stamp reads the server-clock stamp a state script answers.
func stamp(op, key string, res rueidis.RedisResult) (int64, error) {
	s, err := res.ToString()
	if err != nil {
		if res.Error() != nil {
			return 0, classify(op, key, res.Error())
		}
		return 0, unexpected(op, "stamp is not a string")
	}
	ms, ok := parseUint63(s)
	if !ok {
		return 0, unexpected(op, "stamp "+strconv.Quote(s)+" is not a time")
	}
	return ms, nil
}

// GetServiceState reads every pod state of svc and the Redis server's clock in
// one round trip. Fields that cannot be parsed are skipped and listed in
// ServiceState.Skipped; they never fail the whole service.
func (r *Redis) GetServiceState(ctx context.Context, ns, svc string) (ServiceState, error) {
	const op = "GetServiceState"
	if err := r.serviceCall(ctx, ns, svc); err != nil {
		return ServiceState{}, err
	}
	key := StateKey(ns, svc)
	arr, err := r.run(ctx, op, scriptGetState, []string{key}, nil)
	if err != nil {
		return ServiceState{}, err
	}
	if len(arr) != 3 {
		return ServiceState{}, unexpected(op, "reply is not {seconds, micros, fields}")
	}
	sec, err1 := arr[0].AsInt64()
	usec, err2 := arr[1].AsInt64()
	fields, err3 := arr[2].ToArray()
	if err1 != nil || err2 != nil || err3 != nil || len(fields)%2 != 0 {
		return ServiceState{}, unexpected(op, "reply is not {seconds, micros, fields}")
	}
	st := ServiceState{Now: sec*1000 + usec/1000, Pods: make([]PodState, 0, len(fields)/2)}
	for i := 0; i < len(fields); i += 2 {
		f, _ := fields[i].ToString()
		v, _ := fields[i+1].ToString()
		pod, ok := parsePod(f)
		sv, err := ParseStateValue(v)
		if !ok || err != nil {
			st.Skipped = append(st.Skipped, CorruptError{Key: key, Field: f, Value: v})
			continue
		}
		st.Pods = append(st.Pods, PodState{Pod: pod, StateValue: sv})
	}
	slices.SortFunc(st.Pods, func(a, b PodState) int { return cmp.Compare(a.Pod, b.Pod) })
	return st, nil
}

// RemoveServiceState deletes pod's state from svc (a pod scaled away for good).
// It answers whether a state was there.
func (r *Redis) RemoveServiceState(ctx context.Context, ns, svc string, pod int) (bool, error) {
	return r.removePodField(ctx, "RemoveServiceState", ns, svc, pod, StateKey)
}

// removePodField deletes pod's field from the per-pod hash of svc that key
// names (K3 or K5), and answers whether it was there.
func (r *Redis) removePodField(ctx context.Context, op, ns, svc string, pod int, key func(ns, svc string) string) (bool, error) {
	if err := r.serviceCall(ctx, ns, svc); err != nil {
		return false, err
	}
	if err := validPod("pod", pod); err != nil {
		return false, err
	}
	k := key(ns, svc)
	n, err := r.client.Do(ctx, r.client.B().Hdel().Key(k).Field(strconv.Itoa(pod)).Build()).AsInt64()
	if err != nil {
		return false, classify(op, k, err)
	}
	return n == 1, nil
}

// SetWorkloadState publishes the workload state of svc (accepting and alive
// pod counts) stamped with the server's clock, expiring after ttl seconds.
func (r *Redis) SetWorkloadState(ctx context.Context, ns, svc string, accepting, alive, ttl int) (updated int64, err error) {
	const op = "SetWorkloadState"
	if err := r.serviceCall(ctx, ns, svc); err != nil {
		return 0, err
	}
	if alive < 0 || alive > MaxPod {
		return 0, invalid("alive", strconv.Itoa(alive)+" is outside 0.."+strconv.Itoa(MaxPod))
	}
	if accepting < 0 || accepting > alive {
		return 0, invalid("accepting", strconv.Itoa(accepting)+" is outside 0..alive ("+strconv.Itoa(alive)+")")
	}
	if ttl <= 0 || ttl > MaxTTL {
		return 0, invalid("ttl", strconv.Itoa(ttl)+" is not 1.."+strconv.Itoa(MaxTTL)+" seconds")
	}
	key := WorkloadKey(ns, svc)
	res := scriptSetWorkload.lua.Exec(ctx, r.client, []string{key},
		[]string{strconv.Itoa(accepting), strconv.Itoa(alive), strconv.Itoa(ttl)})
	return stamp(op, key, res)
}

// GetWorkloadState reads the workload state of svc. A missing or expired key
// is WorkloadUnknown with no error; an unparsable one is WorkloadUnknown with a
// *CorruptError.
func (r *Redis) GetWorkloadState(ctx context.Context, ns, svc string) (WorkloadState, error) {
	const op = "GetWorkloadState"
	if err := r.serviceCall(ctx, ns, svc); err != nil {
		return WorkloadState{}, err
	}
	key := WorkloadKey(ns, svc)
	return workloadValue(op, key, r.client.Do(ctx, r.client.B().Get().Key(key).Build()))
}

// GetWorkloadStateBatch reads the workload states of many services in one
// pipelined round (each key is its own slot; a cluster client asks every node
// at once). Every service of svcs is in the map, WorkloadUnknown when missing;
// unparsable values are *CorruptError values joined in err, beside the map.
func (r *Redis) GetWorkloadStateBatch(ctx context.Context, ns string, svcs []string) (map[string]WorkloadState, error) {
	if err := r.usable(ctx); err != nil {
		return nil, err
	}
	const op = "GetWorkloadStateBatch"
	if err := validName("namespace", ns); err != nil {
		return nil, err
	}
	cmds := make(rueidis.Commands, len(svcs))
	for i, svc := range svcs {
		if err := validName("services["+strconv.Itoa(i)+"]", svc); err != nil {
			return nil, err
		}
		cmds[i] = r.client.B().Get().Key(WorkloadKey(ns, svc)).Build()
	}
	out := make(map[string]WorkloadState, len(svcs))
	if len(svcs) == 0 {
		return out, nil
	}
	var bad []error
	for i, res := range r.client.DoMulti(ctx, cmds...) {
		w, err := workloadValue(op, WorkloadKey(ns, svcs[i]), res)
		if err != nil && !isCorrupt(err) {
			return nil, err
		}
		if err != nil {
			bad = append(bad, err)
		}
		out[svcs[i]] = w
	}
	return out, errors.Join(bad...)
}

// workloadValue decodes a GET of K4.
func workloadValue(op, key string, res rueidis.RedisResult) (WorkloadState, error) {
	v, err := res.ToString()
	if rueidis.IsRedisNil(err) {
		return WorkloadState{}, nil
	}
	if err != nil {
		return WorkloadState{}, classify(op, key, err)
	}
	w, err := ParseWorkloadValue(v)
	if err != nil {
		return WorkloadState{}, &CorruptError{Key: key, Value: v}
	}
	return w, nil
}

// serviceCall checks that r is usable and then that ns and svc are valid, as
// every operation on a service's states does first.
func (r *Redis) serviceCall(ctx context.Context, ns, svc string) error {
	if err := r.usable(ctx); err != nil {
		return err
	}
	return serviceArgs(ns, svc)
}
