package engine_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

// TestGracefulDrain: 4 server pods and 2 clients; pod 2 stops. During its
// drain no new user lands on it and its users still reach it; after the drain
// nothing routes to it; callers see no error but the typed ones.
func TestGracefulDrain(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := redistest.Ctx(t)
		ns := redistest.Namespace(t)
		st := store.New(b.Client)
		// Staleness is far above the heartbeat, so a busy machine that
		// stalls the heartbeats does not age the pods out mid-test: the
		// drain is published (DenyNewCall, then Shutdown), never inferred.
		timing := engine.Timing{Heartbeat: 100 * time.Millisecond, Staleness: 3 * time.Second, Refresh: 50 * time.Millisecond}
		const drain = 1500 * time.Millisecond
		// A state change reaches a client within a heartbeat and a
		// refresh; the polls allow it the whole staleness window.
		within := timing.Staleness

		servers := make([]*engine.Server, 4)
		t.Cleanup(func() { // drain the others together
			var wg sync.WaitGroup
			for _, s := range servers {
				if s != nil {
					wg.Go(func() { _ = s.Stop(context.Background()) })
				}
			}
			wg.Wait()
		})
		for p := range servers {
			s, err := engine.NewServer(engine.ServerConfig{
				Store: st, Namespace: ns, Service: svc, Pod: p, Timing: timing,
				MaxRequest: 100 * time.Millisecond, Drain: drain,
			})
			if err != nil {
				t.Fatal(err)
			}
			servers[p] = s
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
		}

		clients := make([]*engine.Client, 2)
		for i := range clients {
			c, err := engine.NewClient(engine.ClientConfig{Store: store.New(b.Client), Timing: timing, TempLinkTTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			clients[i] = c
		}
		compute := func(c *engine.Client, uid string) (int, error) {
			pod, err := c.ComputeLinkedPod(ctx, ns, uid, svc)
			if err != nil && !errors.Is(err, engine.ErrPodNotRoutable) && !errors.Is(err, engine.ErrNoAvailablePod) {
				t.Fatalf("%s: untyped error %v", uid, err)
			}
			return pod, err
		}

		// Users spread over the pods; pod 2's server claims two of its own.
		onTwo := []string{}
		for i := range 200 {
			uid := "u" + strconv.Itoa(i)
			pod, err := compute(clients[i%2], uid)
			if err != nil {
				t.Fatal(err)
			}
			if pod == 2 {
				onTwo = append(onTwo, uid)
			}
		}
		if len(onTwo) < 4 {
			t.Fatalf("only %d users on pod 2 out of 200", len(onTwo))
		}
		claimed := onTwo[:2]
		for _, uid := range claimed {
			if owner, err := servers[2].TrySetLinkedPod(ctx, ns, uid, svc, 2); err != nil || owner != 2 {
				t.Fatalf("claim %s = (%d, %v)", uid, owner, err)
			}
		}

		stopped := make(chan error, 1)
		go func() { stopped <- servers[2].Stop(context.Background()) }()
		// Once both clients have refreshed, pod 2 takes no new user...
		redistest.Poll(t, within, "both clients see pod 2 deny new calls", func() bool {
			return !clients[0].States().IsPodAvailable(ns, svc, 2) && !clients[1].States().IsPodAvailable(ns, svc, 2)
		})
		seenDrain := time.Now()
		n := 0
		for time.Since(seenDrain) < drain/2 {
			uid := "new" + strconv.Itoa(n)
			pod, err := compute(clients[n%2], uid)
			if err != nil {
				t.Fatalf("%s during the drain: %v", uid, err)
			}
			if pod == 2 {
				t.Fatalf("new user %s placed on draining pod 2", uid)
			}
			// ...and its users still reach it.
			old := onTwo[n%len(onTwo)]
			if pod, err := compute(clients[n%2], old); err != nil || pod != 2 {
				t.Fatalf("%s during the drain: = (%d, %v), want its pod 2", old, pod, err)
			}
			n++
		}
		if err := <-stopped; err != nil {
			t.Fatalf("Stop: %v", err)
		}
		// After the drain, nothing routes to pod 2: temporary links move,
		// persistent ones are a typed error naming the pod.
		redistest.Poll(t, within, "both clients see pod 2 shut down", func() bool {
			return !clients[0].States().IsPodRoutable(ns, svc, 2) && !clients[1].States().IsPodRoutable(ns, svc, 2)
		})
		for i, uid := range onTwo {
			pod, err := compute(clients[i%2], uid)
			isClaimed := uid == claimed[0] || uid == claimed[1]
			var nr *engine.PodNotRoutableError
			switch {
			case isClaimed && (!errors.As(err, &nr) || nr.Pod != 2):
				t.Fatalf("%s (persistent on 2) after the drain: = (%d, %v), want *PodNotRoutableError{2}", uid, pod, err)
			case !isClaimed && (err != nil || pod == 2):
				t.Fatalf("%s after the drain: = (%d, %v), want moved off pod 2", uid, pod, err)
			}
		}
		t.Logf("%d new users placed during the drain, none on pod 2; %d users of pod 2 moved after it", n, len(onTwo)-2)
	})
}
