package clock

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestCoarseAdvances(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(10 * time.Millisecond)
		defer c.Stop()
		start := c.Millis()
		time.Sleep(1 * time.Second)
		synctest.Wait()
		if d := c.Millis() - start; d < 990 || d > 1000 {
			t.Fatalf("after 1 s the clock moved %d ms, want 990..1000", d)
		}
		c.Stop()
		c.Stop() // idempotent
	})
}

func TestExactBetweenTicks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(10 * time.Millisecond)
		defer c.Stop()
		start := c.Exact()
		if m := c.Millis(); m != start {
			t.Fatalf("Millis = %d, Exact = %d at the start, want equal", m, start)
		}
		time.Sleep(25 * time.Millisecond)
		synctest.Wait()
		if d := c.Exact() - start; d != 25 {
			t.Fatalf("Exact moved %d ms in 25 ms", d)
		}
		if d := c.Millis() - start; d != 20 {
			t.Fatalf("Millis moved %d ms in 25 ms, want 20 (the last tick)", d)
		}
	})
}
