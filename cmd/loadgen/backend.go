package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/rueidis"

	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

// backend is the Redis the fleet runs on: the embedded one (which the store
// blip pauses) or real servers, reached directly, or through local TCP
// proxies in the blip scenario (which the blip cuts): a proxy is a hop of its
// own, so only the scenario that needs one pays for it. Every simulated
// process gets its own client.
type backend struct {
	// name is "embedded", or the mode of the real servers as the first
	// client found it: "standalone" or "cluster".
	name     string
	nameOnce sync.Once
	addrs    []string
	mini     *miniredis.Miniredis
	proxies  *proxies
}

// openBackend starts the embedded Redis, or the proxies in front of the real
// servers of cfg when its scenario cuts them.
func openBackend(cfg Config) (*backend, error) {
	b := &backend{}
	switch {
	case cfg.Redis != "":
		b.addrs = []string{cfg.Redis}
	case len(cfg.Cluster) > 0:
		b.addrs = cfg.Cluster
	default:
		srv, err := embedded.Start()
		if err != nil {
			return nil, err
		}
		b.name, b.addrs, b.mini = "embedded", []string{srv.Addr()}, srv.Miniredis()
		return b, nil
	}
	if cfg.Scenario == Blip {
		b.proxies = &proxies{byDst: map[string]*proxy{}}
	}
	return b, nil
}

// open returns a store for one simulated process, and what closes it. A
// tracked store keeps its cache coherent through Redis client tracking (real
// servers only). Its connections pass gate, which a crash closes.
func (b *backend) open(tracked bool, g *gate) (*store.Redis, func(), error) {
	dial := func(ctx context.Context, dst string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
		if g.isDown() {
			return nil, errCrashed
		}
		if b.proxies != nil {
			p, err := b.proxies.to(dst)
			if err != nil {
				return nil, err
			}
			dst = p.addr()
		}
		c, err := d.DialContext(ctx, "tcp", dst)
		if err != nil {
			return nil, err
		}
		return g.track(c), nil
	}
	if tracked && b.mini == nil {
		st, err := store.Dial(store.DialConfig{Addrs: b.addrs, ClientName: "stickyroute-loadgen",
			Configure: func(o *rueidis.ClientOption) { o.DialCtxFn = dial }})
		if err != nil {
			return nil, nil, b.named(err)
		}
		b.detect(st.Client())
		return st, st.Close, nil
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: b.addrs, ClientName: "stickyroute-loadgen",
		DisableCache: true, ForceSingleClient: b.mini != nil, DialCtxFn: dial})
	if err != nil {
		return nil, nil, b.named(err)
	}
	b.detect(c)
	return store.New(c), c.Close, nil
}

// detect names a real backend after the mode its first client found. The
// two fleets of a -floor run open their clients at once.
func (b *backend) detect(c rueidis.Client) {
	b.nameOnce.Do(func() {
		if b.name != "" {
			return // embedded
		}
		b.name = "standalone"
		if c.Mode() == rueidis.ClientModeCluster {
			b.name = "cluster"
		}
	})
}

// named says which Redis a connection error is about.
func (b *backend) named(err error) error {
	return fmt.Errorf("connecting to Redis at %s: %w", strings.Join(b.addrs, ","), err)
}

// blip makes the store unreachable for d: the embedded Redis is stopped and
// restarted with its data; real servers are cut at the proxies.
func (b *backend) blip(ctx context.Context, d time.Duration) error {
	if b.mini != nil {
		b.mini.Close()
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		return b.mini.Restart()
	}
	b.proxies.setDown(true)
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	b.proxies.setDown(false)
	return nil
}

// close stops the proxies and the embedded Redis.
func (b *backend) close() {
	if b.proxies != nil {
		b.proxies.close()
	}
	if b.mini != nil {
		b.mini.Close()
	}
}

var errCrashed = errors.New("loadgen: the pod has crashed")

// gate is one simulated process's network: a crash closes its connections
// and refuses new ones. A nil gate never closes.
type gate struct {
	down  atomic.Bool
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (g *gate) isDown() bool { return g != nil && g.down.Load() }

// track remembers c so that a crash can close it.
func (g *gate) track(c net.Conn) net.Conn {
	if g == nil {
		return c
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conns == nil {
		g.conns = map[net.Conn]struct{}{}
	}
	g.conns[c] = struct{}{}
	return c
}

// crash closes every connection and refuses new ones from now on.
func (g *gate) crash() {
	g.down.Store(true)
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.conns {
		_ = c.Close()
	}
	g.conns = nil
}

// proxies holds one local TCP proxy per Redis node dialed.
type proxies struct {
	mu    sync.Mutex
	byDst map[string]*proxy
	down  bool
}

// to returns the proxy in front of dst, starting it on first use.
func (ps *proxies) to(dst string) (*proxy, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.byDst[dst]; p != nil {
		return p, nil
	}
	// The node must answer: a proxy in front of a wrong address would
	// accept, then hang up, and the client would report only an EOF from
	// the proxy's port.
	up, err := net.DialTimeout("tcp", dst, 2*time.Second)
	if err != nil {
		return nil, err
	}
	_ = up.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, upstream: dst, conns: map[net.Conn]struct{}{}}
	p.down.Store(ps.down)
	p.wg.Add(1)
	go p.serve()
	ps.byDst[dst] = p
	return p, nil
}

func (ps *proxies) setDown(down bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.down = down
	for _, p := range ps.byDst {
		p.setDown(down)
	}
}

func (ps *proxies) close() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.byDst {
		p.close()
	}
}

// proxy copies bytes between local clients and one Redis node. While down it
// drops every connection and closes new ones at once, as an unreachable
// server would.
type proxy struct {
	ln       net.Listener
	upstream string
	down     atomic.Bool
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		go p.pipe(c)
	}
}

// pipe joins client c to a new upstream connection until either side ends.
func (p *proxy) pipe(c net.Conn) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", p.upstream, 2*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	if !p.add(c, up) {
		return
	}
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// add registers a connection pair, or closes it when the proxy went down.
func (p *proxy) add(c, up net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down.Load() || p.conns == nil {
		_ = c.Close()
		_ = up.Close()
		return false
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	return true
}

func (p *proxy) setDown(down bool) {
	p.down.Store(down)
	if !down {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}
