package store_test

import (
	"context"
	"testing"

	"github.com/redis/rueidis"

	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

func TestMain(m *testing.M) { redistest.VerifyTestMain(m) }

// env is what one contract case gets: a store on one backend and a namespace
// of its own.
type env struct {
	t   *testing.T
	b   *redistest.Backend
	s   *store.Redis
	ns  string
	ctx context.Context
}

func newEnv(t *testing.T, b *redistest.Backend) *env {
	return &env{t: t, b: b, s: store.New(b.Client), ns: redistest.Namespace(t), ctx: redistest.Ctx(t)}
}

// raw runs a command on the client and returns its result.
func (e *env) raw(cmd rueidis.Completed) rueidis.RedisResult {
	return e.b.Client.Do(e.ctx, cmd)
}

// get returns K1's raw value and whether it exists.
func (e *env) get(uid, svc string) (string, bool) {
	e.t.Helper()
	v, err := e.raw(e.b.Client.B().Get().Key(store.LinkKey(e.ns, uid, svc)).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "", false
	}
	if err != nil {
		e.t.Fatalf("GET: %v", err)
	}
	return v, true
}

// pttl returns the PTTL of key in milliseconds (-1 no expiry, -2 no key).
func (e *env) pttl(key string) int64 {
	e.t.Helper()
	n, err := e.raw(e.b.Client.B().Pttl().Key(key).Build()).AsInt64()
	if err != nil {
		e.t.Fatalf("PTTL %s: %v", key, err)
	}
	return n
}

// dir returns the uid's K2 hash.
func (e *env) dir(uid string) map[string]string {
	e.t.Helper()
	m, err := e.raw(e.b.Client.B().Hgetall().Key(store.DirKey(e.ns, uid)).Build()).AsStrMap()
	if err != nil {
		e.t.Fatalf("HGETALL: %v", err)
	}
	return m
}

// set plants a raw value, as another writer (or a bad day) would.
func (e *env) set(key, value string) {
	e.t.Helper()
	if err := e.raw(e.b.Client.B().Set().Key(key).Value(value).Build()).Error(); err != nil {
		e.t.Fatalf("SET %s: %v", key, err)
	}
}

// hset plants a raw hash field.
func (e *env) hset(key, field, value string) {
	e.t.Helper()
	if err := e.raw(e.b.Client.B().Hset().Key(key).FieldValue().FieldValue(field, value).Build()).Error(); err != nil {
		e.t.Fatalf("HSET %s: %v", key, err)
	}
}

// keys returns every key of this case's namespace.
func (e *env) keys() []string {
	e.t.Helper()
	return e.b.Keys(e.t, "sf:{"+e.ns+":*")
}

// serverMillis reads the server clock (TIME) of the node holding key.
func (e *env) serverMillis() int64 {
	e.t.Helper()
	arr, err := e.raw(e.b.Client.B().Time().Build()).AsStrSlice()
	if err != nil || len(arr) != 2 {
		e.t.Fatalf("TIME: %v %v", arr, err)
	}
	var sec, usec int64
	for _, c := range arr[0] {
		sec = sec*10 + int64(c-'0')
	}
	for _, c := range arr[1] {
		usec = usec*10 + int64(c-'0')
	}
	return sec*1000 + usec/1000
}

// must fails the test on err.
func (e *env) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

// wantTTL checks that key expires within (0, seconds].
func (e *env) wantTTL(key string, seconds int) {
	e.t.Helper()
	if ms := e.pttl(key); ms <= 0 || ms > int64(seconds)*1000 {
		e.t.Fatalf("PTTL %s = %d ms, want in (0, %d]", key, ms, seconds*1000)
	}
}

// wantPersistent checks that key exists without expiry.
func (e *env) wantPersistent(key string) {
	e.t.Helper()
	if ms := e.pttl(key); ms != -1 {
		e.t.Fatalf("PTTL %s = %d, want -1 (no expiry)", key, ms)
	}
}
