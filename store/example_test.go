package store_test

import (
	"context"
	"fmt"
	"time"

	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

// embedded.MustDial starts an in-process Redis: the whole store works with
// zero setup. The server pod links its user persistently; a client looks it up.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := embedded.MustDial(store.DialConfig{})
	defer s.Close()

	// Pod 3 owns u42 for as long as it holds the user's state.
	claim, _ := s.TrySetLinkedPod(ctx, "game", "u42", "room", 3, store.Persistent)
	fmt.Println("claimed by pod 3:", claim.Claimed)
	// Pod 5 cannot take it over.
	claim, _ = s.TrySetLinkedPod(ctx, "game", "u42", "room", 5, store.Persistent)
	fmt.Println("claimed by pod 5:", claim.Claimed, "owner:", claim.Owner)

	// A client reserves a pod for a new user for 60 s; another client racing it
	// gets the same answer.
	first, _ := s.SetLinkedPodIfAbsent(ctx, "game", "u7", "room", 0, 60)
	second, _ := s.SetLinkedPodIfAbsent(ctx, "game", "u7", "room", 2, 60)
	fmt.Println("u7 placed on", first, "then", second)

	pod, _ := s.GetLinkedPod(ctx, "game", "nobody", "room")
	fmt.Println("unlinked user:", pod)

	groups, _ := s.BatchGetLinkedPod(ctx, "game", []string{"u42", "u7", "nobody"}, "room")
	fmt.Println("by pod:", groups)
	// Output:
	// claimed by pod 3: true
	// claimed by pod 5: false owner: 3
	// u7 placed on 0 then 0
	// unlinked user: -1
	// by pod: map[0:[u7] 3:[u42]]
}

// Server pods publish their state on the Redis server's clock; readers judge
// liveness from the same clock.
func ExampleRedis_GetServiceState() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := embedded.MustDial(store.DialConfig{})
	defer s.Close()

	_, _ = s.SetServiceState(ctx, "game", "room", 0, 12, store.Ready)
	_, _ = s.SetServiceState(ctx, "game", "room", 1, 3, store.DenyNewCall)
	st, _ := s.GetServiceState(ctx, "game", "room")
	for _, p := range st.Pods {
		fresh := st.Now-p.Updated < 30_000
		fmt.Println("pod", p.Pod, "load", p.Load, p.Routing, "fresh:", fresh)
	}
	// Output:
	// pod 0 load 12 Ready fresh: true
	// pod 1 load 3 DenyNewCall fresh: true
}
