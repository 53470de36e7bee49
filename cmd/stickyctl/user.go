package main

import (
	"context"
	"slices"
	"time"
)

// linkRow is one link as user shows it.
type linkRow struct {
	Service    string `json:"service"`
	Pod        int    `json:"pod"`
	Persistent bool   `json:"persistent"`
	// TTLMS is the time a temporary link has left (0 for a persistent one).
	TTLMS    int64 `json:"ttl_ms"`
	Routable bool  `json:"routable"`
}

type userView struct {
	Namespace string    `json:"namespace"`
	UID       string    `json:"uid"`
	Links     []linkRow `json:"links"`
}

func runUser(ctx context.Context, e *env, args []string) error {
	ns := e.o.ns
	uid, err := uidArg(args[0])
	if err != nil {
		return err
	}
	// The services to look at: the one asked for, or every service of the
	// namespace with pods, and those the user's persistent links name.
	var svcs []string
	if e.o.svc != "" {
		svc, err := e.service()
		if err != nil {
			return err
		}
		svcs = []string{svc}
	} else {
		if svcs, err = e.st.Services(ctx, ns); err != nil {
			return err
		}
		persistent, err := e.st.GetLinkService(ctx, ns, uid)
		if err != nil {
			return err
		}
		for svc := range persistent {
			if !slices.Contains(svcs, svc) {
				svcs = append(svcs, svc)
			}
		}
		slices.Sort(svcs)
	}
	links, err := e.st.UserLinks(ctx, ns, uid, svcs)
	if err != nil {
		return err
	}
	if len(links) == 0 {
		return notFound("user %q has no link in namespace %q (services looked at: %q)", uid, ns, svcs)
	}
	v := userView{Namespace: ns, UID: uid}
	for _, l := range links {
		r := linkRow{Service: l.Service, Pod: l.Pod, Persistent: l.Persistent, TTLMS: l.TTL.Milliseconds()}
		if pods, err := readPods(ctx, e, l.Service); err == nil {
			p, _ := pods.pod(l.Pod)
			r.Routable = p.Routable
		}
		v.Links = append(v.Links, r)
	}
	return e.emit(v, func(p func(string, ...any)) {
		p("SERVICE\tPOD\tLINK\tTTL\tROUTABLE")
		for _, r := range v.Links {
			kind, ttl := "temporary", (time.Duration(r.TTLMS) * time.Millisecond).Round(time.Second).String()
			if r.Persistent {
				kind, ttl = "persistent", "-"
			}
			p("%s\t%d\t%s\t%s\t%s", r.Service, r.Pod, kind, ttl, yes(r.Routable))
		}
	})
}
