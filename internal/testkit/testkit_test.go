package testkit

import (
	"errors"
	"sync/atomic"
	"testing"
)

func TestProgram(t *testing.T) {
	p := NewProgram([]byte{7, 9})
	var got []byte
	for p.More() {
		got = append(got, p.Next())
	}
	if string(got) != "\x07\x09" || p.Next() != 0 || p.More() {
		t.Fatalf("read %v then %d; want [7 9] then zeros", got, p.Next())
	}
}

func TestAppendUID(t *testing.T) {
	for _, c := range []struct {
		i    int32
		want string
	}{{0, "u00000000000"}, {7, "u00000000007"}, {1234567890, "u01234567890"}} {
		if got := string(AppendUID([]byte("x"), c.i)); got != "x"+c.want {
			t.Errorf("AppendUID(%d) = %q, want %q", c.i, got, "x"+c.want)
		}
	}
}

func TestSpread(t *testing.T) {
	var seen [100]atomic.Int32
	if _, err := Spread(4, len(seen), func(i int) error { seen[i].Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	for i := range seen {
		if n := seen[i].Load(); n != 1 {
			t.Fatalf("index %d called %d times, want once", i, n)
		}
	}
	boom := errors.New("boom")
	var calls atomic.Int32
	_, err := Spread(3, 1000, func(i int) error {
		calls.Add(1)
		return boom
	})
	if !errors.Is(err, boom) || calls.Load() > 3 {
		t.Fatalf("Spread = %v after %d calls; want boom after at most one call per worker", err, calls.Load())
	}
}
