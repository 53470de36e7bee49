package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo is an upstream server that echoes every byte and remembers what each
// connection sent and whether it ended.
type echo struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []*echoConn
	wg    sync.WaitGroup
}

type echoConn struct {
	got   bytes.Buffer
	ended bool
}

func newEcho(t *testing.T) *echo {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{ln: ln}
	e.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ec := &echoConn{}
			e.mu.Lock()
			e.conns = append(e.conns, ec)
			e.mu.Unlock()
			e.wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					e.mu.Lock()
					ec.got.Write(buf[:n])
					e.mu.Unlock()
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							err = werr
						}
					}
					if err != nil {
						e.mu.Lock()
						ec.ended = true
						e.mu.Unlock()
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() { ln.Close(); e.wg.Wait() })
	return e
}

// conn returns the state of the i-th upstream connection.
func (e *echo) conn(i int) (got string, ended, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i >= len(e.conns) {
		return "", false, false
	}
	return e.conns[i].got.String(), e.conns[i].ended, true
}

func newProxy(t *testing.T, e *echo) *Proxy {
	t.Helper()
	p, err := New(e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads it back within d.
func roundTrip(c net.Conn, msg string, d time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return string(buf[:n]), err
}

func mustEcho(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	got, err := roundTrip(c, msg, 5*time.Second)
	if err != nil || got != msg {
		t.Fatalf("round trip of %q = (%q, %v)", msg, got, err)
	}
}

// backToPass sets p back to Pass and checks that a new connection through it
// carries msg both ways.
func backToPass(t *testing.T, p *Proxy, msg string) {
	t.Helper()
	p.Set(Pass)
	mustEcho(t, dial(t, p), msg)
}

// through starts an echo server behind a proxy and returns them with a
// connection through the proxy that has carried first both ways.
func through(t *testing.T, first string) (*echo, *Proxy, net.Conn) {
	t.Helper()
	e := newEcho(t)
	p := newProxy(t, e)
	c := dial(t, p)
	mustEcho(t, c, first)
	return e, p, c
}

// wantTimeout checks that msg sent on c gets no answer, nor an end of
// stream, within 200 ms.
func wantTimeout(t *testing.T, c net.Conn, msg, what string) {
	t.Helper()
	if _, err := roundTrip(c, msg, 200*time.Millisecond); !isTimeout(err) {
		t.Fatalf("%s: %v, want a timeout", what, err)
	}
}

// wantReset checks that a read on c ends with a TCP reset within 5 s.
func wantReset(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%s: %v, want ECONNRESET", what, err)
	}
}

// waitEnded waits until the i-th upstream connection has ended.
func waitEnded(t *testing.T, e *echo, i int) {
	t.Helper()
	poll(t, "the server saw the connection end", func() bool {
		_, ended, _ := e.conn(i)
		return ended
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPass(t *testing.T) {
	_, p, c := through(t, "hello")
	mustEcho(t, c, "again")
	// The proxy counts bytes after forwarding them: the echo may reach the
	// client before the count is updated (seen beside stress-ng: Down 5).
	poll(t, "the proxy counted 10 bytes each way", func() bool {
		st := p.Stats()
		return st.Up >= 10 && st.Down >= 10
	})
	if st := p.Stats(); st.Accepted != 1 || st.Active != 1 || st.Up != 10 || st.Down != 10 {
		t.Fatalf("stats %+v, want 1 accepted, 1 active, 10 bytes each way", st)
	}
}

// TestLatency: a round trip takes at least twice the added latency, and
// removing it takes effect on the same connection.
func TestLatency(t *testing.T) {
	_, p, c := through(t, "warm")
	p.SetLatency(100 * time.Millisecond)
	start := time.Now()
	mustEcho(t, c, "slow")
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("round trip with 100ms each way took %v", d)
	}
	p.SetLatency(0)
	mustEcho(t, c, "fast")
}

// TestBandwidth: 20 KB through a 20 KB/s cap takes at least 0.9 s (the two
// directions overlap).
func TestBandwidth(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e)
	c := dial(t, p)
	p.SetBandwidth(20 << 10)
	msg := string(bytes.Repeat([]byte("x"), 20<<10))
	start := time.Now()
	mustEcho(t, c, msg)
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("20 KB at 20 KB/s took %v", d)
	}
}

// TestRefuse: open connections are closed, new ones too, until Pass.
func TestRefuse(t *testing.T) {
	_, p, c := through(t, "a")
	p.Set(Refuse)
	if _, err := roundTrip(c, "b", 5*time.Second); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("open connection after Refuse: %v, want EOF", err)
	}
	c2 := dial(t, p)
	if _, err := roundTrip(c2, "c", 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("new connection under Refuse: %v, want closed", err)
	}
	backToPass(t, p, "d")
}

