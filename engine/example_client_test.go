package engine_test

import (
	"context"
	"fmt"
	"time"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

// A client places a new user on the least loaded accepting pod, and answers
// from its cache afterwards. The pods here publish their state by hand; in a
// fleet each runs an engine.Server.
func ExampleClient() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := embedded.MustDial(store.DialConfig{}) // embedded Redis
	defer st.Close()
	_, _ = st.SetServiceState(ctx, "game", "room", 0, 80, store.Ready)
	_, _ = st.SetServiceState(ctx, "game", "room", 1, 5, store.Ready)
	_, _ = st.SetServiceState(ctx, "game", "room", 2, 0, store.DenyNewCall)

	c, err := engine.NewClient(engine.ClientConfig{Store: st})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	pod, _ := c.ComputeLinkedPod(ctx, "game", "u42", "room")
	fmt.Println("u42 placed on pod", pod)
	again, _ := c.ComputeLinkedPod(ctx, "game", "u42", "room")
	fmt.Println("and stays there:", again == pod)
	_, _ = c.ComputeLinkedPod(ctx, "game", "u42", "room")
	fmt.Println("answered from the cache:", c.GetLinkedInCache("game", "u42", "room") == pod)
	// Output:
	// u42 placed on pod 1
	// and stays there: true
	// answered from the cache: true
}

// States answers the old route-info queries and reports routing changes.
func ExampleStates() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := embedded.MustDial(store.DialConfig{})
	defer st.Close()
	_, _ = st.SetServiceState(ctx, "game", "room", 0, 10, store.Ready)
	_, _ = st.SetServiceState(ctx, "game", "room", 1, 10, store.DenyNewCall)
	_, _ = st.SetServiceState(ctx, "game", "room", 2, 10, store.Shutdown)

	c, err := engine.NewClient(engine.ClientConfig{Store: st})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	s := c.States()
	routable, _ := s.RoutablePods(ctx, "game", "room")
	fmt.Println("routable:", routable)
	fmt.Println("pod 1 takes new users:", s.IsPodAvailable("game", "room", 1))
	best, _ := s.GetServiceBestPod(ctx, "game", "room")
	fmt.Println("best pod:", best)
	// Output:
	// routable: [0 1]
	// pod 1 takes new users: false
	// best pod: 0
}
