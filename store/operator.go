package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// UserLink is one link of a user as an operator sees it: the service, the
// pod, and for a temporary link the time it has left.
type UserLink struct {
	Service string
	Pod     int
	// Persistent links have no expiry (TTL 0); a temporary one expires
	// after TTL.
	Persistent bool
	TTL        time.Duration
}

// UserLinks reads uid's links to the services svcs, persistent or temporary,
// with the time each temporary one has left, in one round trip (a uid's
// link keys share a slot: one node answers). Services without a link are
// left out; the links come in the order of svcs. A value that is not a pod
// index is a *CorruptError joined in err, its service left out.
func (r *Redis) UserLinks(ctx context.Context, ns, uid string, svcs []string) ([]UserLink, error) {
	if err := r.usable(ctx); err != nil {
		return nil, err
	}
	if err := validName("namespace", ns); err != nil {
		return nil, err
	}
	if err := validUID("uid", uid); err != nil {
		return nil, err
	}
	for _, svc := range svcs {
		if err := validName("service", svc); err != nil {
			return nil, err
		}
	}
	const op = "UserLinks"
	cmds := make(rueidis.Commands, 0, 2*len(svcs))
	for _, svc := range svcs {
		key := LinkKey(ns, uid, svc)
		cmds = append(cmds, r.client.B().Get().Key(key).Build(), r.client.B().Pttl().Key(key).Build())
	}
	res := r.client.DoMulti(ctx, cmds...)
	var links []UserLink
	var errs []error
	for i, svc := range svcs {
		key := LinkKey(ns, uid, svc)
		msg, err := res[2*i].ToMessage()
		if err != nil && !rueidis.IsRedisNil(err) {
			return nil, classify(op, key, err)
		}
		pttl, err := res[2*i+1].AsInt64()
		if err != nil {
			return nil, classify(op, key, err)
		}
		pod, err := podValue(key, &msg)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if pod == NoPod || pttl == -2 {
			continue // no link, or it expired between the two reads
		}
		l := UserLink{Service: svc, Pod: pod, Persistent: pttl == -1}
		if pttl > 0 {
			l.TTL = time.Duration(pttl) * time.Millisecond
		}
		links = append(links, l)
	}
	return links, errors.Join(errs...)
}

// Services lists the services of namespace ns that have a pod-state hash
// (K3), sorted. It scans the keyspace of every node (SCAN, a page at a time):
// an operator's query, not one for a request path.
func (r *Redis) Services(ctx context.Context, ns string) ([]string, error) {
	if err := r.usable(ctx); err != nil {
		return nil, err
	}
	if err := validName("namespace", ns); err != nil {
		return nil, err
	}
	const op = "Services"
	prefix := keyPrefix + ns + stateInfix
	seen := map[string]bool{}
	for _, c := range r.nodes() {
		var cursor uint64
		for {
			e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Type("hash").Build()).AsScanEntry()
			if err != nil {
				return nil, classify(op, prefix, err)
			}
			for _, key := range e.Elements {
				// K3 ends at the tag's brace; K5 (the operators'
				// requests) carries a suffix after it.
				svc, ok := strings.CutSuffix(strings.TrimPrefix(key, prefix), "}")
				if ok && validName("service", svc) == nil {
					seen[svc] = true
				}
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	svcs := make([]string, 0, len(seen))
	for svc := range seen {
		svcs = append(svcs, svc)
	}
	slices.Sort(svcs)
	return svcs, nil
}

// nodes returns a client per node to scan: the cluster's nodes, or the one
// client of a standalone Redis.
func (r *Redis) nodes() []rueidis.Client {
	if !r.cluster {
		return []rueidis.Client{r.client}
	}
	var cs []rueidis.Client
	for _, c := range r.client.Nodes() {
		cs = append(cs, c)
	}
	return cs
}
