// Package redistest gives tests the three Redis backends the project supports:
// the embedded in-process Redis (always), a real standalone server and a real
// 3-master Redis Cluster (when scripts/redis.sh started them and exported their
// addresses). Locally without those variables the real tiers skip with a message
// naming the variable; with STICKYROUTE_REQUIRE_SERVERS=1 (make test sets it)
// they fail instead, so CI can never pass by skipping.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/rueidis"
	"go.uber.org/goleak"

	"github.com/stickyroute/stickyroute/internal/slot"
)

// Environment variables read by the real-server tiers.
const (
	// EnvStandalone holds host:port of a standalone Redis.
	EnvStandalone = "STICKYROUTE_REDIS_ADDR"
	// EnvCluster holds comma-separated host:port of Redis Cluster masters.
	EnvCluster = "STICKYROUTE_CLUSTER_ADDRS"
	// EnvRequire, when "1", turns a missing server into a test failure.
	EnvRequire = "STICKYROUTE_REQUIRE_SERVERS"
)

// Names of the backends, in the order Each runs them.
const (
	Embedded   = "embedded"
	Standalone = "standalone"
	Cluster    = "cluster"
)

// Names lists every backend; Real the real servers among them.
var (
	Names = []string{Embedded, Standalone, Cluster}
	Real  = []string{Standalone, Cluster}
)

// Backend is one Redis to run a test against.
type Backend struct {
	// Name is Embedded, Standalone or Cluster.
	Name string
	// Client is connected to it; closed when the test ends.
	Client rueidis.Client
	// Mini is the embedded server, nil for real servers.
	Mini *miniredis.Miniredis
	// Addrs are the server addresses the client was built from.
	Addrs []string
}

// Each runs fn once per backend, each as a subtest named after the backend.
func Each(t *testing.T, fn func(t *testing.T, b *Backend)) {
	t.Helper()
	for _, name := range Names {
		t.Run(name, func(t *testing.T) { fn(t, Open(t, name)) })
	}
}

// Case is a named check that runs on an environment E built for it.
type Case[E any] struct {
	Name string
	Run  func(e E)
}

// EachCase runs every case on every backend, as subtests backend/case, each
// on an environment env builds afresh.
func EachCase[E any](t *testing.T, cases []Case[E], env func(t *testing.T, b *Backend) E) {
	Each(t, func(t *testing.T, b *Backend) {
		for _, c := range cases {
			t.Run(c.Name, func(t *testing.T) { c.Run(env(t, b)) })
		}
	})
}

// Open connects to the named backend (starting it when embedded) and closes it
// when t ends. A real backend whose variable is unset skips t, or fails it
// under EnvRequire.
func Open(t testing.TB, name string) *Backend {
	t.Helper()
	b := &Backend{Name: name}
	// No client-side caching: these clients stand for other processes and
	// plain stores; tests that need tracking build a store with store.Dial.
	// One connection per node, as store.Dial builds them: commands a caller
	// abandoned (its context ended) still run before the ones it sends next.
	opt := rueidis.ClientOption{ClientName: "stickyroute-test", DisableCache: true, PipelineMultiplex: -1}
	switch name {
	case Embedded:
		m := miniredis.NewMiniRedis()
		m.ClockTTL(true)
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			t.Fatalf("starting miniredis: %v", err)
		}
		t.Cleanup(m.Close)
		b.Mini = m
		b.Addrs = []string{m.Addr()}
		opt.ForceSingleClient = true
	case Standalone:
		b.Addrs = addrs(t, EnvStandalone)
	case Cluster:
		b.Addrs = addrs(t, EnvCluster)
	default:
		t.Fatalf("unknown backend %q", name)
	}
	opt.InitAddress = b.Addrs
	c, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatalf("connecting to %s redis %v: %v", name, b.Addrs, err)
	}
	t.Cleanup(c.Close)
	b.Client = c
	if name == Cluster && c.Mode() != rueidis.ClientModeCluster {
		t.Fatalf("%s=%v is not a cluster (client mode %s)", EnvCluster, b.Addrs, c.Mode())
	}
	return b
}

// Addrs returns the addresses of the named real backend, for tests that
// build their own client (store.Dial). Without them it skips t, or fails it
// under EnvRequire.
func Addrs(t testing.TB, name string) []string {
	t.Helper()
	switch name {
	case Standalone:
		return addrs(t, EnvStandalone)
	case Cluster:
		return addrs(t, EnvCluster)
	}
	t.Fatalf("%q is not a real backend", name)
	return nil
}

func addrs(t testing.TB, env string) []string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("%s is not set but %s=1: start the servers with scripts/redis.sh up (make test does)", env, EnvRequire)
		}
		t.Skipf("%s is not set: run make test (it starts the real servers) to run this tier", env)
	}
	return strings.Split(v, ",")
}

// Ctx returns a context that ends after 30 s or when t ends.
func Ctx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Namespace returns a namespace no other test uses, so tests can share servers.
func Namespace(t testing.TB) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

