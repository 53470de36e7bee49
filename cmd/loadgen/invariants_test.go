package main

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/internal/redistest"
)

// TestDoubleLinkCounted: the double-link check can fail. A client whose
// cache names pod 0 for a user that pod 1 holds (and held before the call)
// is counted once; a refused claim counts only when its holder held the
// user from before the routing call began, not when the holder's claim
// landed during the call (two operations of a user that had no link, which
// the refusal settles).
func TestDoubleLinkCounted(t *testing.T) {
	cfg := quick(t, redistest.Embedded, Steady)
	be, err := openBackend(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(be.close)
	s := newSim(cfg, be, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.startFleet(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.closeFleet)
	const user = 7 // its client is user % Clients
	c := s.clients[user%uint64(cfg.Clients)]
	// The fleet's first refresh: both pods routable to the client.
	deadline := time.Now().Add(5 * cfg.Staleness)
	for !s.inView(c, 0) || !s.inView(c, 1) {
		if time.Now().After(deadline) {
			t.Fatalf("pods 0 and 1 not routable to the client within %v", 5*cfg.Staleness)
		}
		time.Sleep(cfg.Refresh / 10)
	}

	if _, err := s.pods[1].srv.TrySetLinkedPod(ctx, cfg.Namespace, uid(user), cfg.Service, 1); err != nil {
		t.Fatal(err)
	}
	s.sess.start(user, 1, time.Now().Add(time.Hour))
	// The embedded Redis tracks no keys: nothing corrects this entry.
	if err := c.SetCache(ctx, cfg.Namespace, uid(user), cfg.Service, 0); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	s.do(ctx, rand.New(rand.NewPCG(1, 2)), op{at: began, user: user})
	if n := s.doubles.Load(); n != 1 {
		t.Fatalf("a route to pod 0 of a user held by pod 1 counted %d double links, want 1", n)
	}

	if !s.claimedAway(c, user, 1, time.Now()) {
		t.Error("a claim refused by pod 1, holding the user from before the call, is not counted")
	}
	if s.claimedAway(c, user, 1, began.Add(-time.Second)) {
		t.Error("a claim refused by pod 1, whose claim landed after the call began, is counted")
	}
	if s.claimedAway(c, user, 2, time.Now()) || s.claimedAway(c, user+1, 1, time.Now()) {
		t.Error("a claim refused by a pod the model does not have holding the user is counted")
	}
}
