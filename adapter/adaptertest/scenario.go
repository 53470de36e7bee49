package adaptertest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
)

// Caller makes one call through the adapter under test for uid (no user when
// empty) and returns the index of the pod that answered.
type Caller func(ctx context.Context, uid string) (pod int, err error)

// Errors tells an adapter's call errors apart, for the scenarios.
type Errors struct {
	// Unreachable: err is that of a call for a user whose pod was lost but
	// the engine still counts routable.
	Unreachable func(err error) bool
	// NotRoutable: err is that of a call for uid, persistently linked to
	// pod, which is not routable.
	NotRoutable func(err error, uid string, pod int) bool
}

// TestRoutes: every call of a user, made through each of calls, reaches the
// pod its link names (for f.Client), and 60 users land on all 3 pods of f.
func TestRoutes(t *testing.T, f *Fleet, calls ...Caller) {
	t.Helper()
	ctx := redistest.Ctx(t)
	seen := map[int]int{}
	for i := range 60 {
		uid := "u" + strconv.Itoa(i)
		var got []int
		for _, call := range calls {
			p, err := call(ctx, uid)
			if err != nil {
				t.Fatalf("%s: %v", uid, err)
			}
			got = append(got, p)
		}
		link, err := f.Client.GetLinkedPodNotCache(ctx, f.Namespace, uid, Service)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range got {
			if p != link {
				t.Fatalf("%s: calls reached pods %v, its link is %d", uid, got, link)
			}
		}
		seen[link]++
	}
	if len(seen) != 3 {
		t.Fatalf("60 users landed on pods %v, want all 3", seen)
	}
}

// Stream is the client side of a bidirectional stream, as generated gRPC
// code declares it.
type Stream[Req, Resp any] interface {
	Send(Req) error
	Recv() (Resp, error)
	CloseSend() error
}

