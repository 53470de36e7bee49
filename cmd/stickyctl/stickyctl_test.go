package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/adapter/adaptertest"
	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

func TestMain(m *testing.M) { redistest.VerifyTestMain(m) }

const svc = "room"

// fleet is three server pods of svc publishing on one backend, and a store
// of the test's own on it.
type fleet struct {
	t       *testing.T
	ctx     context.Context
	ns      string
	target  []string // the flags naming the backend
	st      *store.Redis
	servers []*engine.Server
}

func newFleet(t *testing.T, b *redistest.Backend) *fleet {
	f := &fleet{t: t, ctx: redistest.Ctx(t), ns: redistest.Namespace(t), st: store.New(b.Client)}
	f.target = []string{"-redis", b.Addrs[0]}
	if b.Name == redistest.Cluster {
		f.target = []string{"-cluster", strings.Join(b.Addrs, ",")}
	}
	// The pods stop together, their drain windows cut short: the test is over.
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var wg sync.WaitGroup
		for _, srv := range f.servers {
			wg.Go(func() { _ = srv.Stop(ctx) })
		}
		wg.Wait()
	})
	for pod := range 3 {
		srv, err := engine.NewServer(engine.ServerConfig{Store: f.st, Namespace: f.ns, Service: svc, Pod: pod, Timing: adaptertest.Timing})
		if err != nil {
			t.Fatal(err)
		}
		f.servers = append(f.servers, srv)
		if err := srv.Start(f.ctx); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// run runs stickyctl with the command, the fleet's backend and namespace
// flags, and more, and returns its exit status and output.
func (f *fleet) run(cmd string, more ...string) (int, string, string) {
	args := append(append([]string{cmd}, f.target...), "-ns", f.ns)
	args = append(args, more...)
	var out, errw bytes.Buffer
	code := realMain(f.ctx, args, &out, &errw)
	return code, out.String(), errw.String()
}

// mustRun runs like run and fails the test unless the exit status is want.
func (f *fleet) mustRun(want int, cmd string, more ...string) string {
	f.t.Helper()
	code, out, errs := f.run(cmd, more...)
	if code != want {
		f.t.Fatalf("stickyctl %s %q: exit %d, want %d; stdout %q, stderr %q", cmd, more, code, want, out, errs)
	}
	return out
}

func TestPods(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		f := newFleet(t, b)
		if err := f.servers[1].SetLoadState(f.ctx, 7); err != nil {
			t.Fatal(err)
		}
		if err := f.servers[2].SetRoutingState(f.ctx, engine.DenyNewCall); err != nil {
			t.Fatal(err)
		}
		// The lowest pod writes the workload state on its heartbeat.
		var v podsView
		redistest.Poll(t, 10*adaptertest.Timing.Heartbeat, "the workload state is written", func() bool {
			if err := json.Unmarshal([]byte(f.mustRun(exitOK, "pods", "-svc", svc, "-o", "json")), &v); err != nil {
				t.Fatal(err)
			}
			return v.Workload.Status != "Unknown"
		})
		if v.Namespace != f.ns || v.Service != svc || len(v.Pods) != 3 || v.Workload.Status != "Ready" {
			t.Fatalf("pods: %+v", v)
		}
		want := []podRow{
			{Pod: 0, State: "Ready", Load: 0, Alive: true, Routable: true, Accepting: true},
			{Pod: 1, State: "Ready", Load: 7, Alive: true, Routable: true, Accepting: true},
			{Pod: 2, State: "DenyNewCall", Load: 0, Alive: true, Routable: true, Accepting: false},
		}
		for i, p := range v.Pods {
			age := p.AgeMS
			p.AgeMS = 0
			if p != want[i] || age < 0 || time.Duration(age)*time.Millisecond > adaptertest.Timing.Staleness {
				t.Errorf("pod %d: %+v (age %dms), want %+v", i, p, age, want[i])
			}
		}
		table := f.mustRun(exitOK, "pods", "-svc", svc)
		lines := strings.Split(strings.TrimSpace(table), "\n")
		if len(lines) != 6 || !strings.HasPrefix(lines[0], "POD  STATE") ||
			!strings.Contains(lines[3], "DenyNewCall") || !strings.HasSuffix(lines[3], "yes    yes       no") ||
			!strings.HasPrefix(lines[5], "workload  Ready (2 accepting, 3 alive)") {
			t.Errorf("pods table:\n%s", table)
		}
	})
}

