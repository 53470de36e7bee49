package adapter_test

import (
	"fmt"

	"github.com/stickyroute/stickyroute/adapter"
)

func ExampleTemplate() {
	addr, err := adapter.Template("{svc}-{pod}.{svc}.{ns}.svc:9000", "game", "room")
	if err != nil {
		panic(err)
	}
	pod, _ := adapter.StatefulSetPod(addr(3))
	fmt.Println(addr(3), "is pod", pod)
	// Output: room-3.room.game.svc:9000 is pod 3
}
