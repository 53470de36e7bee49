// Package podgroup groups a batch's uids by the pod each is linked to, the
// answer of BatchGetLinkedPod in the store and in the engine: pod → uids in
// input order.
package podgroup

// ByPod returns pod → the uids linked to it, in input order: uids[i] is
// linked to pods[i], and a negative pod (no link) leaves it out. Every group
// is sized exactly. Pods are small indexes in practice: they are counted in
// a slice and every group is a window of one shared array (capped, so that
// appending to one group never runs into the next); sparse, large indexes
// fall back to a map.
func ByPod(uids []string, pods []int32) map[int][]string {
	top, found := int32(-1), 0
	for _, p := range pods {
		top = max(top, p)
		if p >= 0 {
			found++
		}
	}
	if found == 0 {
		return map[int][]string{}
	}
	if int(top) > 4*len(pods)+64 {
		return sparse(uids, pods)
	}
	// next[p] counts pod p's uids, then becomes where the next one goes.
	next := make([]int, int(top)+1)
	groups := 0
	for _, p := range pods {
		if p >= 0 {
			if next[p] == 0 {
				groups++
			}
			next[p]++
		}
	}
	all := make([]string, found)
	out := make(map[int][]string, groups)
	start := 0
	for p, n := range next {
		if n == 0 {
			continue
		}
		out[p] = all[start : start+n : start+n]
		next[p] = start
		start += n
	}
	for i, p := range pods {
		if p >= 0 {
			all[next[p]] = uids[i]
			next[p]++
		}
	}
	return out
}

// sparse is ByPod for pod indexes too large to count in a slice.
func sparse(uids []string, pods []int32) map[int][]string {
	counts := make(map[int32]int)
	for _, p := range pods {
		if p >= 0 {
			counts[p]++
		}
	}
	out := make(map[int][]string, len(counts))
	for p, n := range counts {
		out[int(p)] = make([]string, 0, n)
	}
	for i, p := range pods {
		if p >= 0 {
			out[int(p)] = append(out[int(p)], uids[i])
		}
	}
	return out
}
