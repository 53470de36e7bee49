package lb_test

import (
	"testing"

	"github.com/stickyroute/stickyroute/lb"
)

func pods(n int) []lb.Pod {
	ps := make([]lb.Pod, n)
	for i := range ps {
		ps[i] = lb.Pod{Index: i, Weight: 1 + i%3}
	}
	return ps
}

var strategies = []lb.Strategy{lb.RoundRobin{}, lb.SmoothWeighted{}, lb.LeastConn{}, lb.LeastTime{}, lb.P2C{}, lb.Maglev{}}

func BenchmarkPick(b *testing.B) {
	for _, n := range []int{16, 256} {
		for _, s := range strategies {
			ps := pods(n)
			if _, weighted := s.(lb.SmoothWeighted); !weighted {
				for i := range ps {
					ps[i].Weight = 1
				}
			}
			bal, err := lb.New(lb.Config{Strategy: s, Pods: ps})
			if err != nil {
				b.Fatal(err)
			}
			b.Run(s.String()+"/"+itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				var h uint64
				for b.Loop() {
					h += 0x9E3779B97F4A7C15
					r, err := bal.PickHash(h)
					if err != nil {
						b.Fatal(err)
					}
					_ = r
				}
			})
			b.Run(s.String()+"/"+itoa(n)+"/parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					var h uint64
					for pb.Next() {
						h += 0x9E3779B97F4A7C15
						r, err := bal.PickHash(h)
						if err != nil {
							b.Fatal(err)
						}
						_ = r
					}
				})
			})
			bal.Close()
		}
	}
}

func itoa(n int) string {
	if n == 16 {
		return "16"
	}
	return "256"
}
