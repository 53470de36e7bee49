package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log"
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

// ExampleServer runs pod 2 of the "room" service on the embedded Redis: it
// starts publishing, reports its load, claims a user, and drains on the way out.
func ExampleServer() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	st := embedded.MustDial(store.DialConfig{}) // embedded Redis; store.Dial with Addrs for a real one
	defer st.Close()

	srv, err := engine.NewServer(engine.ServerConfig{
		Store: st, Namespace: "game", Service: "room", Pod: 2,
		// Short periods for the example; production keeps the defaults.
		Timing:     engine.Timing{Heartbeat: 100 * time.Millisecond},
		MaxRequest: 50 * time.Millisecond, // drain: Refresh + MaxRequest = 150ms
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	if err := srv.SetLoadState(ctx, 17); err != nil {
		log.Fatal(err)
	}
	show := func(when string) {
		ss, err := st.GetServiceState(ctx, "game", "room")
		if err != nil {
			log.Fatal(err)
		}
		p := ss.Pods[0]
		fmt.Printf("%s: pod %d load %d %v\n", when, p.Pod, p.Load, p.Routing)
	}
	show("running")

	// The pod takes user u42 for good, unless another pod holds it.
	owner, err := srv.TrySetLinkedPod(ctx, "game", "u42", "room", 2)
	fmt.Println("u42 claimed by pod", owner, err)
	// Another pod's claim is refused and names the owner.
	_, err = srv.TrySetLinkedPod(ctx, "game", "u42", "room", 5)
	var claimed *engine.ClaimedError
	if errors.As(err, &claimed) {
		fmt.Println("pod 5 refused: owner is pod", claimed.Owner)
	}

	// DenyNewCall for the drain window, then Shutdown.
	if err := srv.Stop(ctx); err != nil {
		log.Fatal(err)
	}
	show("stopped")
	fmt.Println("start again:", srv.Start(ctx))

	// Output:
	// running: pod 2 load 17 Ready
	// u42 claimed by pod 2 <nil>
	// pod 5 refused: owner is pod 2
	// stopped: pod 2 load 17 Shutdown
	// start again: stickyroute: closed
}