func TestUser(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		f := newFleet(t, b)
		if _, err := f.servers[2].TrySetLinkedPod(f.ctx, f.ns, "u1", svc, 2); err != nil {
			t.Fatal(err)
		}
		// chat's pod 4 published once: alive for the staleness window.
		if _, err := f.st.SetServiceState(f.ctx, f.ns, "chat", 4, 0, store.Ready); err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.SetLinkedPod(f.ctx, f.ns, "u1", "chat", 4, 30); err != nil {
			t.Fatal(err)
		}
		// No pod of mail publishes: its links are found with -svc.
		if _, err := f.st.SetLinkedPod(f.ctx, f.ns, "u1", "mail", 1, 30); err != nil {
			t.Fatal(err)
		}
		var v userView
		if err := json.Unmarshal([]byte(f.mustRun(exitOK, "user", "-o", "json", "u1")), &v); err != nil {
			t.Fatal(err)
		}
		if v.UID != "u1" || len(v.Links) != 2 {
			t.Fatalf("user: %+v", v)
		}
		chat, room := v.Links[0], v.Links[1]
		if chat.Service != "chat" || chat.Pod != 4 || chat.Persistent || chat.TTLMS <= 20_000 || chat.TTLMS > 30_000 || !chat.Routable {
			t.Errorf("chat link %+v, want pod 4, temporary, up to 30s left, routable", chat)
		}
		if room != (linkRow{Service: svc, Pod: 2, Persistent: true, Routable: true}) {
			t.Errorf("room link %+v, want pod 2, persistent, routable", room)
		}
		table := f.mustRun(exitOK, "user", "-svc", svc, "u1")
		if want := "SERVICE  POD  LINK        TTL  ROUTABLE\nroom     2    persistent  -    yes\n"; table != want {
			t.Errorf("user -svc table:\n%s\nwant:\n%s", table, want)
		}
		table = f.mustRun(exitOK, "user", "-svc", "mail", "u1")
		if !regexp.MustCompile(`^SERVICE +POD +LINK +TTL +ROUTABLE\nmail +1 +temporary +(29|30)s +no\n$`).MatchString(table) {
			t.Errorf("user -svc mail table:\n%s", table)
		}
		if code, out, errs := f.run("user", "nobody"); code != exitNotFound || out != "" || !strings.Contains(errs, `user "nobody" has no link`) {
			t.Errorf("user nobody: exit %d, stdout %q, stderr %q", code, out, errs)
		}
	})
}

func TestMove(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		f := newFleet(t, b)
		if _, err := f.servers[0].TrySetLinkedPod(f.ctx, f.ns, "u1", svc, 0); err != nil {
			t.Fatal(err)
		}
		var v moveView
		if err := json.Unmarshal([]byte(f.mustRun(exitOK, "move", "-svc", svc, "-o", "json", "u1", "1")), &v); err != nil {
			t.Fatal(err)
		}
		if v != (moveView{Namespace: f.ns, Service: svc, UID: "u1", From: 0, To: 1, Persistent: true}) {
			t.Errorf("move: %+v", v)
		}
		f.wantLink("u1", 1, true)

		// A pod not accepting new users is refused, unless -force.
		if err := f.servers[2].SetRoutingState(f.ctx, engine.DenyNewCall); err != nil {
			t.Fatal(err)
		}
		if code, _, errs := f.run("move", "-svc", svc, "u1", "2"); code != exitError || !strings.Contains(errs, "pod 2 of room is not accepting new users (DenyNewCall); -force moves anyway") {
			t.Errorf("move to a draining pod: exit %d, stderr %q", code, errs)
		}
		f.wantLink("u1", 1, true)
		if out := f.mustRun(exitOK, "move", "-svc", svc, "-force", "u1", "2"); out != "moved u1 ("+f.ns+"/room) from pod 1 to pod 2\n" {
			t.Errorf("move -force: %q", out)
		}
		f.wantLink("u1", 2, true)

		// A temporary link stays temporary, with the time it had left.
		if _, err := f.st.SetLinkedPod(f.ctx, f.ns, "u2", svc, 0, 40); err != nil {
			t.Fatal(err)
		}
		f.mustRun(exitOK, "move", "-svc", svc, "u2", "1")
		f.wantLink("u2", 1, false)

		// A user with no link: not found, nothing written.
		if code, _, _ := f.run("move", "-svc", svc, "nobody", "1"); code != exitNotFound {
			t.Errorf("move nobody: exit %d", code)
		}
		f.wantLink("nobody", store.NoPod, false)
	})
}