// TestReset: open connections get a TCP reset, new ones too.
func TestReset(t *testing.T) {
	_, p, c := through(t, "a")
	p.Set(Reset)
	wantReset(t, c, "read after Reset")
	// The reset may come before the handshake ends, or after.
	c2, err := net.Dial("tcp", p.Addr())
	if err == nil {
		defer c2.Close()
		_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c2.Read(make([]byte, 1))
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("new connection under Reset: %v, want ECONNRESET", err)
	}
	if r := p.Stats().Resets; r != 2 {
		t.Fatalf("Resets = %d, want 2", r)
	}
	backToPass(t, p, "b")
}

// TestBlackHole: nothing is answered, on open or new connections, and
// leaving the hole delivers what waited.
func TestBlackHole(t *testing.T) {
	e, p, c := through(t, "a")
	p.Set(BlackHole)
	wantTimeout(t, c, "held", "open connection in the hole")
	c2 := dial(t, p)
	wantTimeout(t, c2, "new", "new connection in the hole")
	if _, _, ok := e.conn(1); ok {
		t.Fatal("a connection accepted into the hole reached the server")
	}
	p.Set(Pass)
	for _, cc := range []struct {
		c   net.Conn
		msg string
	}{{c, "held"}, {c2, "new"}} {
		_ = cc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, len(cc.msg))
		if _, err := io.ReadFull(cc.c, buf); err != nil || string(buf) != cc.msg {
			t.Fatalf("after the hole: (%q, %v), want %q", buf, err, cc.msg)
		}
	}
}

// TestHalfOpen: the server sees the connection end, the client sees nothing
// (no data, no end of stream); leaving HalfOpen resets the client side.
func TestHalfOpen(t *testing.T) {
	e, p, c := through(t, "a")
	p.Set(HalfOpen)
	waitEnded(t, e, 0)
	wantTimeout(t, c, "lost", "half-open connection (no data, no EOF)")
	if got, _, _ := e.conn(0); got != "a" {
		t.Fatalf("server got %q, want only %q", got, "a")
	}
	p.Set(Pass)
	wantReset(t, c, "after leaving HalfOpen")
	mustEcho(t, dial(t, p), "b")
}

// TestResetAfter: the connection is cut after exactly n bytes toward the
// server, in the middle of what the client wrote.
func TestResetAfter(t *testing.T) {
	e, p, c := through(t, "0123")
	if n := p.ResetAfter(6); n != 1 {
		t.Fatalf("armed %d connections, want 1", n)
	}
	if _, err := c.Write([]byte("abcdefghijklmnop")); err != nil {
		t.Fatal(err)
	}
	waitEnded(t, e, 0)
	if got, _, _ := e.conn(0); got != "0123abcdef" {
		t.Fatalf("server got %q, want %q", got, "0123abcdef")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var err error
	for err == nil {
		_, err = c.Read(make([]byte, 64))
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client after the cut: %v, want ECONNRESET", err)
	}
}

// TestSwitchUnderTraffic: modes switch while several connections stream;
// afterwards new connections work and Close leaves no goroutine behind
// (TestMain checks).
func TestSwitchUnderTraffic(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("tcp", p.Addr())
				if err != nil {
					continue
				}
				for i := 0; i < 20; i++ {
					if got, err := roundTrip(c, "ping", 100*time.Millisecond); err != nil || got != "ping" {
						break
					}
					mu.Lock()
					ok++
					mu.Unlock()
				}
				c.Close()
			}
		})
	}
	for _, m := range []Mode{Reset, Pass, BlackHole, Pass, HalfOpen, Pass, Refuse, Pass} {
		p.Set(m)
		p.SetLatency(time.Duration(len(m.String())) * time.Millisecond)
		time.Sleep(30 * time.Millisecond) // let traffic run under this mode
	}
	p.SetLatency(0)
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if ok == 0 {
		t.Fatal("no round trip succeeded")
	}
	mustEcho(t, dial(t, p), "after")
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{Pass: "pass", Refuse: "refuse", Reset: "reset", BlackHole: "black-hole", HalfOpen: "half-open", 99: "unknown"} {
		if m.String() != want {
			t.Errorf("%d.String() = %q, want %q", m, m.String(), want)
		}
	}
}
