package embedded_test

import (
	"context"
	"fmt"
	"time"

	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := embedded.Dial(store.DialConfig{})
	if err != nil {
		panic(err)
	}
	defer s.Close() // stops the embedded Redis too

	_, _ = s.SetLinkedPod(ctx, "game", "u42", "room", 3, store.Persistent)
	pod, _ := s.GetLinkedPod(ctx, "game", "u42", "room")
	fmt.Println("u42 is linked to pod", pod)
	// Output: u42 is linked to pod 3
}
