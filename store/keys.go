package store

import (
	"math"
	"strconv"
	"strings"
	"unsafe"
)

// Limits and sentinels of the wire format (SPEC §2–3).
const (
	// NoPod is the pod index meaning "no pod": a missing link, no owner.
	// Pod 0 is a normal pod.
	NoPod = -1
	// MaxPod is the largest pod index accepted. Larger values found in Redis are
	// treated as corrupt, never truncated into a wrong pod.
	MaxPod = math.MaxInt32
	// Persistent is the ttl of a persistent link: no expiry, listed in the uid's
	// link directory. Any positive ttl is a temporary link's lifetime in seconds.
	Persistent = -1
	// MaxTTL is the largest ttl accepted, in seconds (about 68 years).
	MaxTTL = math.MaxInt32
	// MaxNameLen is the longest namespace or service name accepted.
	MaxNameLen = 128
	// MaxUIDLen is the longest uid accepted, in bytes.
	MaxUIDLen = 512
)

// Key prefixes of the Java framework's layout, kept byte for byte.
const (
	keyPrefix      = "sf:{"
	linkInfix      = ":lk:"
	stateInfix     = ":state:"
	workloadInfix  = ":workload:"
	controlSuffix  = "ctl"
	escapedBytes   = "{}%"
	escapeWidth    = 3 // "%7B"
	upperHexDigits = "0123456789ABCDEF"
)

// LinkKey returns K1, the string key holding the pod of uid's link to svc:
// sf:{<ns>:lk:<escaped uid>}<svc>, where the uid's bytes '{', '}' and '%' are
// written %7B, %7D and %25, so that no uid breaks a key and a uid's two link
// keys share a cluster slot. The arguments must be valid (ValidateName,
// ValidateUID); the store's operations validate them before building keys.
func LinkKey(ns, uid, svc string) string {
	return buildUIDKey(ns, uid, svc)
}

// DirKey returns K2, the hash listing uid's persistent links:
// sf:{<ns>:lk:<escaped uid>}. It shares its hash slot with every LinkKey of uid.
func DirKey(ns, uid string) string {
	return buildUIDKey(ns, uid, "")
}

// StateKey returns K3, the hash of the pod states of svc: sf:{<ns>:state:<svc>}.
func StateKey(ns, svc string) string {
	return keyPrefix + ns + stateInfix + svc + "}"
}

// ControlKey returns K5, the hash of the routing states an operator requested
// for the pods of svc: sf:{<ns>:state:<svc>}ctl. Its hash tag is StateKey's,
// so it shares K3's cluster slot and a pod's publish reads both at once.
func ControlKey(ns, svc string) string {
	return StateKey(ns, svc) + controlSuffix
}

// WorkloadKey returns K4, the workload state of svc: sf:{<ns>:workload:<svc>}.
func WorkloadKey(ns, svc string) string {
	return keyPrefix + ns + workloadInfix + svc + "}"
}

// buildUIDKey writes sf:{ns:lk:escaped(uid)}svc with a single allocation.
func buildUIDKey(ns, uid, svc string) string {
	var b strings.Builder
	b.Grow(uidKeyLen(ns, uid, svc))
	writeUIDKey(&b, ns, uid, svc)
	return b.String()
}

// uidKeyLen is the length of buildUIDKey(ns, uid, svc).
func uidKeyLen(ns, uid, svc string) int {
	return len(keyPrefix) + len(ns) + len(linkInfix) + len(uid) + 1 + len(svc) +
		countEscaped(uid)*(escapeWidth-1)
}

// writeUIDKey appends the key to b.
func writeUIDKey(b *strings.Builder, ns, uid, svc string) {
	special := countEscaped(uid)
	b.WriteString(keyPrefix)
	b.WriteString(ns)
	b.WriteString(linkInfix)
	if special == 0 {
		b.WriteString(uid)
	} else {
		for i := 0; i < len(uid); i++ {
			c := uid[i]
			if strings.IndexByte(escapedBytes, c) < 0 {
				b.WriteByte(c)
				continue
			}
			b.WriteByte('%')
			b.WriteByte(upperHexDigits[c>>4])
			b.WriteByte(upperHexDigits[c&0xF])
		}
	}
	b.WriteByte('}')
	b.WriteString(svc)
}

