package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/adapter/adaptertest"
	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

// published polls pods until pod publishes anew after since (Redis's clock,
// Unix ms), and checks that this next publish, within a heartbeat, is
// already want: the server applies a request on its next heartbeat.
func (f *fleet) published(pod int, want string, since int64) podRow {
	f.t.Helper()
	var row podRow
	redistest.Poll(f.t, 5*adaptertest.Timing.Heartbeat+time.Second, fmt.Sprintf("pod %d publishes after %d", pod, since), func() bool {
		v := f.pods()
		row = v.Pods[pod]
		return v.RedisTime-row.AgeMS > since
	})
	if row.State != want {
		f.t.Fatalf("pod %d's first publish after the request: %+v, want %s", pod, row, want)
	}
	return row
}

// pods reads pods as JSON.
func (f *fleet) pods() podsView {
	f.t.Helper()
	var v podsView
	if err := json.Unmarshal([]byte(f.mustRun(exitOK, "pods", "-svc", svc, "-o", "json")), &v); err != nil {
		f.t.Fatal(err)
	}
	return v
}

// TestDrain: drain makes a request pods shows at once; the server publishes
// it within a heartbeat and a client stops placing new users there; undrain
// withdraws it and the pod takes users again.
func TestDrain(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		f := newFleet(t, b)
		c, err := engine.NewClient(engine.ClientConfig{Store: f.st, Timing: adaptertest.Timing})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()

		out := f.mustRun(exitOK, "drain", "-svc", svc, "1")
		if want := "pod 1 of " + f.ns + "/room: DenyNewCall requested; its server applies it on its next heartbeat\n"; out != want {
			t.Errorf("drain: %q, want %q", out, want)
		}
		at := f.pods().RedisTime
		row := f.published(1, "DenyNewCall", at)
		if row.Requested != "DenyNewCall" || row.Accepting || !row.Routable {
			t.Errorf("drained pod: %+v", row)
		}
		if got := f.servers[1].GetRoutingState(); got != engine.Ready {
			t.Errorf("the server's own state %v, want Ready: the request is applied, not adopted", got)
		}
		table := f.mustRun(exitOK, "pods", "-svc", svc)
		if !regexp.MustCompile(`\n1 +DenyNewCall +DenyNewCall +0 `).MatchString(table) {
			t.Errorf("pods table does not show the request:\n%s", table)
		}
		// The client sees the pod take nobody new within its refresh.
		redistest.Poll(t, 5*adaptertest.Timing.Heartbeat, "the client sees pod 1 not accepting", func() bool {
			return !c.States().IsPodAvailable(f.ns, svc, 1)
		})
		for i := range 30 {
			pod, err := c.ComputeLinkedPod(f.ctx, f.ns, fmt.Sprintf("new%d", i), svc)
			if err != nil || pod == 1 {
				t.Fatalf("new user %d placed on %d (%v) while pod 1 is drained", i, pod, err)
			}
		}

		var rv requestView
		if err := json.Unmarshal([]byte(f.mustRun(exitOK, "undrain", "-svc", svc, "-o", "json", "1")), &rv); err != nil ||
			rv != (requestView{Namespace: f.ns, Service: svc, Pod: 1, Withdrawn: true}) {
			t.Errorf("undrain: %+v (%v)", rv, err)
		}
		at = f.pods().RedisTime
		if row := f.published(1, "Ready", at); row.Requested != "" || !row.Accepting {
			t.Errorf("undrained pod: %+v", row)
		}
		if code, _, errs := f.run("undrain", "-svc", svc, "1"); code != exitNotFound || !strings.Contains(errs, "has no request to withdraw") {
			t.Errorf("second undrain: exit %d, stderr %q", code, errs)
		}

		var dv requestView
		if err := json.Unmarshal([]byte(f.mustRun(exitOK, "drain", "-svc", svc, "-shutdown", "-o", "json", "2")), &dv); err != nil ||
			dv != (requestView{Namespace: f.ns, Service: svc, Pod: 2, Requested: "Shutdown"}) {
			t.Errorf("drain -shutdown: %+v (%v)", dv, err)
		}
		at = f.pods().RedisTime
		if row := f.published(2, "Shutdown", at); row.Requested != "Shutdown" || row.Routable {
			t.Errorf("shut down pod: %+v", row)
		}
		if out := f.mustRun(exitOK, "undrain", "-svc", svc, "2"); out != "pod 2 of "+f.ns+"/room: request withdrawn; its server publishes its own state on its next heartbeat\n" {
			t.Errorf("undrain table: %q", out)
		}
		f.mustRun(exitOK, "drain", "-svc", svc, "-shutdown", "2")
		if code, _, errs := f.run("drain", "-svc", svc, "9"); code != exitError || !strings.Contains(errs, "service room has no pod 9") {
			t.Errorf("drain of a pod that does not exist: exit %d, stderr %q", code, errs)
		}
		reqs, err := f.st.RoutingRequests(f.ctx, f.ns, svc)
		if err != nil || len(reqs) != 1 || reqs[2] != store.Shutdown {
			t.Errorf("requests %v (%v), want only pod 2's Shutdown", reqs, err)
		}
	})
}

