package adapter

import (
	"errors"
	"strconv"
	"strings"
)

// DefaultUIDKey is the request metadata key the adapters read a call's user
// (uid) from when configured with none.
const DefaultUIDKey = "stickyroute-uid"

// ErrNoPod is returned by Template for a template without {pod}.
var ErrNoPod = errors.New("pod address template has no {pod}")

// Template returns the address function of a template: {ns}, {svc} and {pod}
// are replaced by ns, svc and the pod index, as in the StatefulSet address
// "{svc}-{pod}.{svc}.{ns}.svc:9000". The template must contain {pod}; the
// error otherwise wraps ErrNoPod and quotes the template.
func Template(tmpl, ns, svc string) (func(pod int) string, error) {
	if !strings.Contains(tmpl, "{pod}") {
		return nil, errors.Join(ErrNoPod, errors.New("template "+strconv.Quote(tmpl)))
	}
	parts := strings.Split(strings.NewReplacer("{ns}", ns, "{svc}", svc).Replace(tmpl), "{pod}")
	return func(pod int) string { return strings.Join(parts, strconv.Itoa(pod)) }, nil
}

// StatefulSetPod reads the pod index from a StatefulSet pod's address,
// "<name>-<index>[.<more labels>][:port]" ("room-3.room.game.svc:9000" is
// pod 3). An address without one (a bare IP, a name without a numeric
// suffix, a suffix with a leading zero) gives ok false.
func StatefulSetPod(addr string) (pod int, ok bool) {
	host := addr
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	label, _, _ := strings.Cut(host, ".")
	i := strings.LastIndexByte(label, '-')
	if i <= 0 || i == len(label)-1 {
		return 0, false
	}
	digits := label[i+1:]
	if digits != "0" && digits[0] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