// TestMoveRace: a move that another writer beats between its read and its
// compare-and-set writes nothing and says so; exactly one of the two wins.
func TestMoveRace(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		f := newFleet(t, b)
		if _, err := f.servers[0].TrySetLinkedPod(f.ctx, f.ns, "u1", svc, 0); err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		var theirs bool
		beforeMove = func() {
			once.Do(func() {
				var err error
				theirs, _, err = f.st.ReplaceLinkedPod(f.ctx, f.ns, "u1", svc, 0, 2, store.Persistent)
				if err != nil {
					t.Error(err)
				}
			})
		}
		defer func() { beforeMove = nil }()
		code, out, errs := f.run("move", "-svc", svc, "u1", "1")
		if !theirs || code != exitError || out != "" || !strings.Contains(errs, `user "u1" moved while this ran: linked to pod 2 now, not 0; nothing written`) {
			t.Fatalf("racing move: theirs won %v; ours exit %d, stdout %q, stderr %q", theirs, code, out, errs)
		}
		f.wantLink("u1", 2, true)
	})
}

// TestBadInput: each is a clear error with exit status 2, and writes
// nothing.
func TestBadInput(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		f := newFleet(t, b)
		if _, err := f.servers[0].TrySetLinkedPod(f.ctx, f.ns, "u1", svc, 0); err != nil {
			t.Fatal(err)
		}
		long := strings.Repeat("u", store.MaxUIDLen+1)
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"pods", "-svc", "nosuch"}, `no pod of service "nosuch" in namespace`},
			{[]string{"move", "-svc", svc, "u1", "x"}, `POD "x": want a pod index`},
			{[]string{"move", "-svc", svc, "u1", "-1"}, `POD "-1": want a pod index`},
			{[]string{"move", "-svc", svc, long, "1"}, "UID"},
			{[]string{"user", long}, "UID"},
			{[]string{"pods", "-svc", "bad svc"}, "service (-svc)"},
			{[]string{"pods"}, "-svc: give the service"},
			{[]string{"move", "-svc", svc, "u1"}, `move takes 2 arguments after its flags, got 1 ["u1"]`},
			{[]string{"pods", "-svc", svc, "extra"}, "pods takes 0 arguments"},
			{[]string{"pods", "-svc", svc, "-o", "yaml"}, `-o "yaml": want table or json`},
		} {
			code, out, errs := f.run(c.args[0], c.args[1:]...)
			if code != exitError || out != "" || !strings.HasPrefix(errs, "stickyctl: ") || !strings.Contains(errs, c.want) {
				t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and %q", c.args, code, out, errs, c.want)
			}
		}
		f.wantLink("u1", 0, true)
		// A namespace nothing was ever written in.
		var out, errw bytes.Buffer
		if code := realMain(f.ctx, append([]string{"pods", "-ns", f.ns + "x", "-svc", svc}, f.target...), &out, &errw); code != exitError ||
			!strings.Contains(errw.String(), `no pod of service "room" in namespace "`+f.ns+`x" has published a state`) {
			t.Errorf("unknown namespace: exit %d, stderr %q", code, errw.String())
		}
		for _, args := range [][]string{{"pods", "-ns", "a b", "-svc", svc}, {"pods", "-svc", svc}} {
			// An unknown namespace is checked like any name; no namespace at all too.
			var out, errw bytes.Buffer
			if code := realMain(f.ctx, append(args, f.target...), &out, &errw); code != exitError || !strings.Contains(errw.String(), "namespace (-ns)") {
				t.Errorf("%q: exit %d, stderr %q", args, code, errw.String())
			}
		}
	})
}

// TestRedisDown: a Redis nobody answers at is an error naming its address.
// TestEmbedded: -embedded is a Redis of the run's own: empty, so a user has
// no link (exit 1) and a service no pods (exit 2).
func TestEmbedded(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"user", "-embedded", "-ns", "game", "u1"}, exitNotFound, `user "u1" has no link in namespace "game"`},
		{[]string{"pods", "-embedded", "-ns", "game", "-svc", svc}, exitError, `no pod of service "room" in namespace "game"`},
	} {
		var out, errw bytes.Buffer
		if code := realMain(redistest.Ctx(t), c.args, &out, &errw); code != c.code || !strings.Contains(errw.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", c.args, code, errw.String(), c.code, c.want)
		}
	}
}

func TestRedisDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	var out, errw bytes.Buffer
	code := realMain(redistest.Ctx(t), []string{"pods", "-redis", addr, "-ns", "game", "-svc", svc}, &out, &errw)
	if want := "stickyctl: connecting to Redis at " + addr + ": "; code != exitError || !strings.HasPrefix(errw.String(), want) {
		t.Errorf("exit %d, stderr %q; want 2 and %q", code, errw.String(), want)
	}
}

