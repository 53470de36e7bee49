package store

import (
	"strings"
	"testing"
)

// TestLinkKeysMatchLinkKey: the batch's shared-buffer key builder writes
// exactly the keys LinkKey writes, escapes included (some uids outgrow the
// plain sizing, some come after one that did).
func TestLinkKeysMatchLinkKey(t *testing.T) {
	uids := []string{"a", "u{1}", "plain", "%", "{}%{}%", "x", strings.Repeat("{", MaxUIDLen), "end"}
	keys := linkKeys("ns", uids, "svc")
	if len(keys) != len(uids) {
		t.Fatalf("%d keys for %d uids", len(keys), len(uids))
	}
	for i, uid := range uids {
		if want := LinkKey("ns", uid, "svc"); keys[i] != want {
			t.Errorf("uid %q: key %q, want %q", uid, keys[i], want)
		}
	}
}
