package store_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/rueidis"

	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

func TestDialEmbedded(t *testing.T) {
	ctx := redistest.Ctx(t)
	s, err := embedded.Dial(store.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetLinkedPod(ctx, "ns", "u", "svc", 2, 1); err != nil {
		t.Fatal(err)
	}
	// The embedded Redis expires keys on the wall clock, as a real one does.
	redistest.Poll(t, 5*time.Second, "the 1 s temporary link expires", func() bool {
		p, err := s.GetLinkedPod(ctx, "ns", "u", "svc")
		return err == nil && p == store.NoPod
	})
	s.Close()
	_, err = s.GetLinkedPod(ctx, "ns", "u", "svc")
	if !errors.Is(err, store.ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
}

// closeCounter is an EmbeddedRedis that counts its Close calls.
type closeCounter struct {
	addr   string
	closed int
}

func (c *closeCounter) Addr() string { return c.addr }
func (c *closeCounter) Close()       { c.closed++ }

// TestDialNeedsAnAddress: Dial with neither Addrs nor Embedded is an
// invalid-argument error naming Addrs, not a private in-process Redis; with
// both it refuses too and closes the Embedded it was handed (a store owns
// it). embedded.Dial refuses an address of its own.
func TestDialNeedsAnAddress(t *testing.T) {
	_, err := store.Dial(store.DialConfig{})
	var ia *store.InvalidArgumentError
	if !errors.As(err, &ia) || ia.Arg != "Addrs" || !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("Dial with no address: %v, want an invalid argument Addrs", err)
	}
	c := &closeCounter{addr: "127.0.0.1:1"}
	_, err = store.Dial(store.DialConfig{Addrs: []string{"127.0.0.1:1"}, Embedded: c})
	if !errors.As(err, &ia) || ia.Arg != "Addrs" || c.closed != 1 {
		t.Fatalf("Dial with Addrs and Embedded: %v, closed %d times; want an invalid argument Addrs, closed once", err, c.closed)
	}
	_, err = embedded.Dial(store.DialConfig{Addrs: []string{"127.0.0.1:1"}})
	if !errors.As(err, &ia) || ia.Arg != "Addrs" {
		t.Fatalf("embedded.Dial with Addrs: %v, want an invalid argument Addrs", err)
	}
}

func TestDialReal(t *testing.T) {
	for _, name := range redistest.Real {
		t.Run(name, func(t *testing.T) {
			addrs := redistest.Addrs(t, name)
			ctx := redistest.Ctx(t)
			var configured bool
			s, err := store.Dial(store.DialConfig{
				Addrs:     addrs,
				Configure: func(o *rueidis.ClientOption) { configured = true },
			})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if !configured {
				t.Fatal("Configure was not called")
			}
			wantMode := rueidis.ClientModeStandalone
			if name == redistest.Cluster {
				wantMode = rueidis.ClientModeCluster
			}
			if s.Client().Mode() != wantMode {
				t.Fatalf("mode %s, want %s", s.Client().Mode(), wantMode)
			}
			ns := redistest.Namespace(t)
			if _, err := s.SetLinkedPod(ctx, ns, "u", "svc", 1, store.Persistent); err != nil {
				t.Fatal(err)
			}
			if p, err := s.GetLinkedPod(ctx, ns, "u", "svc"); err != nil || p != 1 {
				t.Fatalf("= (%d, %v), want (1, nil)", p, err)
			}
		})
	}
}

func TestDialUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	_, err = store.Dial(store.DialConfig{Addrs: []string{addr}})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Dial %s: %v, want ErrUnavailable", addr, err)
	}
}

// TestUnavailableWithinDeadline: a Redis that went away answers every call with
// ErrUnavailable before the caller's deadline; a cancelled caller is not told
// the store is unavailable.
func TestUnavailableWithinDeadline(t *testing.T) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	client, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{m.Addr()}, DisableCache: true, ForceSingleClient: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	s := store.New(client)
	m.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	calls := map[string]func() error{
		"GetLinkedPod": func() error { _, err := s.GetLinkedPod(ctx, "n", "u", "s"); return err },
		"SetLinkedPod": func() error { _, err := s.SetLinkedPod(ctx, "n", "u", "s", 1, 10); return err },
		"BatchGetLinkedPod": func() error {
			_, err := s.BatchGetLinkedPod(ctx, "n", []string{"a", "b"}, "s")
			return err
		},
		"GetServiceState": func() error { _, err := s.GetServiceState(ctx, "n", "s"); return err },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", name, err)
		}
		var ue *store.UnavailableError
		if errors.As(err, &ue) && ue.Op != name {
			t.Errorf("%s: error names op %q", name, ue.Op)
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("calls ran past the 2 s deadline: %v", ctx.Err())
	}

	cancelled, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	_, err = s.GetLinkedPod(cancelled, "n", "u", "s")
	if !errors.Is(err, context.Canceled) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("cancelled call: %v, want context.Canceled and not ErrUnavailable", err)
	}
}

// TestDialBroadcastArgs: broadcast mode needs client tracking, namespaces
// need broadcast mode and must be valid names; each is refused before any
// connection, naming the setting.
func TestDialBroadcastArgs(t *testing.T) {
	unreachable := []string{"127.0.0.1:1"}
	for _, c := range []struct {
		name string
		dial func() error
		arg  string
	}{
		{"embedded", func() error { _, err := embedded.Dial(store.DialConfig{Broadcast: true}); return err }, "Broadcast"},
		{"no tracking", func() error {
			_, err := store.Dial(store.DialConfig{Addrs: unreachable, Broadcast: true,
				Configure: func(o *rueidis.ClientOption) { o.DisableCache = true }})
			return err
		}, "Broadcast"},
		{"namespaces alone", func() error {
			_, err := store.Dial(store.DialConfig{Addrs: unreachable, BroadcastNamespaces: []string{"ns"}})
			return err
		}, "BroadcastNamespaces"},
		{"bad namespace", func() error {
			_, err := store.Dial(store.DialConfig{Addrs: unreachable, Broadcast: true, BroadcastNamespaces: []string{"a b"}})
			return err
		}, "BroadcastNamespaces"},
	} {
		var ia *store.InvalidArgumentError
		if err := c.dial(); !errors.As(err, &ia) || ia.Arg != c.arg {
			t.Errorf("%s: %v, want an invalid argument %s", c.name, err, c.arg)
		}
	}
}
