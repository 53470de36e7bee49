package main

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stickyroute/stickyroute/store"
)

//go:embed console.html
var consolePage []byte

// checkServe refuses, before anything connects anywhere, a console that
// would be reachable from other hosts without a token.
func checkServe(o *opts) error {
	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", o.listen, err)
	}
	ip := net.ParseIP(host)
	loopback := host == "localhost" || (ip != nil && ip.IsLoopback())
	if !loopback && o.token == "" {
		return fmt.Errorf("-listen %s is not a loopback address: give -token, which every request must then carry", o.listen)
	}
	if o.every <= 0 || o.history < o.every {
		return errors.New("-every must be positive and -history at least -every")
	}
	return nil
}

// console serves the page and its API for the services svcs.
type console struct {
	e     *env
	svcs  []string
	token []byte
	keep  int // samples of history kept per service

	mu      sync.Mutex
	history map[string][]sample
}

// sample is the load of each alive pod of a service at one moment (Unix ms).
type sample struct {
	T     int64          `json:"t"`
	Loads map[string]int `json:"loads"`
}

// serviceState is one service as the console's API returns it.
type serviceState struct {
	podsView
	Error   string   `json:"error,omitempty"`
	History []sample `json:"history"`
}

func runServe(ctx context.Context, e *env, args []string) error {
	c := &console{e: e, token: []byte(e.o.token), keep: int(e.o.history / e.o.every), history: map[string][]sample{}}
	for _, svc := range strings.Split(e.o.svc, ",") {
		if err := store.ValidateName("service (-svc)", svc); err != nil {
			return err
		}
		c.svcs = append(c.svcs, svc)
	}
	ln, err := net.Listen("tcp", e.o.listen)
	if err != nil {
		return fmt.Errorf("-listen %s: %w", e.o.listen, err)
	}
	srv := &http.Server{Handler: c.handler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	url := "http://" + ln.Addr().String() + "/"
	if e.o.token != "" {
		url += "?token=…"
	}
	fmt.Fprintf(e.out, "console on %s (namespace %s, services %s)\n", url, e.o.ns, strings.Join(c.svcs, ", "))

	t := time.NewTicker(e.o.every)
	defer t.Stop()
	for {
		c.sample(ctx)
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
			if err := <-served; !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		case err := <-served:
			return err
		case <-t.C:
		}
	}
}

// sample reads every service's pods and keeps their loads for the chart.
func (c *console) sample(ctx context.Context) {
	for _, svc := range c.svcs {
		v, err := readPods(ctx, c.e, svc)
		if err != nil {
			continue
		}
		s := sample{T: time.Now().UnixMilli(), Loads: map[string]int{}}
		for _, p := range v.Pods {
			if p.Alive {
				s.Loads[strconv.Itoa(p.Pod)] = p.Load
			}
		}
		c.mu.Lock()
		h := append(c.history[svc], s)
		c.history[svc] = h[max(len(h)-c.keep, 0):]
		c.mu.Unlock()
	}
}

func (c *console) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
		_, _ = w.Write(consolePage)
	})
	mux.HandleFunc("GET /api/state", c.state)
	mux.HandleFunc("GET /api/user", c.user)
	mux.HandleFunc("POST /api/drain", c.request(true))
	mux.HandleFunc("POST /api/undrain", c.request(false))
	return c.guard(mux)
}

// guard checks the token on every request (in constant time), and keeps
// state-changing requests to the console's own page: JSON bodies (which a
// form on another site cannot send without the browser asking first) from
// no other origin.
func (c *console) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(c.token) > 0 {
			got := r.URL.Query().Get("token")
			if h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
				got = h
			}
			if subtle.ConstantTimeCompare([]byte(got), c.token) != 1 {
				httpError(w, http.StatusUnauthorized, "a valid token is required")
				return
			}
		}
		if r.Method == http.MethodPost {
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				httpError(w, http.StatusUnsupportedMediaType, "POST a JSON body")
				return
			}
			if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
				httpError(w, http.StatusForbidden, "cross-origin request refused")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// state answers every service's pods and load history.
func (c *console) state(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Namespace string         `json:"namespace"`
		Services  []serviceState `json:"services"`
	}{Namespace: c.e.o.ns}
	for _, svc := range c.svcs {
		v, err := readPods(r.Context(), c.e, svc)
		s := serviceState{podsView: v}
		if err != nil {
			s.Error = err.Error()
		}
		c.mu.Lock()
		s.History = append([]sample{}, c.history[svc]...)
		c.mu.Unlock()
		out.Services = append(out.Services, s)
	}
	writeJSON(w, http.StatusOK, out)
}

// user answers the links of ?uid= to the console's services.
func (c *console) user(w http.ResponseWriter, r *http.Request) {
	uid := r.URL.Query().Get("uid")
	if err := store.ValidateUID("uid", uid); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	links, err := c.e.st.UserLinks(r.Context(), c.e.o.ns, uid, c.svcs)
	if err != nil {
		httpError(w, http.StatusBadGateway, err.Error())
		return
	}
	v := userView{Namespace: c.e.o.ns, UID: uid, Links: []linkRow{}}
	for _, l := range links {
		row := linkRow{Service: l.Service, Pod: l.Pod, Persistent: l.Persistent, TTLMS: l.TTL.Milliseconds()}
		if pods, err := readPods(r.Context(), c.e, l.Service); err == nil {
			p, _ := pods.pod(l.Pod)
			row.Routable = p.Routable
		}
		v.Links = append(v.Links, row)
	}
	writeJSON(w, http.StatusOK, v)
}

// request makes (drain) or withdraws (undrain) an operator request.
func (c *console) request(drain bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Service  string `json:"service"`
			Pod      *int   `json:"pod"`
			Shutdown bool   `json:"shutdown"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<12))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil || in.Pod == nil {
			httpError(w, http.StatusBadRequest, "want {\"service\": S, \"pod\": P, \"shutdown\": false}")
			return
		}
		known := false
		for _, svc := range c.svcs {
			known = known || svc == in.Service
		}
		if !known {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("service %q is not one this console serves", in.Service))
			return
		}
		ns, pod := c.e.o.ns, *in.Pod
		v, err := readPods(r.Context(), c.e, in.Service)
		if _, ok := v.pod(pod); err == nil && !ok {
			err = fmt.Errorf("service %s has no pod %d", in.Service, pod)
		}
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		var msg string
		switch {
		case drain:
			state := store.DenyNewCall
			if in.Shutdown {
				state = store.Shutdown
			}
			err = c.e.st.RequestRoutingState(r.Context(), ns, in.Service, pod, state)
			msg = fmt.Sprintf("pod %d of %s: %s requested", pod, in.Service, state)
		default:
			var had bool
			had, err = c.e.st.ClearRoutingRequest(r.Context(), ns, in.Service, pod)
			msg = fmt.Sprintf("pod %d of %s: request withdrawn", pod, in.Service)
			if err == nil && !had {
				msg = fmt.Sprintf("pod %d of %s had no request", pod, in.Service)
			}
		}
		if err != nil {
			httpError(w, http.StatusBadGateway, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"message": msg})
	}
}
