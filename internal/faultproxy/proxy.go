// Package faultproxy is a TCP proxy for tests that injects the faults a
// network path to Redis has on a bad day: added latency, a bandwidth cap,
// dropped and reset connections, a black hole (connections accepted, nothing
// answered) and half-open connections (the server side gone, the client side
// still open and silent). Faults switch while traffic flows.
//
//	p, err := faultproxy.New("127.0.0.1:6390")
//	defer p.Close()
//	// point the client at p.Addr(); then, mid-traffic:
//	p.SetLatency(200 * time.Millisecond)
//	p.Set(faultproxy.BlackHole)
//	p.Set(faultproxy.Pass)
//
// It listens on loopback only.
package faultproxy

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is what the proxy does with connections besides latency and
// bandwidth. The zero value is Pass.
type Mode uint8

const (
	// Pass forwards bytes both ways.
	Pass Mode = iota
	// Refuse closes every open connection (an orderly close on both sides)
	// and closes new ones as soon as they are accepted: the server is down.
	Refuse
	// Reset aborts every open connection with a TCP reset, and new ones as
	// soon as they are accepted.
	Reset
	// BlackHole stops forwarding in both directions: new connections are
	// accepted and never answered, bytes of open ones wait (as if every
	// packet were lost and retransmitted). Leaving it delivers what waited.
	BlackHole
	// HalfOpen closes the server side of every open connection while the
	// client side stays open: the client's writes vanish and it reads
	// nothing, not even an end of stream, as after a server crash without a
	// FIN. New connections get the same. Leaving HalfOpen resets those client
	// sides, as a restarted peer answers a stray segment with a reset.
	HalfOpen
)

// String returns the mode's name.
func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Refuse:
		return "refuse"
	case Reset:
		return "reset"
	case BlackHole:
		return "black-hole"
	case HalfOpen:
		return "half-open"
	}
	return "unknown"
}

// Stats counts what the proxy did since New.
type Stats struct {
	// Accepted counts accepted connections; Active the ones open now.
	Accepted, Active int64
	// Up and Down count the bytes forwarded toward the server and back.
	Up, Down int64
	// Resets counts connections aborted with a TCP reset.
	Resets int64
}

// Proxy forwards connections from Addr to an upstream address, injecting the
// faults set on it. Safe for concurrent use.
type Proxy struct {
	ln       net.Listener
	upstream string

	// mu guards the fields below it.
	mu        sync.Mutex
	mode      Mode
	latency   time.Duration
	bandwidth int64 // bytes per second per direction; 0: unlimited
	// changed is closed and replaced whenever a setting changes, waking the
	// pumps waiting for one.
	changed chan struct{}
	links   map[*link]struct{}
	closed  bool

	wg                         sync.WaitGroup
	accepted, up, down, resets atomic.Int64
}

// New listens on a free loopback port and forwards to upstream.
func New(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, upstream: upstream, changed: make(chan struct{}), links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the host:port clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Upstream returns the address the proxy forwards to.
func (p *Proxy) Upstream() string { return p.upstream }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Set switches the mode; it applies at once to open connections too (see
// each Mode).
func (p *Proxy) Set(m Mode) {
	p.mu.Lock()
	prev := p.mode
	p.mode = m
	p.wake()
	links := p.snapshot()
	p.mu.Unlock()
	for _, l := range links {
		switch {
		case m == Refuse:
			l.close(false)
		case m == Reset:
			l.close(true)
		case m == HalfOpen:
			l.halfOpen()
		case prev == HalfOpen && l.isHalfOpen():
			l.close(true)
		}
	}
}

// SetLatency delays every chunk of bytes by d in each direction (so a round
// trip takes 2d longer). Bytes keep their order; throughput is unchanged.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = max(d, 0)
	p.wake()
	p.mu.Unlock()
}

// SetBandwidth caps each direction of each connection at bytesPerSecond;
// zero or less removes the cap.
func (p *Proxy) SetBandwidth(bytesPerSecond int64) {
	p.mu.Lock()
	p.bandwidth = max(bytesPerSecond, 0)
	p.wake()
	p.mu.Unlock()
}

// ResetAfter arms every open connection to be reset once it has forwarded n
// more bytes toward the server: the chunk that crosses n is cut at n and sent
// in part, then both sides are reset. With pipelined traffic this aborts a
// connection in the middle of a command. It returns how many it armed.
func (p *Proxy) ResetAfter(n int64) int {
	p.mu.Lock()
	links := p.snapshot()
	p.mu.Unlock()
	for _, l := range links {
		l.budget.Store(max(n, 1))
	}
	return len(links)
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := int64(len(p.links))
	p.mu.Unlock()
	return Stats{Accepted: p.accepted.Load(), Active: active, Up: p.up.Load(), Down: p.down.Load(), Resets: p.resets.Load()}
}

// Close stops listening, closes every connection and waits for the proxy's
// goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	links := p.snapshot()
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range links {
		l.close(false)
	}
	p.wg.Wait()
	return err
}

// wake tells the waiting pumps that a setting changed. p.mu is held.
func (p *Proxy) wake() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// snapshot returns the open links. p.mu is held.
func (p *Proxy) snapshot() []*link {
	out := make([]*link, 0, len(p.links))
	for l := range p.links {
		out = append(out, l)
	}
	return out
}

// settings returns what a pump needs, and the channel closed at the next change.
func (p *Proxy) settings() (Mode, time.Duration, int64, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.latency, p.bandwidth, p.changed
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		l := &link{p: p, client: c.(*net.TCPConn), done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			return
		}
		mode := p.mode
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		switch mode {
		case Refuse:
			l.close(false)
		case Reset:
			l.close(true)
		case HalfOpen:
			l.halfOpen()
		}
		go l.run()
	}
}

