package obs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// errNoValue reports a sample line without a value.
var errNoValue = errors.New("obs: sample line has no value")

// Snapshot is every series of a metrics set at one moment, as exposed:
// "name{labels}" → value. The analyzer keeps a history of them.
type Snapshot struct {
	Time   time.Time
	Values map[string]float64
}

// ParseSnapshot reads Prometheus text (without timestamps), such as the
// /metrics of another process, into a snapshot taken now. Comment lines are
// skipped. Metrics.Snapshot needs no text: it reads the metrics.
func ParseSnapshot(text []byte) (Snapshot, error) {
	s := Snapshot{Time: time.Now(), Values: map[string]float64{}}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return s, fmt.Errorf("%w: %q", errNoValue, line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return s, fmt.Errorf("obs: sample %q: %w", line, err)
		}
		s.Values[line[:i]] = v
	}
	return s, sc.Err()
}

// Sample is one series of a snapshot with its labels parsed.
type Sample struct {
	// Series is the series as exposed, the snapshot's key.
	Series string
	Name   string
	Labels map[string]string
	Value  float64
}

// Samples returns the series of metric name whose labels include every
// name/value pair of match, sorted by series.
func (s Snapshot) Samples(name string, match ...string) []Sample {
	var out []Sample
	for _, k := range slices.Sorted(maps.Keys(s.Values)) {
		n, labels := splitSeries(k)
		if n != name || !matches(labels, match) {
			continue
		}
		out = append(out, Sample{Series: k, Name: n, Labels: labels, Value: s.Values[k]})
	}
	return out
}

// Sum adds up the series of metric name whose labels include match.
func (s Snapshot) Sum(name string, match ...string) float64 {
	total := 0.0
	for k, v := range s.Values {
		if n, labels := splitSeries(k); n == name && matches(labels, match) {
			total += v
		}
	}
	return total
}

// matches reports whether labels hold every pair of match.
func matches(labels map[string]string, match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		if labels[match[i]] != match[i+1] {
			return false
		}
	}
	return true
}

// splitSeries parses "name{a="x",b="y"}" into the name and its labels.
func splitSeries(series string) (string, map[string]string) {
	i := strings.IndexByte(series, '{')
	if i < 0 {
		return series, nil
	}
	labels := map[string]string{}
	rest := strings.TrimSuffix(series[i+1:], "}")
	for rest != "" {
		eq := strings.Index(rest, `="`)
		if eq < 0 {
			break
		}
		key := rest[:eq]
		rest = rest[eq+2:]
		var val strings.Builder
		j := 0
		for ; j < len(rest) && rest[j] != '"'; j++ {
			if rest[j] == '\\' && j+1 < len(rest) {
				j++
				if rest[j] == 'n' {
					val.WriteByte('\n')
					continue
				}
			}
			val.WriteByte(rest[j])
		}
		labels[key] = val.String()
		rest = strings.TrimPrefix(rest[min(j+1, len(rest)):], ",")
	}
	return series[:i], labels
}

// Quantile estimates the q-quantile (0 < q ≤ 1) of histogram name over the
// observations made between old and cur, from the _bucket series whose
// labels include match (summed across them), interpolating linearly inside
// the bucket as Prometheus's histogram_quantile does. It returns the
// quantile in the histogram's unit and the number of observations; NaN when
// there were none.
func Quantile(old, cur Snapshot, name string, q float64, match ...string) (float64, float64) {
	deltas := map[float64]float64{}
	for _, smp := range cur.Samples(name+"_bucket", match...) {
		le, err := strconv.ParseFloat(smp.Labels["le"], 64)
		if err != nil {
			continue
		}
		prev := 0.0
		if old.Values != nil {
			prev = old.Values[smp.Series]
		}
		deltas[le] += smp.Value - prev
	}
	bounds := make([]float64, 0, len(deltas))
	for le := range deltas {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 {
		return math.NaN(), 0
	}
	total := deltas[bounds[len(bounds)-1]]
	if total <= 0 {
		return math.NaN(), 0
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		n := deltas[le] // cumulative
		if n >= rank {
			if math.IsInf(le, 1) {
				return lower, total
			}
			if n == below {
				return le, total
			}
			return lower + (le-lower)*(rank-below)/(n-below), total
		}
		if !math.IsInf(le, 1) {
			lower = le
		}
		below = n
	}
	return lower, total
}
