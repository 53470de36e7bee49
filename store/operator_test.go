package store_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/internal/redistest"
	"github.com/stickyroute/stickyroute/store"
)

// operatorCases cover the reads an operator's tool makes.
var operatorCases = []redistest.Case[*env]{
	{Name: "UserLinks/persistent_temporary_and_none", Run: func(e *env) {
		if _, err := e.s.SetLinkedPod(e.ctx, e.ns, "u{1}", "room", 3, store.Persistent); err != nil {
			e.t.Fatal(err)
		}
		if _, err := e.s.SetLinkedPod(e.ctx, e.ns, "u{1}", "chat", 5, 60); err != nil {
			e.t.Fatal(err)
		}
		links, err := e.s.UserLinks(e.ctx, e.ns, "u{1}", []string{"chat", "mail", "room"})
		if err != nil {
			e.t.Fatal(err)
		}
		if len(links) != 2 {
			e.t.Fatalf("links %+v, want chat and room", links)
		}
		chat, room := links[0], links[1]
		if chat.Service != "chat" || chat.Pod != 5 || chat.Persistent || chat.TTL <= 50*time.Second || chat.TTL > 60*time.Second {
			e.t.Errorf("chat link %+v, want pod 5, temporary, up to 60s left", chat)
		}
		if room != (store.UserLink{Service: "room", Pod: 3, Persistent: true}) {
			e.t.Errorf("room link %+v, want pod 3, persistent", room)
		}
	}},
	{Name: "UserLinks/corrupt_value_reported_beside_the_others", Run: func(e *env) {
		if _, err := e.s.SetLinkedPod(e.ctx, e.ns, "u1", "room", 2, store.Persistent); err != nil {
			e.t.Fatal(err)
		}
		e.set(store.LinkKey(e.ns, "u1", "chat"), "pod-x")
		links, err := e.s.UserLinks(e.ctx, e.ns, "u1", []string{"chat", "room"})
		var ce *store.CorruptError
		if !errors.As(err, &ce) || ce.Key != store.LinkKey(e.ns, "u1", "chat") {
			e.t.Fatalf("err %v, want a *CorruptError naming chat's key", err)
		}
		if len(links) != 1 || links[0].Service != "room" || links[0].Pod != 2 {
			e.t.Errorf("links %+v, want room's beside the error", links)
		}
	}},
	{Name: "UserLinks/bad_arguments", Run: func(e *env) {
		for _, c := range []struct {
			ns, uid string
			svcs    []string
			arg     string
		}{
			{"", "u1", []string{"room"}, "namespace"},
			{e.ns, strings.Repeat("u", store.MaxUIDLen+1), []string{"room"}, "uid"},
			{e.ns, "u1", []string{"room", "bad svc"}, "service"},
		} {
			_, err := e.s.UserLinks(e.ctx, c.ns, c.uid, c.svcs)
			var ia *store.InvalidArgumentError
			if !errors.As(err, &ia) || ia.Arg != c.arg {
				e.t.Errorf("UserLinks(%q, %d-byte uid, %q) = %v, want an invalid %s", c.ns, len(c.uid), c.svcs, err, c.arg)
			}
		}
	}},
	{Name: "Services/listed_from_the_pod_states", Run: func(e *env) {
		for _, svc := range []string{"room", "chat", "mail"} {
			if _, err := e.s.SetServiceState(e.ctx, e.ns, svc, 0, 0, store.Ready); err != nil {
				e.t.Fatal(err)
			}
		}
		// A link and a workload key of the namespace are not services.
		if _, err := e.s.SetLinkedPod(e.ctx, e.ns, "u1", "other", 1, store.Persistent); err != nil {
			e.t.Fatal(err)
		}
		got, err := e.s.Services(e.ctx, e.ns)
		if err != nil {
			e.t.Fatal(err)
		}
		if want := []string{"chat", "mail", "room"}; !reflect.DeepEqual(got, want) {
			e.t.Errorf("Services = %q, want %q", got, want)
		}
		if got, err := e.s.Services(e.ctx, e.ns+"x"); err != nil || len(got) != 0 {
			e.t.Errorf("Services of an unknown namespace = %q, %v; want none", got, err)
		}
	}},
}

func TestOperatorReads(t *testing.T) { redistest.EachCase(t, operatorCases, newEnv) }
