package adaptertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

// Service is the service every fleet's pods serve.
const Service = "room"

// Timing is the engine timing of the pods and clients of a fleet: state
// changes reach the clients within a tenth of a second, while a pod whose
// heartbeats a busy machine stalls for a second or so does not age out
// (a lost pod is seen stale after 2 s).
var Timing = engine.Timing{Heartbeat: 100 * time.Millisecond, Staleness: 2 * time.Second, Refresh: 50 * time.Millisecond}

// within bounds the polls for a change to reach a client: a published one
// takes a heartbeat and a refresh, a lost pod the staleness window; both
// are allowed twice the window.
var within = 2 * Timing.Staleness

// Drain is the pods' drain window: long enough to check calls during it.
const Drain = 800 * time.Millisecond

// Config configures a Fleet.
type Config struct {
	// Redis is where the fleet's Redis is; each pod and each client gets a
	// connection of its own, as other processes would (client-side caching
	// off). No InitAddress means an embedded Redis the fleet starts and
	// closes.
	Redis rueidis.ClientOption
	// Pods is the number of pods; zero means 1.
	Pods int
	// Serve starts pod's server on lis and returns what stops it (called
	// again after Kill: it must not mind); required.
	Serve func(pod int, lis net.Listener) (stop func())
}

// Fleet is the pods of Service in a namespace of their own, and a client
// of the engine. Close stops it. Pod.Stop is safe for concurrent use; the
// rest is for the test's own goroutine.
type Fleet struct {
	// Namespace is the fleet's namespace, random: fleets can share a Redis.
	Namespace string
	// Pods are the pods by index.
	Pods []*Pod
	// Client is an engine client on a connection of its own (another
	// process's view of the fleet); Redis is that connection, to look into
	// Redis with.
	Client *engine.Client
	Redis  rueidis.Client

	redis    rueidis.ClientOption
	embedded *embedded.Server
	conns    []rueidis.Client // closed by Close
}

// Pod is one pod of a Fleet.
type Pod struct {
	// Index is the pod's index; Addr, its server's address on loopback.
	Index int
	Addr  string
	// Server publishes the pod's state in the engine.
	Server *engine.Server

	serve   func() // stops the pod's server
	rdb     rueidis.Client
	stopped sync.Once
}

// Start starts the pods of cfg, each answering on loopback and in the
// engine, routable once Start returns.
func Start(ctx context.Context, cfg Config) (*Fleet, error) {
	if cfg.Serve == nil {
		return nil, errors.New("adaptertest: Config.Serve is required")
	}
	var ns [6]byte
	_, _ = rand.Read(ns[:])
	f := &Fleet{Namespace: "t" + hex.EncodeToString(ns[:]), redis: cfg.Redis}
	f.redis.DisableCache = true
	if len(f.redis.InitAddress) == 0 {
		srv, err := embedded.Start()
		if err != nil {
			return nil, err
		}
		f.embedded = srv
		f.redis.InitAddress, f.redis.ForceSingleClient = []string{srv.Addr()}, true
	}
	for i := range max(cfg.Pods, 1) {
		if err := f.start(ctx, i, cfg.Serve); err != nil {
			f.Close()
			return nil, err
		}
	}
	rdb, err := f.conn()
	if err == nil {
		f.Redis = rdb
		f.Client, err = engine.NewClient(engine.ClientConfig{Store: store.New(rdb), Timing: Timing, TempLinkTTL: time.Minute})
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// MustStart starts a fleet for an example, as httptest.NewServer does a
// server: it panics on an error.
func MustStart(cfg Config) *Fleet {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := Start(ctx, cfg)
	if err != nil {
		panic(err)
	}
	return f
}

func (f *Fleet) start(ctx context.Context, i int, serve func(int, net.Listener) func()) error {
	rdb, err := f.conn()
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	p := &Pod{Index: i, Addr: lis.Addr().String(), rdb: rdb, serve: serve(i, lis)}
	f.Pods = append(f.Pods, p)
	p.Server, err = engine.NewServer(engine.ServerConfig{
		Store: store.New(rdb), Namespace: f.Namespace, Service: Service, Pod: i, Timing: Timing,
		MaxRequest: 100 * time.Millisecond, Drain: Drain,
	})
	if err != nil {
		return err
	}
	return p.Server.Start(ctx)
}

// conn opens a Redis connection that Close closes.
func (f *Fleet) conn() (rueidis.Client, error) {
	c, err := rueidis.NewClient(f.redis)
	if err != nil {
		return nil, err
	}
	f.conns = append(f.conns, c)
	return c, nil
}

// Addr is the fleet's pod address function: a pod it has no such pod for
// gets an address nothing listens on.
func (f *Fleet) Addr(pod int) string {
	if pod >= 0 && pod < len(f.Pods) {
		return f.Pods[pod].Addr
	}
	return "127.0.0.1:1"
}

// Close closes the client, stops every pod (draining them at once) and
// closes the connections and the embedded Redis.
func (f *Fleet) Close() {
	if f.Client != nil {
		f.Client.Close()
	}
	var wg sync.WaitGroup
	for _, p := range f.Pods {
		wg.Go(p.Stop)
	}
	wg.Wait()
	for _, c := range f.conns {
		c.Close()
	}
	if f.embedded != nil {
		f.embedded.Close()
	}
}

// Stop drains the pod (engine.Server.Stop), then stops its server. Only the
// first call does anything.
func (p *Pod) Stop() {
	p.stopped.Do(func() {
		if p.Server != nil {
			_ = p.Server.Stop(context.Background())
		}
		p.serve()
	})
}

// Kill loses the pod: its server and its Redis connection close at once, so
// it answers nothing and stops heartbeating without a word.
func (p *Pod) Kill() {
	p.serve()
	p.rdb.Close()
}

// New starts a fleet for a test and closes it when t ends; it fails t on an
// error.
func New(t testing.TB, cfg Config) *Fleet {
	t.Helper()
	f, err := Start(redistest.Ctx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// Each runs fn once per Redis backend (embedded, standalone, cluster; see
// internal/redistest), each a subtest with a fleet of cfg on that backend.
func Each(t *testing.T, cfg Config, fn func(t *testing.T, f *Fleet)) {
	t.Helper()
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		cfg := cfg
		cfg.Redis = rueidis.ClientOption{InitAddress: b.Addrs, ForceSingleClient: b.Name == redistest.Embedded}
		fn(t, New(t, cfg))
	})
}
