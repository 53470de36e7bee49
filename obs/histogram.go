package obs

import (
	"math"
	"strconv"
	"strings"
	"sync/atomic"
)

// histogram is a Prometheus histogram over LatencyBuckets that Metrics can
// read without rendering it: VictoriaMetrics' PrometheusHistogram has no
// getter for its buckets, and takes a mutex per update. This one takes none.
//
// Update counts an observation before putting it in its bucket, and read
// reads the buckets before the count, so the count read is never below the
// buckets' sum (the +Inf bucket never falls under a finite one).
type histogram struct {
	buckets []atomic.Uint64 // per bound of LatencyBuckets, not cumulative
	count   atomic.Uint64
	sum     atomic.Uint64 // float64 bits
}

func newHistogram() *histogram {
	return &histogram{buckets: make([]atomic.Uint64, len(LatencyBuckets))}
}

// Update records v, in seconds; negative values and NaN are ignored.
func (h *histogram) Update(v float64) {
	if !(v >= 0) {
		return
	}
	h.count.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			break
		}
	}
	for i, ub := range LatencyBuckets {
		if v <= ub {
			h.buckets[i].Add(1)
			return
		}
	}
}

// read calls f with each series of the histogram named name{labels}, as
// Prometheus exposes it: the cumulative _bucket series (le last among the
// labels, +Inf included), then _sum and _count.
func (h *histogram) read(name string, f func(series string, v float64)) {
	base, labels := name, ""
	if i := strings.IndexByte(name, '{'); i >= 0 {
		base, labels = name[:i], strings.TrimSuffix(name[i+1:], "}")+","
	}
	cum := uint64(0)
	for i, ub := range LatencyBuckets {
		cum += h.buckets[i].Load()
		f(base+"_bucket{"+labels+`le="`+strconv.FormatFloat(ub, 'g', -1, 64)+`"}`, float64(cum))
	}
	count := h.count.Load()
	sum := math.Float64frombits(h.sum.Load())
	f(base+"_bucket{"+labels+`le="+Inf"}`, float64(count))
	labels = strings.TrimSuffix(labels, ",")
	if labels != "" {
		labels = "{" + labels + "}"
	}
	f(base+"_sum"+labels, sum)
	f(base+"_count"+labels, float64(count))
}
