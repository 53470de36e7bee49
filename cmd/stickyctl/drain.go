package main

import (
	"context"
	"fmt"

	"github.com/stickyroute/stickyroute/store"
)

type requestView struct {
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Pod       int    `json:"pod"`
	// Requested is the state requested, empty after undrain.
	Requested string `json:"requested"`
	// Withdrawn says undrain found a request to withdraw.
	Withdrawn bool `json:"withdrawn,omitempty"`
}

// podArg reads the POD argument of a service's command and checks that the
// service has that pod.
func podArg(ctx context.Context, e *env, args []string) (string, int, error) {
	pod, err := podArgNum(args[0])
	if err != nil {
		return "", 0, err
	}
	svc, err := e.service()
	if err != nil {
		return "", 0, err
	}
	v, err := readPods(ctx, e, svc)
	if err != nil {
		return "", 0, err
	}
	if _, ok := v.pod(pod); !ok {
		return "", 0, fmt.Errorf("service %s has no pod %d", svc, pod)
	}
	return svc, pod, nil
}

func runDrain(ctx context.Context, e *env, args []string) error {
	svc, pod, err := podArg(ctx, e, args)
	if err != nil {
		return err
	}
	state := store.DenyNewCall
	if e.o.shutdown {
		state = store.Shutdown
	}
	if err := e.st.RequestRoutingState(ctx, e.o.ns, svc, pod, state); err != nil {
		return err
	}
	return drained(e, svc, pod, state, false)
}

func runUndrain(ctx context.Context, e *env, args []string) error {
	svc, pod, err := podArg(ctx, e, args)
	if err != nil {
		return err
	}
	had, err := e.st.ClearRoutingRequest(ctx, e.o.ns, svc, pod)
	if err != nil {
		return err
	}
	if !had {
		return notFound("pod %d of %s/%s has no request to withdraw", pod, e.o.ns, svc)
	}
	return drained(e, svc, pod, store.RoutingUnknown, true)
}

// drained reports a request made (state) or withdrawn.
func drained(e *env, svc string, pod int, state store.RoutingState, withdrawn bool) error {
	v := requestView{Namespace: e.o.ns, Service: svc, Pod: pod, Withdrawn: withdrawn}
	if !withdrawn {
		v.Requested = state.String()
	}
	return e.emit(v, func(p func(string, ...any)) {
		if withdrawn {
			p("pod %d of %s/%s: request withdrawn; its server publishes its own state on its next heartbeat", pod, e.o.ns, svc)
			return
		}
		p("pod %d of %s/%s: %s requested; its server applies it on its next heartbeat", pod, e.o.ns, svc, state)
	})
}
