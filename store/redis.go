package store

import (
	"context"
	"crypto/sha1"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// Redis is the link store on a Redis server, a Redis Cluster or the embedded
// in-process Redis. It is safe for concurrent use; it keeps no state of its own
// besides the client, so any number of processes may share one Redis.
type Redis struct {
	client  rueidis.Client
	cluster bool
	// closed is set by Close: every operation then answers ErrClosed
	// without sending anything.
	closed atomic.Bool
	// caching is CLIENT CACHING YES, built once (pinned, so the client
	// library never recycles it) for every tracked script call.
	caching rueidis.Completed
	// tracker receives the invalidations of tracked reads; nil when none.
	tracker *Tracker
	// closeFn releases what Dial built; nil for a store made by New.
	closeFn func()
	// placer, when Dial opened it, runs the tracked placements on
	// connections of their own that track every read (see
	// DialConfig.NoPlacementConnection); nil otherwise.
	placer rueidis.Client
	// broadcast is set by Dial with DialConfig.Broadcast: Redis reports
	// every change of the keys under the prefixes of namespaces (all of
	// stickyroute's when empty), read or not, and keeps no per-key table.
	broadcast  bool
	namespaces []string
}

// New returns a store over client, a client the caller built and owns: Close
// on the store does not close it. The client may be a standalone, sentinel or
// cluster client; on a cluster every multi-key operation stays in one slot.
// Redis 7.0 or newer is required (EVALSHA_RO, SET NX GET).
//
// For coherent caching above the store (engine.Client), build the client with
// ClientOption.OnInvalidations = t.OnInvalidations of a Tracker t and pass
// WithTracker(t); Dial does both.
func New(client rueidis.Client, opts ...Option) *Redis {
	r := &Redis{client: client, cluster: client.Mode() == rueidis.ClientModeCluster,
		caching: client.B().ClientCaching().Yes().Build().Pin()}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Client returns the rueidis client the store runs on.
func (r *Redis) Client() rueidis.Client { return r.client }

// Close releases what Dial built: the client and, when it started one, the
// embedded Redis (a store made by New leaves the caller's client open). Every
// operation called afterwards returns ErrClosed and sends nothing. Close is
// idempotent.
func (r *Redis) Close() {
	if r.closed.Swap(true) {
		return
	}
	if r.closeFn != nil {
		r.closeFn()
	}
}

// usable is the check every operation makes before anything else: a nil
// context is an invalid argument, and a closed store sends nothing.
func (r *Redis) usable(ctx context.Context) error {
	if ctx == nil {
		return errNilContext
	}
	if r.closed.Load() {
		return ErrClosed
	}
	return nil
}

// DialConfig says how Dial builds a client.
type DialConfig struct {
	// Addrs are host:port addresses of a Redis server or of any nodes of a
	// Redis Cluster (the mode is detected). Required unless Embedded is set:
	// Dial with neither is an invalid-argument error naming Addrs, so a
	// program with a missing setting fails instead of routing on a Redis of
	// its own that no other process sees.
	Addrs []string
	// Embedded, if set, is an in-process Redis the store dials instead of
	// Addrs (which must then be empty) and owns: Close, or a failed Dial,
	// closes it. Package store/embedded provides one (embedded.Dial does it
	// all); store itself links no in-process Redis. The embedded Redis has
	// no client tracking and is not a cluster, so the client is kept simple:
	// no tracking, one connection.
	Embedded EmbeddedRedis
	// Username and Password authenticate to Redis (empty: no AUTH).
	Username, Password string
	// ClientName is sent with CLIENT SETNAME. Zero means "stickyroute".
	// The placement connections (see NoPlacementConnection) are named
	// ClientName + "-place".
	ClientName string
	// Configure, if set, may adjust the client options before the client is
	// built, for example timeouts. An OnInvalidations hook set here is called
	// besides the store's own.
	Configure func(*rueidis.ClientOption)
	// NoPlacementConnection keeps tracked placements on the store's own
	// connection. By default, on a real Redis (where reads are tracked),
	// Dial opens a second client, one more connection per Redis node, that
	// runs nothing but tracked placements (SetLinkedPodIfAbsentTracked, the
	// engine's placement of a new user) and tracks every key they read
	// (CLIENT TRACKING ON OPTOUT). A placement is then one command instead
	// of CLIENT CACHING YES and the script in one round trip: measured with
	// 50 goroutines placing new users through the engine on the real
	// standalone server (BenchmarkPlacement50, six runs of each, one after
	// the other), 0.81-0.91 of the untracked store's throughput instead of
	// 0.74-0.81, the client and Redis each spending 0.4-0.8 µs less CPU on
	// a placement (getrusage, INFO cpu).
	// Set it where connections are scarce (Redis maxclients). The store
	// made by New never opens one.
	NoPlacementConnection bool
	// Broadcast tracks links by key prefix instead of key by key (Redis's
	// broadcast tracking: CLIENT TRACKING ON BCAST PREFIX ...). By default
	// Redis remembers every key each client read, in a table of at most
	// tracking-table-max-keys keys per node (1,000,000 by default), and past
	// it invalidates keys still cached to make room, so that a fleet caching
	// more links than that per node churns (see TrackingTable). In broadcast
	// mode Redis keeps only the prefixes, so caches stay coherent however
	// many links they hold, at a price: every change of a link under the
	// prefixes reaches every broadcast client, cached there or not (each
	// placement, relink and expiry of a temporary link is one message to
	// each client), and no placement connection is opened. Measured with
	// 10,000 link writes and one client: 10,000 invalidations in broadcast
	// mode against as many as the client had cached in the default mode.
	// Choose it for large fleets whose clients cache much of one namespace.
	Broadcast bool
	// BroadcastNamespaces, in broadcast mode, limits the tracking to the
	// links (and link directories) of these namespaces, prefix
	// sf:{<namespace>:lk:; tracked reads of another namespace are then an
	// invalid-argument error, since their answers would be cached with no
	// invalidation. Empty: every key of stickyroute (prefix sf:{), the pod
	// states included, whose heartbeats then reach every client too.
	BroadcastNamespaces []string
}

// EmbeddedRedis is an in-process Redis server a store can own (see
// DialConfig.Embedded and package store/embedded).
type EmbeddedRedis interface {
	// Addr returns the host:port the server listens on.
	Addr() string
	// Close stops the server.
	Close()
}

// The connection timing Dial sets (Configure may change it): the keep-alive
// period, also rueidis's ping gap, and how long a command may wait for its
// reply before rueidis drops the connection as dead.
const (
	dialKeepAlive    = 5 * time.Second
	dialWriteTimeout = 10 * time.Second
)

// Dial builds a rueidis client from cfg and returns a store that owns it
// (and cfg.Embedded, if set): Close releases both. cfg.Addrs, or else
// cfg.Embedded, is required. On a real Redis the client tracks the keys read for caching and the store
// gets a Tracker, and a second client for the tracked placements unless
// cfg.NoPlacementConnection; the embedded Redis has no client tracking, so
// the store has none and cached values live by their TTL alone.
func Dial(cfg DialConfig) (*Redis, error) {
	opt := rueidis.ClientOption{
		InitAddress: cfg.Addrs,
		Username:    cfg.Username,
		Password:    cfg.Password,
		ClientName:  cfg.ClientName,
	}
	if opt.ClientName == "" {
		opt.ClientName = "stickyroute"
	}
	// rueidis pings a connection that has received nothing for a keep-alive
	// period (1s by default) and, while that ping is out, the next command
	// waits a round trip more: a Redis slower than the period (measured
	// through a proxy adding 1.5s per round trip: 2.5-3s round trips instead
	// of 1.5s, one in three) then looks twice as slow as it is, and a 3s
	// detection window is missed. A longer period keeps slow from looking
	// unreachable; dead connections are still dropped after ConnWriteTimeout.
	opt.Dialer.KeepAlive = dialKeepAlive
	opt.ConnWriteTimeout = dialWriteTimeout
	// One connection per Redis node. rueidis's default on several cores is
	// 2 or 4, the others dialled lazily by the first command that lands on
	// one at random: on a Redis 1.5s away that command waited out its
	// handshake (3 round trips) and a refresh missed a 3s detection window,
	// 5 times in 20 (0 in 20 with one connection).
	opt.PipelineMultiplex = -1
	embedded := cfg.Embedded
	switch {
	case embedded != nil && len(cfg.Addrs) != 0:
		embedded.Close()
		return nil, invalid("Addrs", "set together with Embedded: dial one or the other")
	case embedded == nil && len(cfg.Addrs) == 0:
		return nil, invalid("Addrs", "empty: give the Redis server's or cluster nodes' host:port (or an Embedded Redis, package store/embedded)")
	}
	if embedded != nil {
		opt.InitAddress = []string{embedded.Addr()}
		// No client tracking in the embedded Redis, and it answers CLUSTER
		// commands as a one-node cluster: keep the client simple.
		opt.DisableCache = true
		opt.ForceSingleClient = true
	}
	if cfg.Configure != nil {
		cfg.Configure(&opt)
	}
	// Track reads on a real Redis, keeping any hook Configure installed.
	var tracker *Tracker
	if embedded == nil && !opt.DisableCache {
		tracker = NewTracker()
		tracker.Configure(&opt)
	}
	if cfg.Broadcast {
		if tracker == nil {
			closeEmbedded(embedded)
			return nil, invalid("Broadcast", "needs a real Redis with client tracking (not the embedded one, not DisableCache)")
		}
		tr, err := broadcastOptions(cfg.BroadcastNamespaces)
		if err != nil {
			closeEmbedded(embedded)
			return nil, err
		}
		opt.ClientTrackingOptions = tr
	} else if len(cfg.BroadcastNamespaces) != 0 {
		closeEmbedded(embedded)
		return nil, invalid("BroadcastNamespaces", "set without Broadcast")
	}
	client, err := rueidis.NewClient(opt)
	if err != nil {
		if embedded != nil {
			embedded.Close()
		}
		return nil, &UnavailableError{Op: "Dial", Err: err}
	}
	r := New(client, WithTracker(tracker))
	if cfg.Broadcast {
		r.broadcast, r.namespaces = true, slices.Clone(cfg.BroadcastNamespaces)
		connectNodes(client)
	}
	if tracker != nil && !cfg.NoPlacementConnection && !cfg.Broadcast {
		popt := opt
		popt.ClientName = opt.ClientName + "-place"
		popt.ClientTrackingOptions = []string{"OPTOUT"}
		if r.placer, err = rueidis.NewClient(popt); err != nil {
			client.Close()
			return nil, &UnavailableError{Op: "Dial", Err: err}
		}
	}
	r.closeFn = func() {
		if r.placer != nil {
			r.placer.Close()
		}
		client.Close()
		if embedded != nil {
			embedded.Close()
		}
	}
	return r, nil
}

// connectNodes opens the client's connection to every node it knows of.
// rueidis dials a cluster node's connection on the first command that lands
// there, and a broadcast subscription (CLIENT TRACKING ... BCAST) lives on
// that connection: without this, a link written on a node this client had
// not yet sent a command to was never reported (TestTracking, cluster: the
// creation of a link nobody read went unheard, once in CI). Best effort: a
// node that does not answer now is connected by the first command that
// reaches it, as rueidis does anyway; a cached link is never at risk, since
// it was read through its node's connection, which then tracks it.
func connectNodes(client rueidis.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), dialWriteTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range client.Nodes() {
		wg.Go(func() { c.Do(ctx, c.B().Ping().Build()) })
	}
	wg.Wait()
}

// closeEmbedded closes e, when set, for a Dial that fails.
func closeEmbedded(e EmbeddedRedis) {
	if e != nil {
		e.Close()
	}
}

// broadcastOptions returns the CLIENT TRACKING options of broadcast mode for
// the namespaces (every stickyroute key when none).
func broadcastOptions(namespaces []string) ([]string, error) {
	if len(namespaces) == 0 {
		return []string{"BCAST", "PREFIX", keyPrefix}, nil
	}
	opts := []string{"BCAST"}
	for _, ns := range slices.Compact(slices.Sorted(slices.Values(namespaces))) {
		if err := validName("BroadcastNamespaces", ns); err != nil {
			return nil, err
		}
		opts = append(opts, "PREFIX", keyPrefix+ns+linkInfix)
	}
	return opts, nil
}

// Broadcast reports whether the store tracks by prefix (DialConfig.Broadcast).
func (r *Redis) Broadcast() bool { return r.broadcast }

// tracks checks that the links of ns are tracked: in broadcast mode with
// namespaces, only theirs are.
func (r *Redis) tracks(ns string) error {
	if !r.broadcast || len(r.namespaces) == 0 || slices.Contains(r.namespaces, ns) {
		return nil
	}
	return invalid("ns", fmt.Sprintf("%q is not among DialConfig.BroadcastNamespaces: its links would be cached with no invalidation", ns))
}

//go:embed scripts/*.lua
var scriptFiles embed.FS

// script is one embedded Lua script, run with EVALSHA and re-sent with EVAL
// when the server answers NOSCRIPT (after SCRIPT FLUSH or a restart).
type script struct {
	name string
	lua  *rueidis.Lua
	// body and sha are the script's text and its SHA-1, for the calls that
	// send the script inside a pipeline of their own (runTracked).
	body, sha string
}

func loadScript(name string, readOnly, withPrelude bool) script {
	body := mustRead("scripts/" + name + ".lua")
	if withPrelude {
		body = mustRead("scripts/prelude.lua") + body
	}
	sum := sha1.Sum([]byte(body))
	s := script{name: name, body: body, sha: hex.EncodeToString(sum[:])}
	if readOnly {
		s.lua = rueidis.NewLuaScriptReadOnly(body)
	} else {
		s.lua = rueidis.NewLuaScript(body)
	}
	return s
}

func mustRead(path string) string {
	b, err := scriptFiles.ReadFile(path)
	if err != nil {
		panic(err) // the files are embedded at build time
	}
	return string(b)
}

var (
	scriptSet        = loadScript("set", false, true)
	scriptTrySet     = loadScript("tryset", false, true)
	scriptIfAbsent   = loadScript("ifabsent", false, true)
	scriptPlace      = loadScript("place", false, true)
	scriptReplace    = loadScript("replace", false, true)
	scriptGetPersist = loadScript("getpersist", true, true)
	scriptRemove     = loadScript("remove", false, true)
	scriptRemoveID   = loadScript("removeid", false, true)
	scriptSetState   = loadScript("setstate", false, false)
	// publishstate is setstate reading the operator's request (K5) too.
	scriptPublishState = loadScript("publishstate", false, false)
	// Not read-only on purpose: EVALSHA_RO may be served by a replica, whose
	// clock is not the one that stamped the states.
	scriptGetState    = loadScript("getstate", false, false)
	scriptSetWorkload = loadScript("setworkload", false, false)
	scriptLinkService = loadScript("linkservice", true, true)
)

// run executes s with keys and args and returns its reply as an array.
// op and keys[0] name the operation and its key in errors.
func (r *Redis) run(ctx context.Context, op string, s script, keys, args []string) ([]rueidis.RedisMessage, error) {
	return runOn(ctx, r.client, op, s, keys, args)
}

// runOn is run on client c.
func runOn(ctx context.Context, c rueidis.Client, op string, s script, keys, args []string) ([]rueidis.RedisMessage, error) {
	return scriptReply(op, s, keys, s.lua.Exec(ctx, c, keys, args))
}

// runTracked is run with the script preceded, in the same round trip and on
// the same connection, by CLIENT CACHING YES: Redis then tracks for this
// client the keys the script reads (Redis 7 tracks the reads of a script on
// behalf of its caller), and reports their later changes to the Tracker.
// On a cluster both go inside MULTI/EXEC, which the client library redirects
// as one block (MOVED, ASK), so the script never runs on another node
// without its CLIENT CACHING YES. tracked is false when Redis refused to
// track (the script's outcome stands). Without a tracker it is run. With
// Dial's placement client it runs there alone, tracked by default.
func (r *Redis) runTracked(ctx context.Context, op string, s script, keys, args []string) (arr []rueidis.RedisMessage, tracked bool, err error) {
	if r.tracker == nil {
		arr, err = r.run(ctx, op, s, keys, args)
		return arr, false, err
	}
	if r.placer != nil || r.broadcast {
		// The placement connections track every read, and in broadcast
		// mode every key under the prefixes is tracked: no CLIENT CACHING
		// to send (Redis refuses it in broadcast mode), and on a cluster
		// the client library redirects the script alone.
		c := r.client
		if r.placer != nil {
			c = r.placer
		}
		arr, err = runOn(ctx, c, op, s, keys, args)
		return arr, err == nil, err
	}
	res, caching := r.trackedOnce(ctx, s, keys, args, false)
	if e, ok := rueidis.IsRedisErr(res.Error()); ok && e.IsNoScript() {
		// Flushed scripts (SCRIPT FLUSH, a restart): send the body.
		res, caching = r.trackedOnce(ctx, s, keys, args, true)
	}
	arr, err = scriptReply(op, s, keys, res)
	return arr, err == nil && caching == nil, err
}

// trackedOnce sends CLIENT CACHING YES and the script (its body when body,
// else EVALSHA) in one round trip, and returns the script's result and the
// error of CLIENT CACHING.
func (r *Redis) trackedOnce(ctx context.Context, s script, keys, args []string, body bool) (res rueidis.RedisResult, caching error) {
	b := r.client.B()
	n := int64(len(keys))
	run := b.Evalsha().Sha1(s.sha).Numkeys(n).Key(keys...).Arg(args...).Build()
	if body {
		run = b.Eval().Script(s.body).Numkeys(n).Key(keys...).Arg(args...).Build()
	}
	if !r.cluster {
		out := r.client.DoMulti(ctx, r.caching, run)
		return out[1], out[0].Error()
	}
	out := r.client.DoMulti(ctx, b.Multi().Build(), r.caching, run, b.Exec().Build())
	exec, err := out[3].ToArray()
	if err != nil {
		// Aborted (EXECABORT): the script's own reply says why.
		if out[2].Error() != nil {
			return out[2], nil
		}
		return out[3], nil
	}
	if len(exec) != 2 {
		return rueidis.NewErrorResult(fmt.Errorf("%w: EXEC answered %d replies, want 2", ErrUnexpectedReply, len(exec))), nil
	}
	return rueidis.NewResult(exec[1], nil), exec[0].Error()
}

// scriptReply reads the reply of script s as an array.
func scriptReply(op string, s script, keys []string, res rueidis.RedisResult) ([]rueidis.RedisMessage, error) {
	if err := res.Error(); err != nil {
		return nil, classify(op, keys[0], err)
	}
	arr, err := res.ToArray()
	if err != nil || len(arr) == 0 {
		return nil, unexpected(op, "script "+s.name+" did not answer an array")
	}
	return arr, nil
}

// corruptReply is the status a link script answers when K1 holds a value that
// is not a pod index.
const corruptReply = -2

// status reads the first element of a script reply, turning the corrupt status
// into a *CorruptError for key.
func status(op, key string, arr []rueidis.RedisMessage) (int64, error) {
	st, err := arr[0].AsInt64()
	if err != nil {
		return 0, unexpected(op, "status is not an integer")
	}
	if st == corruptReply {
		raw := ""
		if len(arr) > 1 {
			raw, _ = arr[1].ToString()
		}
		return 0, &CorruptError{Key: key, Value: raw}
	}
	return st, nil
}

// intAt reads element i of a fixed-shape reply as a pod index or -1.
func intAt(op string, arr []rueidis.RedisMessage, i int) (int, error) {
	if i >= len(arr) {
		return 0, unexpected(op, fmt.Sprintf("reply has %d elements, want more than %d", len(arr), i))
	}
	v, err := arr[i].AsInt64()
	if err != nil || v < NoPod || v > MaxPod {
		return 0, unexpected(op, fmt.Sprintf("element %d is not a pod index", i))
	}
	return int(v), nil
}

// linkIn reads the link value of key that a script's reply carries second,
// after its status; the reply must have n elements, as shape names them.
func linkIn(op, key string, arr []rueidis.RedisMessage, n int, shape string) (int, error) {
	if len(arr) != n {
		return NoPod, unexpected(op, "reply is not "+shape)
	}
	return podValue(key, &arr[1])
}

// podValue reads an optional raw link value: nil is NoPod, a pod index is
// returned, anything else is a *CorruptError for key.
func podValue(key string, m *rueidis.RedisMessage) (int, error) {
	if m.IsNil() {
		return NoPod, nil
	}
	s, err := m.ToString()
	if err != nil {
		return 0, &CorruptError{Key: key, Value: wrongType}
	}
	p, ok := parsePod(s)
	if !ok {
		return 0, &CorruptError{Key: key, Value: s}
	}
	return p, nil
}

// isCorrupt reports whether err is a *CorruptError.
func isCorrupt(err error) bool { return errors.Is(err, ErrCorrupt) }
