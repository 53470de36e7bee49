package engine

import (
	"math/bits"

	"github.com/cespare/xxhash/v2"
)

// service is one (namespace, service) pair a client has asked about. Each is
// made once per client, so cache entries point at it instead of holding the
// two names.
type service struct {
	ns, name string
	// hash seeds the hash of every cache key of this service.
	hash uint64
	// view is the service's pod-state view.
	view *view
}

// serviceHash combines the hashes of a namespace and a service name; the
// rotation keeps (a, b) and (b, a) apart.
func serviceHash(ns, name string) uint64 {
	return xxhash.Sum64String(ns) ^ bits.RotateLeft64(xxhash.Sum64String(name), 31)
}

// keyHash is the 64-bit cache key of uid in the service whose serviceHash is
// sh. Entries keep the full key, so a collision costs a miss, never a wrong pod.
func keyHash(sh uint64, uid string) uint64 {
	return mix64(xxhash.Sum64String(uid) ^ sh)
}

// mix64 is the SplitMix64 finalizer.
func mix64(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x = (x ^ x>>30) * 0xBF58476D1CE4E5B9
	x = (x ^ x>>27) * 0x94D049BB133111EB
	return x ^ x>>31
}
