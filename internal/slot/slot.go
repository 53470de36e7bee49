// Package slot computes the Redis Cluster hash slot of a key: CRC16 (XMODEM)
// of the key's hash tag, modulo 16384, as the cluster specification defines it.
// The store uses it to group a batch per slot; tests use it to check that the
// two link keys of one uid always share a slot.
package slot

// Count is the number of hash slots of a Redis Cluster.
const Count = 16384

// table is the CRC16-XMODEM (polynomial 0x1021) lookup table, built once.
var table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// CRC16 returns the CRC16-XMODEM checksum of s.
func CRC16(s string) uint16 {
	var c uint16
	for i := 0; i < len(s); i++ {
		c = c<<8 ^ table[byte(c>>8)^s[i]]
	}
	return c
}

// Of returns the hash slot of key. When key holds a non-empty hash tag (the
// bytes between the first '{' and the next '}'), only the tag is hashed.
func Of(key string) uint16 {
	return CRC16(Tag(key)) % Count
}

// Tag returns the part of key that Redis Cluster hashes: the non-empty text
// between the first '{' and the first '}' after it, or the whole key.
func Tag(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] != '{' {
			continue
		}
		for j := i + 1; j < len(key); j++ {
			if key[j] == '}' {
				if j == i+1 {
					return key // "{}" is not a tag
				}
				return key[i+1 : j]
			}
		}
		return key
	}
	return key
}
