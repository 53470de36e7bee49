package testkit

import (
	"sync"
	"sync/atomic"
	"time"
)

// Program hands out a fuzz input byte by byte, then zeros once it runs out,
// so that every input, however short, is a whole program.
type Program struct {
	b []byte
}

// NewProgram returns a Program over data.
func NewProgram(data []byte) *Program { return &Program{b: data} }

// More reports whether bytes are left.
func (p *Program) More() bool { return len(p.b) > 0 }

// Next returns the next byte, or 0 when none is left.
func (p *Program) Next() byte {
	if len(p.b) == 0 {
		return 0
	}
	c := p.b[0]
	p.b = p.b[1:]
	return c
}

// Int returns the next byte as an int.
func (p *Program) Int() int { return int(p.Next()) }

// AppendUID appends the 12-byte uid of user i ("u" and 11 digits) to buf.
// Benchmarks build each lookup's uid afresh in a small buffer, as a server
// does from the request it just read: the input is hot, and only what a cache
// keeps can miss. (Pre-built strings would let a stored key share cache lines
// with the lookup key.)
func AppendUID(buf []byte, i int32) []byte {
	buf = append(buf, "u00000000000"...)
	for k := len(buf) - 1; i > 0; k-- {
		buf[k] = byte('0' + i%10)
		i /= 10
	}
	return buf
}

// Spread makes n calls of fn, with the indexes 0 to n-1, from workers
// goroutines, and returns the wall time they took. A worker stops at its
// first error; the first error of all is returned once every worker is done.
func Spread(workers, n int, fn func(i int) error) (time.Duration, error) {
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// Loop calls fn(0), fn(1), ... on a new goroutine of wg until stop is closed,
// which it checks before each call, or until fn returns false: a worker that
// keeps a test's load up while the test changes something under it.
func Loop(wg *sync.WaitGroup, stop <-chan struct{}, fn func(i int) bool) {
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if !fn(i) {
				return
			}
		}
	})
}
