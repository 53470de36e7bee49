package main

import (
	"container/heap"
	"sync"
	"time"
)

// session is a user's stay on the pod that claimed them.
type session struct {
	user uint64
	pod  int
	// since is when pod's claim of the user was recorded (its start, or
	// its last move).
	since time.Time
	ends  time.Time
	at    int // index in sessions.list, -1 once ending
	hi    int // index in the expiry heap
}

// sessions are the users in session: by user, in a list to pick one at
// random, and in a heap by end time for the reaper.
type sessions struct {
	mu     sync.Mutex
	byUser map[uint64]*session
	list   []*session
	expiry expiryHeap
	perPod []int64
}

func newSessions(pods int) *sessions {
	return &sessions{byUser: map[uint64]*session{}, perPod: make([]int64, pods)}
}

// get returns the session of user, or nil.
func (ss *sessions) get(user uint64) (pod int, ok bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s := ss.byUser[user]; s != nil {
		return s.pod, true
	}
	return 0, false
}

// pick returns a user in session chosen by f in [0, 1), or false when none is.
func (ss *sessions) pick(f float64) (uint64, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.list) == 0 {
		return 0, false
	}
	return ss.list[int(f*float64(len(ss.list)))%len(ss.list)].user, true
}

// count returns the users in session on pod.
func (ss *sessions) count(pod int) int64 {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.perPod[pod]
}

// start records that pod claimed user until ends; false if user is already
// in session (another worker won).
func (ss *sessions) start(user uint64, pod int, ends time.Time) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.byUser[user] != nil {
		return false
	}
	s := &session{user: user, pod: pod, since: time.Now(), ends: ends, at: len(ss.list)}
	ss.byUser[user] = s
	ss.list = append(ss.list, s)
	heap.Push(&ss.expiry, s)
	ss.perPod[pod]++
	return true
}

// move records that user's session moved to pod.
func (ss *sessions) move(user uint64, pod int) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s := ss.byUser[user]; s != nil && s.pod != pod {
		ss.perPod[s.pod]--
		ss.perPod[pod]++
		s.pod, s.since = pod, time.Now()
	}
}

// heldBefore reports whether user's session was on pod from before t on.
func (ss *sessions) heldBefore(user uint64, pod int, t time.Time) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.byUser[user]
	return s != nil && s.pod == pod && s.since.Before(t)
}

// unlist takes s out of the random picks and the expiry heap; it stays the
// user's session until finish. The caller holds mu.
func (ss *sessions) unlist(s *session) {
	if s.at < 0 {
		return
	}
	last := ss.list[len(ss.list)-1]
	ss.list[s.at], last.at = last, s.at
	ss.list = ss.list[:len(ss.list)-1]
	heap.Remove(&ss.expiry, s.hi)
	s.at = -1
}

// remove ends s at once; the caller holds mu.
func (ss *sessions) remove(s *session) {
	ss.unlist(s)
	delete(ss.byUser, s.user)
	ss.perPod[s.pod]--
}

// expired returns the sessions that ended by now. They stay their users'
// sessions (no new one starts) until finish, once their pod released them.
func (ss *sessions) expired(now time.Time) []session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var out []session
	for len(ss.expiry) > 0 && !ss.expiry[0].ends.After(now) {
		s := ss.expiry[0]
		out = append(out, *s)
		ss.unlist(s)
	}
	return out
}

// finish removes the session of user that expired.
// finish ends user's session; it returns the pod it was on, or -1.
func (ss *sessions) finish(user uint64) int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s := ss.byUser[user]; s != nil && s.at < 0 {
		delete(ss.byUser, user)
		ss.perPod[s.pod]--
		return s.pod
	}
	return -1
}

// dropPod removes and returns every session on pod.
func (ss *sessions) dropPod(pod int) []session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var out []session
	for _, s := range append([]*session(nil), ss.list...) {
		if s.pod == pod {
			out = append(out, *s)
			ss.remove(s)
		}
	}
	return out
}

// counts returns the sessions per pod and in all.
func (ss *sessions) counts() ([]int64, int64) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return append([]int64(nil), ss.perPod...), int64(len(ss.byUser))
}

// expiryHeap orders sessions by end time.
type expiryHeap []*session

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].ends.Before(h[j].ends) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hi, h[j].hi = i, j
}
func (h *expiryHeap) Push(x any) {
	s := x.(*session)
	s.hi = len(*h)
	*h = append(*h, s)
}
func (h *expiryHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	*h = old[:len(old)-1]
	return s
}
