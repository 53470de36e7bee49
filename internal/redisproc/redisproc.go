// Package redisproc runs Redis server processes for fault tests: a dedicated
// redis-server a test may stop, kill, restart or flush without disturbing the
// servers other tests share, and the nodes of the failover cluster that
// scripts/redis.sh starts (3 masters, 3 replicas), which a test may kill and
// start again. Everything listens on loopback.
package redisproc

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// Environment variables scripts/redis.sh exports for the failover cluster.
const (
	EnvHAAddrs = "STICKYROUTE_HA_CLUSTER_ADDRS"
	EnvHADir   = "STICKYROUTE_HA_CLUSTER_DIR"
	envRequire = "STICKYROUTE_REQUIRE_SERVERS"
)

// missing skips t, or fails it when the servers are required.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(envRequire) == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// Server is a redis-server process of one test.
type Server struct {
	// Addr is its host:port.
	Addr string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs a redis-server on a free loopback port, in a directory of the
// test, with extra arguments (for example "--appendonly", "yes"). It is
// killed when t ends.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	s := New(t, extra...)
	s.Restart(t)
	return s
}

// New is Start without starting: the address is reserved for the server,
// which runs from the first Restart on.
func New(t testing.TB, extra ...string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		missing(t, "redis-server is not installed: run make test (it installs it)")
	}
	port := freePort(t)
	dir := t.TempDir()
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port)}
	s.args = append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--protected-mode", "no",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log")}, extra...)
	t.Cleanup(func() { s.Kill(t) })
	return s
}

// freePort returns a loopback port nothing listens on, whose cluster bus port
// (+clusterBusOffset) is free too, both picked below the kernel's ephemeral
// range (as scripts/redis.sh does) when there is room. A port from that
// range can be taken by any outgoing connection of the tests between this
// check and the server's bind, or while a test has the server down before
// it starts it again on the same port: a quiet fresh-clone run failed when
// a cluster-enabled server on 32042 could not bind its bus port 42042 and
// exited. Ports scripts/redis.sh picked for its servers (and their cluster
// bus ports) are left alone even while free: a failover test may have that
// node down.
func freePort(t testing.TB) int {
	t.Helper()
	lo, hi := portFloor, ephemeralLow()-clusterBusOffset
	taken := scriptPorts()
	for tries := 0; hi-lo >= 1000 && tries < 200; tries++ {
		p := lo + rand.IntN(hi-lo)
		bus := p + clusterBusOffset
		if taken[p] || taken[p-clusterBusOffset] || taken[bus] || taken[bus+clusterBusOffset] {
			continue
		}
		if listenFree(p) && listenFree(bus) {
			return p
		}
	}
	// No room below the range, or nothing free there: let the kernel pick.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// listenFree reports whether nothing listens on loopback port p.
func listenFree(p int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// clusterBusOffset is how far above its port a cluster node listens for the
// cluster bus.
const clusterBusOffset = 10000

// scriptPorts returns the ports scripts/redis.sh picked, from the list it
// keeps in its directory (one port a line), or none when it did not run.
func scriptPorts() map[int]bool {
	ports := map[int]bool{}
	dir := os.Getenv(EnvHADir)
	if dir == "" {
		return ports
	}
	b, err := os.ReadFile(filepath.Join(dir, "ports"))
	if err != nil {
		return ports
	}
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			ports[p] = true
		}
	}
	return ports
}

// portFloor is the lowest port freePort picks, above the well-known and
// most registered services' ports.
const portFloor = 10000

// ephemeralLow is the first port of the kernel's ephemeral range, or 32768
// (Linux's default) when it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// Restart starts the server again (or the first time) with its port,
// directory and arguments, and waits until it answers PING.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if s.Running() {
		t.Fatalf("redis-server on %s is running already", s.Addr)
	}
	cmd := exec.Command("redis-server", s.args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting redis-server on %s: %v", s.Addr, err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	done := s.done
	go func() { _ = cmd.Wait(); close(done) }()
	WaitPing(t, s.Addr)
}