// Do runs one command on every node the client knows (each master of a
// cluster) and fails t on an error reply.
func (b *Backend) Do(t testing.TB, build func(c rueidis.Client) rueidis.Completed) []rueidis.RedisResult {
	t.Helper()
	var out []rueidis.RedisResult
	for addr, n := range b.Client.Nodes() {
		res := n.Do(Ctx(t), build(n))
		if err := res.Error(); err != nil {
			t.Fatalf("on %s: %v", addr, err)
		}
		out = append(out, res)
	}
	return out
}

// Keys returns every key matching pattern, across all nodes.
func (b *Backend) Keys(t testing.TB, pattern string) []string {
	t.Helper()
	var keys []string
	for _, res := range b.Do(t, func(c rueidis.Client) rueidis.Completed {
		return c.B().Keys().Pattern(pattern).Build()
	}) {
		ks, err := res.AsStrSlice()
		if err != nil {
			t.Fatalf("KEYS %s: %v", pattern, err)
		}
		keys = append(keys, ks...)
	}
	return keys
}

// FlushScripts empties the script cache of every node (SCRIPT FLUSH).
func (b *Backend) FlushScripts(t testing.TB) {
	t.Helper()
	b.Do(t, func(c rueidis.Client) rueidis.Completed { return c.B().ScriptFlush().Build() })
}

// Poll calls cond until it returns true or the deadline passes, then fails t
// with what. It is how tests wait for a condition, never with a fixed sleep.
func Poll(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// LeakOptions are the goleak options for packages whose tests use these
// backends. rueidis runs two timed goroutines of its own that may outlive a
// closed cluster client by seconds: the delayed close of connections a
// topology refresh dropped (5 s), and a delayed topology refresh (under 1 s).
// Neither is a leak of ours.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient).redirectOrNew.func1"),
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1"),
	}
}

// rueidisLinger is how long a connection rueidis replaced keeps its reader
// and writer goroutines after the client that held it is closed: a cluster
// client closes the connection that a topology refresh dropped, or that a
// MOVED to the same address replaced, 5 s later (rueidis v1.0.79,
// cluster.go, _refresh and redirectOrNew). goleak's own retries give up
// after about 0.4 s, so a test that ended within 5 s of a slot migration or
// a failover reported those goroutines as leaked.
const rueidisLinger = 5 * time.Second

// Leaks is goleak.Find with LeakOptions, asked again until no goroutine is
// left or rueidis's lingering connections have had twice the time they
// take to close (a busy machine runs their timers late): it returns at
// once when nothing leaked, and an error naming the goroutines still
// running at the deadline otherwise.
func Leaks() error {
	deadline := time.Now().Add(2 * rueidisLinger)
	for {
		err := goleak.Find(LeakOptions()...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond) // goleak.Find itself waits too
	}
}

// VerifyTestMain is a TestMain for packages whose tests use these
// backends: it runs the tests, then each of cleanups, and when the tests
// passed, fails the run if Leaks finds goroutines left.
func VerifyTestMain(m *testing.M, cleanups ...func()) {
	code := m.Run()
	for _, f := range cleanups {
		f()
	}
	if code == 0 {
		if err := Leaks(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// OnEachMaster returns, for every master of the backend, the first i in 0,
// 1, ... whose key(i) the master serves, so that a test can write on every
// node: one index for a standalone server, one per master of a cluster
// (from CLUSTER SLOTS), in no particular order.
func (b *Backend) OnEachMaster(t testing.TB, key func(i int) string) []int {
	t.Helper()
	if b.Name != Cluster {
		return []int{0}
	}
	entries, err := b.Client.Do(Ctx(t), b.Client.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	// The slot ranges of each master, by its address.
	ranges := map[string][][2]int64{}
	for _, e := range entries {
		f, err := e.ToArray()
		if err != nil || len(f) < 3 {
			t.Fatalf("CLUSTER SLOTS entry %v: %v", e, err)
		}
		lo, err1 := f[0].AsInt64()
		hi, err2 := f[1].AsInt64()
		node, err3 := f[2].ToArray()
		if err := errors.Join(err1, err2, err3); err != nil || len(node) < 2 {
			t.Fatalf("CLUSTER SLOTS entry %v: %v", e, err)
		}
		host, _ := node[0].ToString()
		port, _ := node[1].AsInt64()
		addr := net.JoinHostPort(host, strconv.FormatInt(port, 10))
		ranges[addr] = append(ranges[addr], [2]int64{lo, hi})
	}
	var out []int
	for addr, rs := range ranges {
		found := false
		for i := 0; i < 1<<20 && !found; i++ {
			s := int64(slot.Of(key(i)))
			for _, r := range rs {
				if r[0] <= s && s <= r[1] {
					out, found = append(out, i), true
					break
				}
			}
		}
		if !found {
			t.Fatalf("no key served by %s among 2^20 tries", addr)
		}
	}
	return out
}
