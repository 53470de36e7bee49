// Command server is one pod of the sticky-demo: it serves the counter API on
// loopback, publishes its state with an engine.Server, and claims each user
// it serves with a persistent link, so no other pod can serve that user.
//
// On SIGTERM it drains: it stops taking new users (DenyNewCall), keeps
// serving its users until the clients have seen that, then hands each user
// off (saves the user's count to Redis and removes the link), and shuts down
// when the engine's drain window ends. A user's next call lands on another
// pod, which claims it and carries on from the saved count.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/rueidis"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/examples/sticky-demo/counter"
	"github.com/stickyroute/stickyroute/store"
)

func main() {
	fleet := counter.FleetFlags()
	pod := flag.Int("pod", 0, "this pod's index")
	addrFile := flag.String("addr-file", "", "write the listening address here once serving")
	flag.Parse()
	log.SetPrefix("pod " + strconv.Itoa(*pod) + ": ")
	log.SetFlags(log.Lmicroseconds)
	if err := run(fleet.Redis, fleet.NS, fleet.Svc, *pod, *addrFile); err != nil {
		log.Fatal(err)
	}
}

func run(redisAddr, ns, svc string, pod int, addrFile string) error {
	if redisAddr == "" {
		return errors.New("no Redis: pass -redis or set STICKYROUTE_REDIS_ADDR")
	}
	rdb, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{redisAddr}, DisableCache: true})
	if err != nil {
		return err
	}
	defer rdb.Close()
	srv, err := engine.NewServer(engine.ServerConfig{
		Store: store.New(rdb), Namespace: ns, Service: svc, Pod: pod, Timing: counter.Timing,
		MaxRequest: 300 * time.Millisecond, Drain: 1500 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	p := &podServer{rdb: rdb, srv: srv, ns: ns, svc: svc, pod: pod, users: map[string]*user{}}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	gs := grpc.NewServer()
	gs.RegisterService(&counter.ServiceDesc, p)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		return err
	}
	if addrFile != "" {
		if err := os.WriteFile(addrFile+".tmp", []byte(lis.Addr().String()), 0o644); err != nil {
			return err
		}
		if err := os.Rename(addrFile+".tmp", addrFile); err != nil {
			return err
		}
	}
	log.Printf("serving on %s", lis.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	select {
	case <-sig:
	case err := <-served:
		return err
	}

	log.Printf("draining: DenyNewCall, then handing %d users off", p.count())
	p.draining.Store(true)
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop(context.Background()) }()
	// Hand users off once every client has seen DenyNewCall (two refresh
	// periods), so none of them places a user back here.
	time.Sleep(2 * counter.Timing.Refresh)
	moved, err := p.handOff()
	if err != nil {
		log.Printf("handing off: %v", err)
	}
	err = <-stopped
	gs.GracefulStop()
	log.Printf("stopped: %d users handed off, %d calls for unknown users refused while draining", moved, p.refused.Load())
	return err
}

// podServer is the pod's counter service.
type podServer struct {
	rdb      rueidis.Client
	srv      *engine.Server
	ns, svc  string
	pod      int
	draining atomic.Bool
	refused  atomic.Int64

	mu    sync.Mutex // guards users
	users map[string]*user
}

// user is the state the pod holds for one user.
type user struct {
	mu    sync.Mutex // held through a call and through the hand-off
	count int64
	gone  bool // handed off: calls are answered "moved"
}

func (p *podServer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.users)
}

// savedKey holds a handed-off user's count, for the next pod.
func (p *podServer) savedKey(uid string) string {
	return "stickydemo:{" + p.ns + ":" + p.svc + "}:count:" + uid
}

// Incr implements counter.Server.
func (p *podServer) Incr(ctx context.Context, req *counter.IncrRequest) (*counter.IncrReply, error) {
	u, err := p.user(ctx, req.UID)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.gone {
		return nil, p.notHere(ctx, req.UID, "moved")
	}
	u.count++
	return &counter.IncrReply{Pod: p.pod, Count: u.count}, nil
}

// user returns the state of uid, claiming the user on its first call: a
// persistent link to this pod, and the count a previous pod saved.
func (p *podServer) user(ctx context.Context, uid string) (*user, error) {
	p.mu.Lock()
	u, ok := p.users[uid]
	p.mu.Unlock()
	if ok {
		return u, nil
	}
	if p.draining.Load() {
		p.refused.Add(1)
		return nil, p.notHere(ctx, uid, "draining")
	}
	if _, err := p.srv.TrySetLinkedPod(ctx, p.ns, uid, p.svc, p.pod); err != nil {
		var ce *engine.ClaimedError
		if errors.As(err, &ce) {
			// Misrouted: the user lives elsewhere. Never touch its state here.
			return nil, status.Errorf(codes.Aborted, "user %s belongs to pod %d", uid, ce.Owner)
		}
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	saved, err := p.rdb.Do(ctx, p.rdb.B().Get().Key(p.savedKey(uid)).Build()).AsInt64()
	if err != nil && !rueidis.IsRedisNil(err) {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if u, ok := p.users[uid]; ok { // a concurrent first call won
		return u, nil
	}
	u = &user{count: saved}
	p.users[uid] = u
	return u, nil
}

// notHere answers a call for a user this pod does not serve, and removes
// the user's link if it still points here, so the client places it anew.
func (p *podServer) notHere(ctx context.Context, uid, why string) error {
	if _, err := p.srv.RemoveLinkedPodWithId(ctx, p.ns, uid, p.svc, p.pod, store.Persistent); err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Aborted, "stickydemo: "+why)
}

// handOff saves each user's count and removes its link, holding the user so
// that no call runs meanwhile.
func (p *podServer) handOff() (int, error) {
	p.mu.Lock()
	users := make(map[string]*user, len(p.users))
	for uid, u := range p.users {
		users[uid] = u
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	moved := 0
	for uid, u := range users {
		u.mu.Lock()
		err := p.rdb.Do(ctx, p.rdb.B().Set().Key(p.savedKey(uid)).Value(strconv.FormatInt(u.count, 10)).Ex(10*time.Minute).Build()).Error()
		if err == nil {
			_, err = p.srv.RemoveLinkedPodWithId(ctx, p.ns, uid, p.svc, p.pod, store.Persistent)
		}
		if err == nil {
			u.gone = true
			moved++
		}
		u.mu.Unlock()
		if err != nil {
			return moved, fmt.Errorf("user %s: %w", uid, err)
		}
	}
	return moved, nil
}