// Running reports whether the process runs.
func (s *Server) Running() bool {
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Stop ends the server as an operator would (SIGTERM: it saves what its
// persistence settings say, then exits) and waits for it.
func (s *Server) Stop(t testing.TB) { s.signal(t, syscall.SIGTERM) }

// Kill ends the server at once (SIGKILL) and waits for it.
func (s *Server) Kill(t testing.TB) { s.signal(t, syscall.SIGKILL) }

func (s *Server) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if !s.Running() {
		return
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Do runs one command on the server with a plain connection.
func Do(t testing.TB, addr string, args ...string) rueidis.RedisResult {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true,
		DisableCache: true, DisableRetry: true})
	if err != nil {
		t.Fatalf("connecting to %s: %v", addr, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Do(ctx, c.B().Arbitrary(args[0]).Args(args[1:]...).Build())
}

// WaitPing waits up to 10 s until addr answers PING.
func WaitPing(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(addr) == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis on %s does not answer PING: %v", addr, ping(addr))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(buf[:n]), "+PONG") {
		return errors.New(strings.TrimSpace(string(buf[:n])))
	}
	return nil
}

// Cluster is the failover cluster scripts/redis.sh started.
type Cluster struct {
	// Nodes are its six nodes, masters and replicas.
	Nodes []*Node
}

// Node is one node of the failover cluster.
type Node struct {
	// Addr is its host:port.
	Addr string
	dir  string
}

// HA returns the failover cluster, or skips t (fails it when the servers
// are required) when scripts/redis.sh did not start one.
func HA(t testing.TB) *Cluster {
	t.Helper()
	addrs, dir := os.Getenv(EnvHAAddrs), os.Getenv(EnvHADir)
	if addrs == "" || dir == "" {
		missing(t, "%s or %s is not set: run make test (it starts the cluster with replicas)", EnvHAAddrs, EnvHADir)
	}
	c := &Cluster{}
	for _, a := range strings.Split(addrs, ",") {
		_, port, _ := net.SplitHostPort(a)
		c.Nodes = append(c.Nodes, &Node{Addr: a, dir: filepath.Join(dir, "ha-"+port)})
	}
	return c
}

// Addrs returns the nodes' addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// Role returns "master" or "slave" as the node says, or "" when it does not answer.
func (n *Node) Role(t testing.TB) string {
	t.Helper()
	if ping(n.Addr) != nil {
		return ""
	}
	arr, err := Do(t, n.Addr, "ROLE").ToArray()
	if err != nil || len(arr) == 0 {
		return ""
	}
	r, _ := arr[0].ToString()
	return r
}

// Kill ends the node's process at once (SIGKILL) and waits until it is gone.
func (n *Node) Kill(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "redis.pid"))
	if err != nil {
		t.Fatalf("node %s: %v", n.Addr, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("node %s: pid file: %v", n.Addr, err)
	}
	// Only the redis-server serving this node's port.
	cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	_, port, _ := net.SplitHostPort(n.Addr)
	if !strings.Contains(string(cmdline), "redis-server") || !strings.Contains(string(cmdline), ":"+port) {
		t.Fatalf("node %s: pid %d is not its redis-server (%q)", n.Addr, pid, cmdline)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("node %s: pid %d still alive after SIGKILL", n.Addr, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Start starts the node again with the arguments scripts/redis.sh used, and
// waits until it answers PING. It rejoins the cluster from its nodes.conf.
func (n *Node) Start(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "args"))
	if err != nil {
		t.Fatalf("node %s: %v", n.Addr, err)
	}
	args := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	// The node daemonizes (as the script started it): Run returns at once.
	if out, err := exec.Command("redis-server", args...).CombinedOutput(); err != nil {
		t.Fatalf("node %s: redis-server: %v: %s", n.Addr, err, out)
	}
	WaitPing(t, n.Addr)
}

// WaitHealthy waits up to within until every node answers, the cluster state
// is ok everywhere, there are 3 masters each with a replica in sync, and every
// node's view of who is a master agrees with the nodes' own roles (after a
// failover, a restarted master rejoins as a replica some gossip rounds before
// the others stop listing it as a master: a busy machine saw a test send it a
// master's command).
func (c *Cluster) WaitHealthy(t testing.TB, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var why string
	for {
		if why = c.unhealthy(t); why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("failover cluster not healthy after %v: %s", within, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) unhealthy(t testing.TB) string {
	masters, synced := 0, 0
	master := map[string]bool{}
	for _, n := range c.Nodes {
		if err := ping(n.Addr); err != nil {
			return n.Addr + " does not answer: " + err.Error()
		}
		info, _ := Do(t, n.Addr, "CLUSTER", "INFO").ToString()
		if !strings.Contains(info, "cluster_state:ok") {
			return n.Addr + " cluster_state is not ok"
		}
		repl, _ := Do(t, n.Addr, "INFO", "replication").ToString()
		switch {
		case strings.Contains(repl, "role:master"):
			masters++
			master[n.Addr] = true
		case strings.Contains(repl, "master_link_status:up"):
			synced++
		}
	}
	if masters != 3 || synced != 3 {
		return strconv.Itoa(masters) + " masters and " + strconv.Itoa(synced) + " replicas in sync"
	}
	for _, n := range c.Nodes {
		txt, _ := Do(t, n.Addr, "CLUSTER", "NODES").ToString()
		for _, line := range strings.Split(strings.TrimSpace(strings.TrimPrefix(txt, "txt:")), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			if strings.Contains(f[2], "fail") || strings.Contains(f[2], "master") != master[addr] {
				return n.Addr + " lists " + addr + " as " + f[2]
			}
		}
	}
	return ""
}