// TestServe drives the console's HTTP API on loopback with a token: a
// request without it or with a wrong one is refused and changes nothing;
// with it, the state reads and drain/undrain work.
func TestServe(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		f := newFleet(t, b)
		if _, err := f.servers[0].TrySetLinkedPod(f.ctx, f.ns, "u1", svc, 0); err != nil {
			t.Fatal(err)
		}
		base := startConsole(t, f, "-token", "s3cret")

		call := func(method, path, tok, ctype, body string) (int, string) {
			t.Helper()
			req, err := http.NewRequestWithContext(f.ctx, method, base+path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			if ctype != "" {
				req.Header.Set("Content-Type", ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		const drain1 = `{"service": "room", "pod": 1}`
		for _, c := range []struct{ method, path, tok, ctype, body string }{
			{"GET", "/", "", "", ""},
			{"GET", "/api/state", "", "", ""},
			{"GET", "/api/state", "wrong", "", ""},
			{"POST", "/api/drain", "", "application/json", drain1},
			{"POST", "/api/drain", "s3cre", "application/json", drain1},
			{"POST", "/api/drain", "s3cret0", "application/json", drain1},
		} {
			if code, body := call(c.method, c.path, c.tok, c.ctype, c.body); code != http.StatusUnauthorized || !strings.Contains(body, "a valid token is required") {
				t.Errorf("%s %s with token %q: %d %s, want 401", c.method, c.path, c.tok, code, body)
			}
		}
		if code, _ := call("POST", "/api/drain", "s3cret", "application/x-www-form-urlencoded", "service=room&pod=1"); code != http.StatusUnsupportedMediaType {
			t.Errorf("form POST: %d, want 415", code)
		}
		if reqs, err := f.st.RoutingRequests(f.ctx, f.ns, svc); err != nil || len(reqs) != 0 {
			t.Fatalf("refused requests wrote %v (%v)", reqs, err)
		}

		if code, body := call("GET", "/?token=s3cret", "", "", ""); code != http.StatusOK || !strings.Contains(body, "<title>stickyroute console</title>") {
			t.Errorf("page with ?token: %d, %.80q", code, body)
		} else if strings.Contains(body, " src=") || strings.Contains(body, "<link") || strings.Contains(body, "@import") ||
			strings.Count(body, "http://")+strings.Count(body, "https://") != strings.Count(body, "http://www.w3.org/2000/svg") {
			t.Errorf("the page loads something from elsewhere")
		}
		code, body := call("GET", "/api/state", "s3cret", "", "")
		var st struct {
			Namespace string
			Services  []serviceState
		}
		if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil || st.Namespace != f.ns || len(st.Services) != 1 || len(st.Services[0].Pods) != 3 {
			t.Fatalf("state: %d %v %s", code, err, body)
		}
		if code, body := call("POST", "/api/drain", "s3cret", "application/json", drain1); code != http.StatusOK || !strings.Contains(body, "pod 1 of room: DenyNewCall requested") {
			t.Errorf("drain: %d %s", code, body)
		}
		if reqs, _ := f.st.RoutingRequests(f.ctx, f.ns, svc); len(reqs) != 1 || reqs[1] != store.DenyNewCall {
			t.Errorf("requests after drain: %v", reqs)
		}
		f.published(1, "DenyNewCall", f.pods().RedisTime)
		if code, body := call("POST", "/api/undrain", "s3cret", "application/json", drain1); code != http.StatusOK || !strings.Contains(body, "request withdrawn") {
			t.Errorf("undrain: %d %s", code, body)
		}
		if reqs, _ := f.st.RoutingRequests(f.ctx, f.ns, svc); len(reqs) != 0 {
			t.Errorf("requests after undrain: %v", reqs)
		}
		if code, body := call("POST", "/api/drain", "s3cret", "application/json", `{"service": "room", "pod": 7}`); code != http.StatusBadRequest || !strings.Contains(body, "service room has no pod 7") {
			t.Errorf("drain of pod 7: %d %s", code, body)
		}
		if code, body := call("GET", "/api/user?uid=u1", "s3cret", "", ""); code != http.StatusOK || !strings.Contains(body, `"pod":0,"persistent":true`) {
			t.Errorf("user: %d %s", code, body)
		}
	})
}

// startConsole runs serve on a free loopback port until the test ends and
// returns its base URL.
func startConsole(t *testing.T, f *fleet, more ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(f.ctx)
	var out lockedBuffer
	done := make(chan int, 1)
	args := append(append([]string{"serve"}, f.target...), "-ns", f.ns, "-svc", svc, "-listen", "127.0.0.1:0", "-every", "100ms")
	go func() { done <- realMain(ctx, append(args, more...), &out, &out) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("serve ended with %d: %s", code, out.String())
		}
	})
	addr := regexp.MustCompile(`console on http://([0-9.:]+)/`)
	var base string
	redistest.Poll(t, 5*time.Second, "the console listens", func() bool {
		if m := addr.FindStringSubmatch(out.String()); m != nil {
			base = "http://" + m[1]
		}
		return base != ""
	})
	return base
}

// TestServeRefusesOpenAddress: a console on an address other hosts reach,
// without a token, does not start and sends nothing to Redis.
func TestServeRefusesOpenAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = c.Close()
		}
	}()
	defer ln.Close()
	for _, listen := range []string{"0.0.0.0:0", ":0", "192.0.2.1:8080"} {
		var out lockedBuffer
		code := realMain(redistest.Ctx(t), []string{"serve", "-redis", ln.Addr().String(), "-ns", "game", "-svc", svc, "-listen", listen}, &out, &out)
		if code != exitError || !strings.Contains(out.String(), "is not a loopback address: give -token") {
			t.Errorf("-listen %s: exit %d, %q", listen, code, out.String())
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("%d connections reached the Redis address", n)
	}
}
