package slot

import "testing"

// The expected slots are the ones a real Redis Cluster answers to CLUSTER KEYSLOT.
func TestOf(t *testing.T) {
	cases := []struct {
		key  string
		want uint16
	}{
		{"123456789", 12739}, // CRC16-XMODEM check value 0x31C3 = 12739
		{"foo", 12182},
		{"{user1000}.following", 3443},
		{"{user1000}.followers", 3443},
		{"foo{}{bar}", 8363},    // "{}" is not a tag: the whole key is hashed
		{"foo{{bar}}zap", 4015}, // tag is "{bar"
		{"foo{bar}{zap}", 5061}, // first tag wins: "bar"
		{"sf:{ns:lk:42}svc", Of("ns:lk:42")},
		{"", 0},
	}
	for _, c := range cases {
		if got := Of(c.key); got != c.want {
			t.Errorf("Of(%q) = %d, want %d", c.key, got, c.want)
		}
	}
}
