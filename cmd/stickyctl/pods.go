package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stickyroute/stickyroute/store"
)

// podRow is one pod as pods shows it.
type podRow struct {
	Pod int `json:"pod"`
	// State is the routing state the pod published: the more restrictive
	// of its own and the one an operator requested (drain, SPEC §7), which
	// is Requested (empty when none); with no request, its own.
	State     string `json:"state"`
	Requested string `json:"requested"`
	Load      int    `json:"load"`
	// AgeMS is the age of the last publish, on the Redis server's clock.
	AgeMS     int64 `json:"age_ms"`
	Alive     bool  `json:"alive"`
	Routable  bool  `json:"routable"`
	Accepting bool  `json:"accepting"`
}

// podsView is the whole answer of pods.
type podsView struct {
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	// RedisTime is the Redis server's clock when the pods were read (Unix
	// ms): a pod published at RedisTime - AgeMS.
	RedisTime int64    `json:"redis_time_ms"`
	Workload  workload `json:"workload"`
	Pods      []podRow `json:"pods"`
	// Skipped are the fields of the pod-state hash that are not pod states.
	Skipped []string `json:"skipped,omitempty"`
}

type workload struct {
	Status    string `json:"status"`
	Accepting int    `json:"accepting"`
	Alive     int    `json:"alive"`
}

// pod returns the row of pod n, if the service has one.
func (v podsView) pod(n int) (podRow, bool) {
	for _, p := range v.Pods {
		if p.Pod == n {
			return p, true
		}
	}
	return podRow{}, false
}

// readPods reads the service's pods and judges each as the engine does:
// alive while its last publish is within the staleness window, routable
// when alive and not Shutdown, accepting when alive and Ready. A service
// no pod ever published is an error naming it.
func readPods(ctx context.Context, e *env, svc string) (podsView, error) {
	ns := e.o.ns
	v := podsView{Namespace: ns, Service: svc, Pods: []podRow{}}
	ss, err := e.st.GetServiceState(ctx, ns, svc)
	if err != nil {
		return v, err
	}
	v.RedisTime = ss.Now
	if len(ss.Pods) == 0 && len(ss.Skipped) == 0 {
		return v, fmt.Errorf("no pod of service %q in namespace %q has published a state (is the namespace or the service misspelled?)", svc, ns)
	}
	for _, p := range ss.Pods {
		age := max(ss.Now-p.Updated, 0)
		r := podRow{Pod: p.Pod, State: p.Routing.String(), Load: p.Load, AgeMS: age,
			Alive: time.Duration(age)*time.Millisecond <= e.o.staleness}
		r.Routable = r.Alive && p.Routing != store.Shutdown
		r.Accepting = r.Alive && p.Routing == store.Ready
		v.Pods = append(v.Pods, r)
	}
	for _, c := range ss.Skipped {
		v.Skipped = append(v.Skipped, c.Error())
	}
	reqs, err := e.st.RoutingRequests(ctx, ns, svc)
	var ce *store.CorruptError
	if err != nil && !errors.As(err, &ce) {
		return v, err
	}
	for i := range v.Pods {
		if r, ok := reqs[v.Pods[i].Pod]; ok {
			v.Pods[i].Requested = r.String()
		}
	}
	if err != nil {
		v.Skipped = append(v.Skipped, err.Error())
	}
	w, err := e.st.GetWorkloadState(ctx, ns, svc)
	if err != nil && !errors.As(err, &ce) {
		return v, err
	}
	v.Workload = workload{Status: w.Status.String(), Accepting: w.Accepting, Alive: w.Alive}
	return v, nil
}

func runPods(ctx context.Context, e *env, args []string) error {
	svc, err := e.service()
	if err != nil {
		return err
	}
	v, err := readPods(ctx, e, svc)
	if err != nil {
		return err
	}
	return e.emit(v, func(p func(string, ...any)) {
		p("POD\tSTATE\tREQUESTED\tLOAD\tAGE\tALIVE\tROUTABLE\tACCEPTING")
		for _, r := range v.Pods {
			req := r.Requested
			if req == "" {
				req = "-"
			}
			p("%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s", r.Pod, r.State, req, r.Load, time.Duration(r.AgeMS)*time.Millisecond, yes(r.Alive), yes(r.Routable), yes(r.Accepting))
		}
		p("")
		p("workload\t%s (%d accepting, %d alive)", v.Workload.Status, v.Workload.Accepting, v.Workload.Alive)
		for _, s := range v.Skipped {
			p("skipped\t%s", s)
		}
	})
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
