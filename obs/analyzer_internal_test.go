package obs

import "testing"

func TestSeconds(t *testing.T) {
	for v, want := range map[float64]string{
		2.3412: "2.34s", 0.2351: "235ms", 0.0853043: "85.3ms", 0.001: "1ms", 0.000412: "412µs", 125.4: "2m5s", 12.34: "12.3s",
	} {
		if got := seconds(v); got != want {
			t.Errorf("seconds(%v) = %q, want %q", v, got, want)
		}
	}
}
