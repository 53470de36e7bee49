// Command client is the sticky-demo's client: it sends counter calls for
// many users through a stickygrpc router and checks that every user's
// counter stays consistent: each reply's count is exactly one more than the
// user's previous one, and a user is served by one pod at a time, moving at
// most once (off a drained pod, whose count the next pod carries on). It
// exits 1 when any user breaks that, or when no user moved at all (the drain
// did not happen).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	stickygrpc "github.com/stickyroute/stickyroute/contrib/grpc"
	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/examples/sticky-demo/counter"
	"github.com/stickyroute/stickyroute/store"
)

func main() {
	fleet := counter.FleetFlags()
	podList := flag.String("pods", "", "pod addresses: 0=host:port,1=host:port,...")
	users := flag.Int("users", 100, "number of users")
	duration := flag.Duration("duration", 6*time.Second, "how long to send calls")
	interval := flag.Duration("interval", 20*time.Millisecond, "pause between two calls of a user")
	flag.Parse()
	log.SetPrefix("client: ")
	log.SetFlags(log.Lmicroseconds)
	ok, err := run(fleet.Redis, fleet.NS, fleet.Svc, *podList, *users, *duration, *interval)
	if err != nil {
		log.Fatal(err)
	}
	if !ok {
		os.Exit(1)
	}
}

// history is what the client saw of one user.
type history struct {
	calls int64 // successful calls = the count the user's pod should hold
	pods  []int // pods that served the user, in order, without repeats
	bad   []string
}

func run(redisAddr, ns, svc, podList string, users int, duration, interval time.Duration) (bool, error) {
	addrs := map[int]string{}
	for _, kv := range strings.Split(podList, ",") {
		k, v, ok := strings.Cut(kv, "=")
		pod, err := strconv.Atoi(k)
		if !ok || err != nil {
			return false, fmt.Errorf("bad -pods entry %q", kv)
		}
		addrs[pod] = v
	}
	st, err := store.Dial(store.DialConfig{Addrs: []string{redisAddr}, ClientName: "sticky-demo-client"})
	if err != nil {
		return false, err
	}
	defer st.Close()
	ec, err := engine.NewClient(engine.ClientConfig{Store: st, Timing: counter.Timing, TempLinkTTL: time.Minute})
	if err != nil {
		return false, err
	}
	defer ec.Close()
	r, err := stickygrpc.New(stickygrpc.Config{
		Client: ec, Namespace: ns, Service: svc,
		Addr: func(pod int) string { return addrs[pod] },
	})
	if err != nil {
		return false, err
	}
	defer r.Close()
	conn, err := grpc.NewClient(r.Target(), append(r.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return false, err
	}
	defer conn.Close()

	var calls, retries atomic.Int64
	hist := make([]history, users)
	end := time.Now().Add(duration)
	var wg sync.WaitGroup
	for i := range users {
		// New users keep arriving through the first half of the run.
		start := time.Duration(i) * duration / time.Duration(2*users)
		wg.Go(func() {
			time.Sleep(start)
			h := &hist[i]
			uid := "user" + strconv.Itoa(i)
			for time.Now().Before(end) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				reply, err := counter.Incr(ctx, conn, uid)
				cancel()
				calls.Add(1)
				switch code := status.Code(err); {
				case err == nil:
					h.calls++
					if reply.Count != h.calls {
						h.bad = append(h.bad, fmt.Sprintf("pod %d answered count %d, want %d", reply.Pod, reply.Count, h.calls))
						h.calls = reply.Count
					}
					if n := len(h.pods); n == 0 || h.pods[n-1] != reply.Pod {
						if slices.Contains(h.pods, reply.Pod) {
							h.bad = append(h.bad, fmt.Sprintf("back on pod %d after %v", reply.Pod, h.pods))
						}
						h.pods = append(h.pods, reply.Pod)
					}
				case code == codes.Aborted:
					// The pod does not hold the user (handed off, or draining):
					// forget the cached link so the next call asks again.
					ec.CacheExpired(ns, uid, svc)
					retries.Add(1)
				case code == codes.Unavailable:
					retries.Add(1) // a pod is on its way out; the engine will say where next
				default:
					var re *stickygrpc.RouteError
					if errors.As(err, &re) {
						h.bad = append(h.bad, "cannot route: "+err.Error())
					} else {
						h.bad = append(h.bad, "call failed: "+err.Error())
					}
				}
				time.Sleep(interval)
			}
		})
	}
	wg.Wait()

	ok := true
	moved, final := 0, map[int]int{}
	var served int64
	for i, h := range hist {
		served += h.calls
		if len(h.pods) > 2 {
			h.bad = append(h.bad, fmt.Sprintf("served by pods %v: moved more than once", h.pods))
		}
		if len(h.pods) == 2 {
			moved++
		}
		if len(h.pods) > 0 {
			final[h.pods[len(h.pods)-1]]++
		}
		for _, b := range h.bad {
			ok = false
			log.Printf("INCONSISTENT user%d: %s", i, b)
		}
	}
	log.Printf("%d users, %d calls (%d counted, %d retried), %d users moved off a drained pod, users per pod at the end %v",
		users, calls.Load(), served, retries.Load(), moved, final)
	switch {
	case !ok:
		log.Printf("FAIL: some counters are inconsistent")
	case moved == 0:
		log.Printf("FAIL: no user moved: was a pod drained?")
		ok = false
	default:
		log.Printf("OK: every user's counter is consistent; no user was served by two pods at once, and each moved at most once, its count carried over")
	}
	return ok, nil
}
