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
