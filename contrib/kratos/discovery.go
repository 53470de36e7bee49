package stickykratos

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-kratos/kratos/v2/registry"

	"github.com/stickyroute/stickyroute/adapter"
	"github.com/stickyroute/stickyroute/engine"
)

// Template returns the address function of a template: {ns}, {svc} and
// {pod} are replaced by ns, svc and the pod index, as in the StatefulSet
// address "{svc}-{pod}.{svc}.{ns}.svc:9000". The template must contain {pod}.
// It is adapter.Template, shared with the gRPC adapter.
func Template(tmpl, ns, svc string) (func(pod int) string, error) {
	return adapter.Template(tmpl, ns, svc)
}

// Discovery returns a registry.Discovery of the router's service: one
// instance per pod the engine sees as routable, at the address addr gives
// (host:port), its pod under MetadataKey. Watchers see the engine's routing
// changes (and look again every second, as a backstop). Any service name is
// answered with the router's service.
func (r *Router) Discovery(addr func(pod int) string) registry.Discovery {
	return &discovery{r: r, addr: addr}
}

type discovery struct {
	r    *Router
	addr func(pod int) string
}

var (
	_ registry.Discovery = (*discovery)(nil)
	_ registry.Watcher   = (*watcher)(nil)
)

// GetService implements registry.Discovery.
func (d *discovery) GetService(ctx context.Context, _ string) ([]*registry.ServiceInstance, error) {
	pods, err := d.r.states.RoutablePods(ctx, d.r.cfg.Namespace, d.r.cfg.Service)
	if err != nil {
		return nil, err
	}
	return d.instances(pods), nil
}

func (d *discovery) instances(pods []int) []*registry.ServiceInstance {
	out := make([]*registry.ServiceInstance, len(pods))
	for i, pod := range pods {
		p := strconv.Itoa(pod)
		out[i] = &registry.ServiceInstance{
			ID: d.r.cfg.Service + "-" + p, Name: d.r.cfg.Service,
			Metadata:  map[string]string{MetadataKey: p},
			Endpoints: []string{"grpc://" + d.addr(pod)},
		}
	}
	return out
}

// Watch implements registry.Discovery.
func (d *discovery) Watch(ctx context.Context, _ string) (registry.Watcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{d: d, ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1)}
	ns, svc := d.r.cfg.Namespace, d.r.cfg.Service
	w.unsubscribe = d.r.states.Subscribe(func(e engine.Event) {
		if e.Namespace == ns && e.Service == svc {
			select {
			case w.kick <- struct{}{}:
			default:
			}
		}
	})
	return w, nil
}

// watcher reports the routable pods when they change.
type watcher struct {
	d           *discovery
	ctx         context.Context
	cancel      context.CancelFunc
	kick        chan struct{}
	unsubscribe func()
	stopOnce    sync.Once
	// last is the latest list Next returned; only Next touches it (the
	// Kratos resolver calls Next from one goroutine).
	last  []int
	first bool
}

// Next implements registry.Watcher: the pods at the first call, then each
// time they change; context.Canceled once stopped.
func (w *watcher) Next() ([]*registry.ServiceInstance, error) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return nil, w.ctx.Err()
		case <-w.kick:
		case <-t.C:
		}
		t.Reset(time.Second)
		ctx, cancel := context.WithTimeout(w.ctx, time.Second)
		pods, err := w.d.r.states.RoutablePods(ctx, w.d.r.cfg.Namespace, w.d.r.cfg.Service)
		cancel()
		if err != nil {
			if w.ctx.Err() != nil {
				return nil, w.ctx.Err()
			}
			return nil, err
		}
		if !w.first || !slices.Equal(pods, w.last) {
			w.first, w.last = true, pods
			return w.d.instances(pods), nil
		}
	}
}

// Stop implements registry.Watcher.
func (w *watcher) Stop() error {
	w.stopOnce.Do(func() {
		w.cancel()
		w.unsubscribe()
	})
	return nil
}
