package embedded_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestStoreOwnsTheServer: the store embedded.Dial returns stops its server
// on Close (its port refuses connections afterwards), and a store dialled
// with a Server it was handed does too.
func TestStoreOwnsTheServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Dial(store.DialConfig{Embedded: srv})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetLinkedPod(ctx, "ns", "u", "svc", 1, store.Persistent); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Miniredis().Keys()); n != 2 {
		t.Fatalf("%d keys in the embedded Redis after one persistent link, want 2 (K1 and K2)", n)
	}
	if s.Tracker() != nil {
		t.Fatal("a store on the embedded Redis has a tracker, but it has no client tracking")
	}
	s.Close()
	if c, err := net.DialTimeout("tcp", srv.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after the store closed", srv.Addr())
	}
	if _, err := s.GetLinkedPod(ctx, "ns", "u", "svc"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
}
