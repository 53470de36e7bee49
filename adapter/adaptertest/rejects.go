package adaptertest

import (
	"strings"
	"testing"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

// TestRejects: newRouter, the adapter's New given a client, a namespace and
// a service, refuses a config without a client, with a bad namespace or
// without a service, with an error naming the field.
func TestRejects(t *testing.T, newRouter func(c *engine.Client, ns, svc string) error) {
	t.Helper()
	st, err := embedded.Dial(store.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := engine.NewClient(engine.ClientConfig{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		name    string
		c       *engine.Client
		ns, svc string
	}{
		{"Client", nil, "g", "s"},
		{"Namespace", c, "a b", "s"},
		{"Service", c, "g", ""},
	} {
		if err := newRouter(tc.c, tc.ns, tc.svc); err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("config missing %s: %v", tc.name, err)
		}
	}
}
