// Package clock is a coarse clock for hot paths: reading it is one atomic
// load, where time.Now costs tens of nanoseconds. A goroutine advances it at a
// fixed resolution; readers see time at most one tick old.
package clock

import (
	"sync"
	"sync/atomic"
	"time"
)

// Coarse is a clock advanced every Resolution by its own goroutine. The zero
// value is not usable; call New. It is safe for concurrent use.
type Coarse struct {
	now   atomic.Int64 // Unix milliseconds
	epoch time.Time    // monotonic reference, so the clock never jumps back
	base  int64        // Unix ms at epoch
	stop  chan struct{}
	done  sync.WaitGroup
	once  sync.Once
}

// New starts a coarse clock ticking every resolution (zero means 5ms).
func New(resolution time.Duration) *Coarse {
	if resolution <= 0 {
		resolution = 5 * time.Millisecond
	}
	now := time.Now()
	c := &Coarse{epoch: now, base: now.UnixMilli(), stop: make(chan struct{})}
	c.now.Store(c.base)
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		t := time.NewTicker(resolution)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
				c.now.Store(c.Exact())
			}
		}
	}()
	return c
}

// Millis returns the clock's time in Unix milliseconds, at most one tick old.
// It follows the monotonic clock from the start, so it never goes backwards.
func (c *Coarse) Millis() int64 { return c.now.Load() }

// Exact returns the time on the clock's timeline (Unix milliseconds) read
// now, not at the last tick: for code off the hot path that compares a
// moment with later Millis readings and must not be early by a tick (or by
// however late a busy machine runs the ticking goroutine).
func (c *Coarse) Exact() int64 { return c.base + time.Since(c.epoch).Milliseconds() }

// Stop stops the clock's goroutine; the clock keeps its last reading.
// It is safe to call more than once.
func (c *Coarse) Stop() {
	c.once.Do(func() {
		close(c.stop)
		c.done.Wait()
	})
}
