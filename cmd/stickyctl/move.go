package main

import (
	"context"
	"fmt"

	"github.com/stickyroute/stickyroute/store"
)

// beforeMove, when set (by a test), runs between reading the user's link and
// the compare-and-set that moves it: where a concurrent move races.
var beforeMove func()

type moveView struct {
	Namespace  string `json:"namespace"`
	Service    string `json:"service"`
	UID        string `json:"uid"`
	From       int    `json:"from"`
	To         int    `json:"to"`
	Persistent bool   `json:"persistent"`
}

func runMove(ctx context.Context, e *env, args []string) error {
	ns := e.o.ns
	uid, err := uidArg(args[0])
	if err != nil {
		return err
	}
	pod, err := podArgNum(args[1])
	if err != nil {
		return err
	}
	svc, err := e.service()
	if err != nil {
		return err
	}
	links, err := e.st.UserLinks(ctx, ns, uid, []string{svc})
	if err != nil {
		return err
	}
	if len(links) == 0 {
		return notFound("user %q has no link to service %q in namespace %q: nothing to move", uid, svc, ns)
	}
	cur := links[0]
	if !e.o.force {
		pods, err := readPods(ctx, e, svc)
		if err != nil {
			return err
		}
		if err := accepting(pods, pod); err != nil {
			return fmt.Errorf("%w; -force moves anyway", err)
		}
	}
	ttl := store.Persistent
	if !cur.Persistent {
		ttl = max(int((cur.TTL.Milliseconds()+999)/1000), 1) // what it had left, in whole seconds
	}
	if beforeMove != nil {
		beforeMove()
	}
	moved, now, err := e.st.ReplaceLinkedPod(ctx, ns, uid, svc, cur.Pod, pod, ttl)
	if err != nil {
		return err
	}
	if !moved {
		return fmt.Errorf("user %q moved while this ran: linked to pod %d now, not %d; nothing written", uid, now, cur.Pod)
	}
	v := moveView{Namespace: ns, Service: svc, UID: uid, From: cur.Pod, To: pod, Persistent: cur.Persistent}
	return e.emit(v, func(p func(string, ...any)) {
		p("moved %s (%s/%s) from pod %d to pod %d", uid, ns, svc, cur.Pod, pod)
	})
}

// accepting returns nil when pod is among pods and takes new users, else an
// error saying why not.
func accepting(v podsView, pod int) error {
	p, ok := v.pod(pod)
	switch {
	case !ok:
		return fmt.Errorf("service %s has no pod %d", v.Service, pod)
	case !p.Accepting && !p.Alive:
		return fmt.Errorf("pod %d of %s is not accepting new users (dead: no publish for %dms)", pod, v.Service, p.AgeMS)
	case !p.Accepting:
		return fmt.Errorf("pod %d of %s is not accepting new users (%s)", pod, v.Service, p.State)
	}
	return nil
}