// TestStream: a stream goes to pod for its whole life (podOf reads the pod
// from a reply), and ends after CloseSend.
func TestStream[Req, Resp any](t *testing.T, s Stream[Req, Resp], req Req, podOf func(Resp) int, pod int) {
	t.Helper()
	for range 3 {
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got := podOf(resp); got != pod {
			t.Fatalf("stream answered by pod %d, want %d", got, pod)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err == nil {
		t.Fatal("stream did not end after CloseSend")
	}
}

// TestFallback: calls without a user spread over the 3 pods of f, and avoid
// a pod that takes no new users once f.Client sees it.
func TestFallback(t *testing.T, f *Fleet, call Caller) {
	t.Helper()
	ctx, c := redistest.Ctx(t), f.Client
	spread := func(n int) map[int]int {
		t.Helper()
		count := map[int]int{}
		for range n {
			p, err := call(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			count[p]++
		}
		return count
	}
	if count := spread(90); len(count) != 3 {
		t.Fatalf("90 calls without a uid reached pods %v, want all 3", count)
	}
	if err := f.Pods[1].Server.SetRoutingState(ctx, engine.DenyNewCall); err != nil {
		t.Fatal(err)
	}
	redistest.Poll(t, within, "the client sees pod 1 deny new calls", func() bool {
		return !c.States().IsPodAvailable(f.Namespace, Service, 1) && c.States().IsPodRoutable(f.Namespace, Service, 1)
	})
	if count := spread(60); count[1] != 0 || count[0] == 0 || count[2] == 0 {
		t.Fatalf("with pod 1 denying new calls, calls without a uid reached pods %v", count)
	}
}

// place calls users u0, u1, ... until 4 of them are on pod, and returns where
// each landed and those on pod; the first of those it links to pod
// persistently, as pod would claim it.
func place(t *testing.T, f *Fleet, call Caller, pod int) (home map[string]int, on []string) {
	t.Helper()
	ctx := redistest.Ctx(t)
	home = map[string]int{}
	for i := 0; len(on) < 4; i++ {
		if i == 300 {
			t.Fatalf("only %d of 300 users on pod %d", len(on), pod)
		}
		uid := "u" + strconv.Itoa(i)
		p, err := call(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		home[uid] = p
		if p == pod {
			on = append(on, uid)
		}
	}
	if _, err := f.Pods[pod].Server.TrySetLinkedPod(ctx, f.Namespace, on[0], Service, pod); err != nil {
		t.Fatal(err)
	}
	return home, on
}

// TestDrain: while pod 2 of f drains, new users avoid it and its users stay;
// after it shuts down, its temporary users move and a persistent user gets
// the adapter's NotRoutable error.
func TestDrain(t *testing.T, f *Fleet, call Caller, errs Errors) {
	t.Helper()
	ctx, c := redistest.Ctx(t), f.Client
	_, onTwo := place(t, f, call, 2)
	owned := onTwo[0]

	stopped := make(chan struct{})
	go func() { f.Pods[2].Stop(); close(stopped) }()
	redistest.Poll(t, within, "the client sees pod 2 drain", func() bool {
		return !c.States().IsPodAvailable(f.Namespace, Service, 2)
	})
	begin, n := time.Now(), 0
	for ; time.Since(begin) < Drain/3; n++ {
		p, err := call(ctx, "new"+strconv.Itoa(n))
		if err != nil || p == 2 {
			t.Fatalf("new user during the drain = (%d, %v), want a pod other than 2", p, err)
		}
		for _, uid := range onTwo {
			if p, err := call(ctx, uid); err != nil || p != 2 {
				t.Fatalf("%s during the drain = (%d, %v), want its pod 2", uid, p, err)
			}
		}
	}
	<-stopped
	redistest.Poll(t, within, "the client sees pod 2 shut down", func() bool {
		return !c.States().IsPodRoutable(f.Namespace, Service, 2)
	})
	for _, uid := range onTwo[1:] {
		p, err := call(ctx, uid)
		if err != nil || p == 2 {
			t.Fatalf("%s after the drain = (%d, %v), want moved off pod 2", uid, p, err)
		}
		if again, err := call(ctx, uid); err != nil || again != p {
			t.Fatalf("%s moved to %d, then = (%d, %v)", uid, p, again, err)
		}
	}
	if _, err := call(ctx, owned); !errs.NotRoutable(err, owned, 2) {
		t.Fatalf("persistent user of the shut-down pod 2: %v, want the adapter's not-routable error", err)
	}
	t.Logf("%d new users placed during the drain, none on pod 2", n)
}

// TestPodLoss: pod 1 of f dies without a word; its users' calls fail with the
// adapter's Unreachable error until the engine sees it stale; then its
// temporary users move for good and its persistent user gets NotRoutable.
// Other users never notice.
func TestPodLoss(t *testing.T, f *Fleet, call Caller, errs Errors) {
	t.Helper()
	ctx, c := redistest.Ctx(t), f.Client
	home, onOne := place(t, f, call, 1)
	owned := onOne[0]

	f.Pods[1].Kill()
	// Fail fast while the engine still counts the pod alive.
	if _, err := call(ctx, onOne[1]); !errs.Unreachable(err) {
		t.Fatalf("user of the lost pod right after the loss: %v, want the adapter's unreachable error", err)
	}
	redistest.Poll(t, within, "the client sees pod 1 stale", func() bool {
		return !c.States().IsPodRoutable(f.Namespace, Service, 1)
	})
	for uid, was := range home {
		p, err := call(ctx, uid)
		switch {
		case uid == owned:
			if !errs.NotRoutable(err, owned, 1) {
				t.Fatalf("persistent user of the lost pod 1: %v, want the adapter's not-routable error", err)
			}
		case err != nil:
			t.Fatalf("%s (was on %d) after the loss: %v", uid, was, err)
		case was != 1 && p != was:
			t.Fatalf("%s moved from live pod %d to %d", uid, was, p)
		case was == 1 && p == 1:
			t.Fatalf("%s still routed to the lost pod", uid)
		}
	}
}