// link is one proxied connection.
type link struct {
	p      *Proxy
	client *net.TCPConn
	// mu guards server and half.
	mu     sync.Mutex
	server *net.TCPConn
	half   bool // the server side was dropped, the client side is kept silent
	budget atomic.Int64
	once   sync.Once
	done   chan struct{}
}

// run dials the server once the mode lets bytes through, then forwards both
// ways until the link closes.
func (l *link) run() {
	defer l.p.wg.Done()
	defer l.close(false)
	// A connection accepted into a black hole is not answered, and not even
	// connected upstream, until the hole closes.
	for {
		mode, _, _, changed := l.p.settings()
		if l.isHalfOpen() {
			l.swallow()
			return
		}
		if mode == Pass {
			break
		}
		select {
		case <-changed:
		case <-l.done:
			return
		}
	}
	s, err := net.DialTimeout("tcp", l.p.upstream, 5*time.Second)
	if err != nil {
		return
	}
	l.mu.Lock()
	l.server = s.(*net.TCPConn)
	half := l.half
	l.mu.Unlock()
	select {
	case <-l.done:
		_ = s.Close()
		return
	default:
	}
	if half {
		_ = s.Close()
		l.swallow()
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { l.pump(l.client, l.server, &l.p.up, true) })
	wg.Go(func() { l.pump(l.server, l.client, &l.p.down, false) })
	wg.Wait()
	if l.isHalfOpen() {
		l.swallow()
	}
}

// swallow reads and discards what the client sends until the link closes.
func (l *link) swallow() {
	buf := make([]byte, 32<<10)
	for {
		if _, err := l.client.Read(buf); err != nil {
			return
		}
	}
}

// chunk is bytes read from one side, due for the other at due.
type chunk struct {
	b   []byte
	due time.Time
}

// pump forwards src to dst: a reader queues chunks stamped with their due
// time, a writer delivers them honouring the mode, latency and bandwidth.
func (l *link) pump(src, dst *net.TCPConn, count *atomic.Int64, toServer bool) {
	q := make(chan chunk, 64)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(q)
		for {
			buf := make([]byte, 16<<10)
			n, err := src.Read(buf)
			if n > 0 {
				if l.isHalfOpen() {
					continue // the server side is gone: the bytes vanish
				}
				_, lat, _, _ := l.p.settings()
				select {
				case q <- chunk{b: buf[:n], due: time.Now().Add(lat)}:
				case <-l.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	defer wg.Wait()
	defer func() {
		// A half-open link keeps its client side open and silent: only
		// Set or Close ends it.
		if !l.isHalfOpen() {
			l.close(false)
		}
	}()
	for c := range q {
		if !l.deliver(dst, c, count, toServer) {
			return
		}
	}
}

// deliver writes one chunk to dst when the mode allows, after its due time,
// at the bandwidth cap. It reports whether the link is still usable.
func (l *link) deliver(dst *net.TCPConn, c chunk, count *atomic.Int64, toServer bool) bool {
	for {
		mode, _, bw, changed := l.p.settings()
		if mode != BlackHole && !l.isHalfOpen() {
			if wait := time.Until(c.due); wait > 0 && !l.sleep(wait, nil) {
				return false
			}
			if bw > 0 {
				return l.throttled(dst, c.b, bw, count, toServer)
			}
			return l.write(dst, c.b, count, toServer)
		}
		if l.isHalfOpen() {
			return true // dropped silently; the reader stops queueing
		}
		select {
		case <-changed:
		case <-l.done:
			return false
		}
	}
}

// throttled writes b in pieces paced to bw bytes per second.
func (l *link) throttled(dst *net.TCPConn, b []byte, bw int64, count *atomic.Int64, toServer bool) bool {
	piece := max(int(bw/50), 1) // about 20ms of data at a time
	for len(b) > 0 {
		n := min(piece, len(b))
		if !l.write(dst, b[:n], count, toServer) {
			return false
		}
		b = b[n:]
		if !l.sleep(time.Duration(int64(n)*int64(time.Second)/bw), nil) {
			return false
		}
	}
	return true
}

// write sends b, cutting it and resetting the link when an armed ResetAfter
// budget runs out.
func (l *link) write(dst *net.TCPConn, b []byte, count *atomic.Int64, toServer bool) bool {
	cut := false
	if toServer {
		if left := l.budget.Load(); left > 0 {
			if int64(len(b)) >= left {
				b, cut = b[:left], true
				l.budget.Store(0)
			} else {
				l.budget.Add(-int64(len(b)))
			}
		}
	}
	n, err := dst.Write(b)
	count.Add(int64(n))
	if cut {
		l.close(true)
		return false
	}
	return err == nil
}

// sleep waits d, or until the link closes (false) or ch is closed.
func (l *link) sleep(d time.Duration, ch <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ch:
		return true
	case <-l.done:
		return false
	}
}

func (l *link) isHalfOpen() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.half
}

// halfOpen drops the server side silently and keeps the client side open.
func (l *link) halfOpen() {
	l.mu.Lock()
	l.half = true
	s := l.server
	l.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
}

// close ends the link once: with a TCP reset on both sides when reset,
// else with an orderly close.
func (l *link) close(reset bool) {
	l.once.Do(func() {
		if reset {
			l.p.resets.Add(1)
		}
		close(l.done)
		l.mu.Lock()
		s := l.server
		l.mu.Unlock()
		for _, c := range []*net.TCPConn{l.client, s} {
			if c == nil {
				continue
			}
			if reset {
				_ = c.SetLinger(0) // close sends RST instead of FIN
			}
			_ = c.Close()
		}
		l.p.mu.Lock()
		delete(l.p.links, l)
		l.p.mu.Unlock()
	})
}