// linkKeys builds the LinkKey of every uid into one buffer: the keys are
// strings over slices of it.
func linkKeys(ns string, uids []string, svc string) []string {
	keys := make([]string, len(uids))
	buildLinkKeys(nil, keys, ns, uids, svc)
	return keys
}

// buildLinkKeys sets keys[i] to the LinkKey of uids[i] (len(keys) must be
// len(uids)), writing them into buf when it is large enough, else into a new
// buffer, and returns the buffer used. The shared prefix sf:{<ns>:lk: and
// suffix }<svc> are copied whole and each key is an unsafe.String over its
// bytes, so a reused buf must hold no key still in use: the caller owns it.
// One sizing pass counts the bytes to escape, so the buffer is exactly sized.
func buildLinkKeys(buf []byte, keys []string, ns string, uids []string, svc string) []byte {
	fixed := len(keyPrefix) + len(ns) + len(linkInfix) + 1 + len(svc)
	n, special := fixed*len(uids), 0
	for _, uid := range uids {
		n += len(uid)
		special += countEscaped(uid)
	}
	n += special * (escapeWidth - 1)
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	// The prefix is written for the first key and copied from there.
	pos := 0
	for i, uid := range uids {
		start := pos
		if i == 0 {
			pos += copy(buf[pos:], keyPrefix)
			pos += copy(buf[pos:], ns)
			pos += copy(buf[pos:], linkInfix)
		} else {
			pos += copy(buf[pos:], buf[:len(keyPrefix)+len(ns)+len(linkInfix)])
		}
		if special == 0 || countEscaped(uid) == 0 {
			pos += copy(buf[pos:], uid)
		} else {
			pos = len(appendEscapedUID(buf[:pos], uid))
		}
		buf[pos] = '}'
		pos++
		pos += copy(buf[pos:], svc)
		keys[i] = unsafe.String(&buf[start], pos-start)
	}
	return buf
}

// appendEscapedUID appends uid with '{', '}' and '%' escaped (SPEC §3.1).
func appendEscapedUID(buf []byte, uid string) []byte {
	for i := 0; i < len(uid); i++ {
		c := uid[i]
		if !escaped[c] {
			buf = append(buf, c)
			continue
		}
		buf = append(buf, '%', upperHexDigits[c>>4], upperHexDigits[c&0xF])
	}
	return buf
}

// escaped marks the bytes of escapedBytes.
var escaped = func() (t [256]bool) {
	for i := 0; i < len(escapedBytes); i++ {
		t[escapedBytes[i]] = true
	}
	return t
}()

func countEscaped(uid string) int {
	n := 0
	for i := 0; i < len(uid); i++ {
		if escaped[uid[i]] {
			n++
		}
	}
	return n
}

// ParseLinkKey is the inverse of LinkKey: it returns the namespace, uid and
// service a K1 key was built from, and false for any string LinkKey cannot
// produce. Clients use it to map an invalidated key back to a cache entry.
func ParseLinkKey(key string) (ns, uid, svc string, ok bool) {
	rest, found := strings.CutPrefix(key, keyPrefix)
	if !found {
		return "", "", "", false
	}
	i := strings.IndexByte(rest, ':')
	if i < 0 {
		return "", "", "", false
	}
	ns, rest = rest[:i], rest[i:]
	if rest, found = strings.CutPrefix(rest, linkInfix); !found {
		return "", "", "", false
	}
	j := strings.IndexByte(rest, '}')
	if j < 0 {
		return "", "", "", false
	}
	escaped, svc := rest[:j], rest[j+1:]
	uid, ok = unescapeUID(escaped)
	if !ok || validName("namespace", ns) != nil || validName("service", svc) != nil ||
		validUID("uid", uid) != nil {
		return "", "", "", false
	}
	return ns, uid, svc, true
}