// TestWatch: the watch lists the pods, then a line for each change: pod 1
// drains, pod 3 publishes once (joins) and goes stale (leaves), pod 2 stops.
func TestWatch(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		f := newFleet(t, b)
		var out lockedBuffer
		done := make(chan int, 1)
		go func() {
			args := append(append([]string{"watch"}, f.target...), "-ns", f.ns, "-svc", svc, "-every", "20ms", "-events", "7", "-o", "json",
				"-staleness", adaptertest.Timing.Staleness.String())
			done <- realMain(f.ctx, args, &out, &out)
		}()
		events := func() []event {
			var evs []event
			dec := json.NewDecoder(strings.NewReader(out.String()))
			for {
				var ev event
				if dec.Decode(&ev) != nil {
					return evs
				}
				evs = append(evs, ev)
			}
		}
		redistest.Poll(t, 5*time.Second, "the watch lists the three pods", func() bool { return len(events()) == 3 })
		if err := f.servers[1].SetRoutingState(f.ctx, engine.DenyNewCall); err != nil {
			t.Fatal(err)
		}
		redistest.Poll(t, 5*time.Second, "the watch reports pod 1's state", func() bool { return len(events()) == 4 })
		if _, err := f.st.SetServiceState(f.ctx, f.ns, svc, 3, 40, store.Ready); err != nil {
			t.Fatal(err)
		}
		redistest.Poll(t, 5*time.Second, "the watch reports pod 3 joining", func() bool { return len(events()) == 5 })
		redistest.Poll(t, 5*time.Second+adaptertest.Timing.Staleness, "the watch reports pod 3 leaving", func() bool { return len(events()) == 6 })
		stopCtx, cancel := context.WithTimeout(f.ctx, time.Second)
		defer cancel()
		_ = f.servers[2].Stop(stopCtx) // publishes Shutdown at the end: its state changes
		var code int
		select {
		case code = <-done:
		case <-f.ctx.Done():
			t.Fatalf("the watch did not end after 5 lines:\n%s", out.String())
		}
		evs := events()
		if code != exitOK || len(evs) != 7 {
			t.Fatalf("watch: exit %d, %d lines:\n%s", code, len(evs), out.String())
		}
		for i := range 3 {
			if ev := evs[i]; ev.Kind != "present" || ev.Pod != i || ev.State != "Ready" {
				t.Errorf("line %d: %+v, want pod %d present and Ready", i, ev, i)
			}
		}
		if ev := evs[3]; ev.Kind != "state" || ev.Pod != 1 || ev.From != "Ready" || ev.State != "DenyNewCall" {
			t.Errorf("line 3: %+v, want pod 1 Ready → DenyNewCall", ev)
		}
		table := f.mustRun(exitOK, "watch", "-svc", svc, "-events", "3")
		if !regexp.MustCompile(`^([0-9:.]{12} pod [012] present: (Ready|DenyNewCall|Shutdown), load 0\n){3}$`).MatchString(table) {
			t.Errorf("watch table:\n%s", table)
		}
		if ev := evs[4]; ev.Kind != "joined" || ev.Pod != 3 || ev.State != "Ready" || ev.Load != 40 {
			t.Errorf("line 4: %+v, want pod 3 joined, Ready with load 40", ev)
		}
		if ev := evs[5]; ev.Kind != "left" || ev.Pod != 3 {
			t.Errorf("line 5: %+v, want pod 3 leaving (stale)", ev)
		}
		// Stop drains first (DenyNewCall), then publishes Shutdown; the
		// watch reads every 20 ms, well within the drain window.
		if ev := evs[6]; ev.Kind != "state" || ev.Pod != 2 || ev.From != "Ready" || ev.State != "DenyNewCall" {
			t.Errorf("line 6: %+v, want pod 2 Ready → DenyNewCall (its Stop's drain)", ev)
		}
	})
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// wantLink checks uid's link to svc: pod (NoPod: none) and its kind.
func (f *fleet) wantLink(uid string, pod int, persistent bool) {
	f.t.Helper()
	links, err := f.st.UserLinks(f.ctx, f.ns, uid, []string{svc})
	if err != nil {
		f.t.Fatal(err)
	}
	switch {
	case pod == store.NoPod && len(links) != 0:
		f.t.Fatalf("%s linked: %+v, want no link", uid, links)
	case pod == store.NoPod:
	case len(links) != 1 || links[0].Pod != pod || links[0].Persistent != persistent:
		f.t.Fatalf("%s links %+v, want pod %d, persistent %v", uid, links, pod, persistent)
	}
}
