package embedded

import (
	"fmt"

	"github.com/alicebob/miniredis/v2"

	"github.com/stickyroute/stickyroute/store"
)

// Server is an in-process Redis listening on a loopback port. It satisfies
// store.EmbeddedRedis.
type Server struct {
	m    *miniredis.Miniredis
	addr string // kept: miniredis forgets its address when closed
}

// Start starts an embedded Redis on a free loopback port. Its TTLs follow the
// wall clock, as on a real server. Close stops it.
func Start() (*Server, error) {
	m := miniredis.NewMiniRedis()
	m.ClockTTL(true)
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("embedded: starting the in-process redis: %w", err)
	}
	return &Server{m: m, addr: m.Addr()}, nil
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.addr }

// Close stops the server and drops its data.
func (s *Server) Close() { s.m.Close() }

// Miniredis returns the underlying miniredis server, for tests that need to
// reach into it (to break it, to read its keys).
func (s *Server) Miniredis() *miniredis.Miniredis { return s.m }

// Dial starts an embedded Redis and returns a store on it that owns it
// (Close stops both). cfg.Addrs must be empty; the other settings apply as in
// store.Dial.
func Dial(cfg store.DialConfig) (*store.Redis, error) {
	if len(cfg.Addrs) != 0 || cfg.Embedded != nil {
		return nil, &store.InvalidArgumentError{Arg: "Addrs", Reason: "embedded.Dial dials its own server: leave Addrs and Embedded empty"}
	}
	srv, err := Start()
	if err != nil {
		return nil, err
	}
	cfg.Embedded = srv
	return store.Dial(cfg)
}

// MustDial is Dial for examples, tests and demos: it panics if the embedded
// Redis cannot start or the store cannot dial it.
func MustDial(cfg store.DialConfig) *store.Redis {
	s, err := Dial(cfg)
	if err != nil {
		panic(err)
	}
	return s
}