// unescapeUID reverses the escaping of LinkKey; any other use of '%' is refused.
func unescapeUID(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 {
		return s, strings.IndexByte(s, '{') < 0
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{':
			return "", false
		case c != '%':
			b.WriteByte(c)
		case strings.HasPrefix(s[i:], "%7B"):
			b.WriteByte('{')
			i += escapeWidth - 1
		case strings.HasPrefix(s[i:], "%7D"):
			b.WriteByte('}')
			i += escapeWidth - 1
		case strings.HasPrefix(s[i:], "%25"):
			b.WriteByte('%')
			i += escapeWidth - 1
		default:
			return "", false
		}
	}
	return b.String(), true
}

// validName checks a namespace or service name: [A-Za-z0-9._-]{1,128}.
func validName(arg, v string) error {
	if v == "" {
		return invalid(arg, "must not be empty")
	}
	if len(v) > MaxNameLen {
		return invalid(arg, "longer than "+strconv.Itoa(MaxNameLen)+" bytes")
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == '-' {
			continue
		}
		return invalid(arg, "byte "+strconv.Quote(string(c))+" at offset "+strconv.Itoa(i)+
			" is outside [A-Za-z0-9._-]")
	}
	return nil
}

// validUID checks a uid: 1..512 bytes, any bytes.
func validUID(arg, uid string) error {
	if uid == "" {
		return invalid(arg, "must not be empty")
	}
	if len(uid) > MaxUIDLen {
		return invalid(arg, "longer than "+strconv.Itoa(MaxUIDLen)+" bytes")
	}
	return nil
}

func validPod(arg string, pod int) error {
	if pod < 0 || pod > MaxPod {
		return invalid(arg, "pod "+strconv.Itoa(pod)+" is outside 0.."+strconv.Itoa(MaxPod))
	}
	return nil
}

func validTTL(ttl int) error {
	if ttl == Persistent || 0 < ttl && ttl <= MaxTTL {
		return nil
	}
	return invalid("ttl", strconv.Itoa(ttl)+" is neither -1 (persistent) nor 1.."+strconv.Itoa(MaxTTL)+" seconds")
}

// serviceArgs validates the arguments shared by every service-wide operation.
func serviceArgs(ns, svc string) error {
	if err := validName("namespace", ns); err != nil {
		return err
	}
	return validName("service", svc)
}

// linkArgs validates the arguments shared by every link operation.
func linkArgs(ns, uid, svc string) error {
	if err := validName("namespace", ns); err != nil {
		return err
	}
	if err := validUID("uid", uid); err != nil {
		return err
	}
	return validName("service", svc)
}

// batchArgs validates the arguments of a lookup of many uids' links to svc;
// a bad uid is named by its index, uids[i].
func batchArgs(ns string, uids []string, svc string) error {
	if err := serviceArgs(ns, svc); err != nil {
		return err
	}
	for i, uid := range uids {
		if err := validUID("uid", uid); err != nil {
			err.(*InvalidArgumentError).Arg = "uids[" + strconv.Itoa(i) + "]"
			return err
		}
	}
	return nil
}

// ValidateName reports whether v is a valid namespace or service name; arg
// names the argument in the returned *InvalidArgumentError.
func ValidateName(arg, v string) error { return validName(arg, v) }

// ValidateUID reports whether uid is a valid uid (1..512 bytes); arg names the
// argument in the returned *InvalidArgumentError.
func ValidateUID(arg, uid string) error { return validUID(arg, uid) }

// parsePod reads a pod index written in decimal, as Redis holds it. It takes no
// sign, no spaces and nothing above MaxPod, so a damaged value can never be
// read as some other pod.
func parsePod(s string) (int, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i] - '0'
		if c > 9 {
			return 0, false
		}
		n = n*10 + int(c)
	}
	if n > MaxPod {
		return 0, false
	}
	return n, true
}
