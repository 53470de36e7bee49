package lb_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stickyroute/stickyroute/internal/testkit"
	"github.com/stickyroute/stickyroute/lb"
)

// The fuzz program. The first byte picks the strategy and the second the
// configuration; every later byte starts an event, whose opcode is the byte
// modulo fuzzOps, followed by the event's arguments. A program that runs out
// reads zeros, so every byte string is a valid program. Events after the
// first fuzzEvents are ignored: with Maglev every membership change rebuilds a
// 65,521-slot table, and long programs would stall the fuzzer.
//
// Configuration byte: bit 0 sets LoadCap 1.25 (else 0), bits 1–2 give
// Ejection.Failures - 1 (1..4), bits 3–7 modulo 3 give Ejection.MaxFraction
// (0.25, 0.5, 1).
const (
	opAdd        = 0  // pod, weight: Add(pod%32, 1+weight%8) (also 1)
	opRemove     = 2  // pod: Remove(pod%32)
	opUpdate     = 3  // n, then n%6 × (pod, weight, load): Update with those pods, duplicates dropped
	opSetLoad    = 4  // pod, load: SetLoad(pod%32, load%101)
	opSetHealthy = 5  // pod, healthy: SetHealthy(pod%32, healthy&1 == 1)
	opStats      = 6  // pod, conns, rt: UpdateStats(pod%32, conns%8, rt%50 ms)
	opPick       = 7  // Pick() (also 8 and 9)
	opPickKey    = 10 // key: PickHash when key is even, PickKey when odd (also 11)
	opDone       = 12 // which, kind, duration: Done of open pick which%open (also 13 to 15)
	fuzzOps      = 16
	fuzzEvents   = 256

	fuzzPods = 32
)

// Bytes for the seed programs.
const (
	// Strategies, in fuzzStrategies order.
	strRR, strSW, strLC, strLT, strP2C, strMaglev = 0, 1, 2, 3, 4, 5
	// Configurations.
	cfgPlain  = 0           // Failures 1, MaxFraction 0.25, no load cap
	cfgCap    = 1           // Failures 1, MaxFraction 0.25, LoadCap 1.25
	cfgFail3  = 2<<1 | 1<<3 // Failures 3, MaxFraction 0.5, no load cap
	cfgAllOut = 1<<1 | 2<<3 // Failures 2, MaxFraction 1, no load cap
	cfgHalf   = 1 << 3      // Failures 1, MaxFraction 0.5, no load cap
	// Done kinds: success, failure, context.Canceled.
	doneOK, doneFail, doneCancel = 0, 1, 2
	// Argument bytes.
	weight1               = 0 // weight 1
	healthyNo, healthyYes = 0, 1
)

var fuzzStrategies = []lb.Strategy{lb.RoundRobin{}, lb.SmoothWeighted{}, lb.LeastConn{}, lb.LeastTime{}, lb.P2C{}, lb.Maglev{}}

var fuzzFractions = []float64{0.25, 0.5, 1}

// openPick is a pick whose Done has not been called yet.
type openPick struct {
	pod  int
	done func(lb.DoneInfo)
}

// fuzzModel is what the balancer should hold, kept on the side.
type fuzzModel struct {
	member   [fuzzPods]bool
	weight   [fuzzPods]int
	load     [fuzzPods]int64
	down     [fuzzPods]bool  // marked unhealthy by hand
	inflight [fuzzPods]int64 // open picks per pod index, member or not
	open     []openPick
}

func (m *fuzzModel) members() int {
	n := 0
	for p := range fuzzPods {
		if m.member[p] {
			n++
		}
	}
	return n
}

func (m *fuzzModel) join(pod, weight int, load int64) {
	m.member[pod], m.weight[pod], m.load[pod], m.down[pod] = true, weight, load, false
}

func (m *fuzzModel) leave(pod int) { m.member[pod], m.down[pod] = false, false }

func (m *fuzzModel) String() string {
	var sb strings.Builder
	sb.WriteString("members [")
	for p := range fuzzPods {
		if !m.member[p] {
			continue
		}
		fmt.Fprintf(&sb, " %d(w%d l%d", p, m.weight[p], m.load[p])
		if m.down[p] {
			sb.WriteString(" down")
		}
		fmt.Fprintf(&sb, " open%d)", m.inflight[p])
	}
	sb.WriteString(" ] open picks [")
	for _, o := range m.open {
		fmt.Fprintf(&sb, " %d", o.pod)
	}
	sb.WriteString(" ]")
	return sb.String()
}

func FuzzBalancer(f *testing.F) {
	// Empty program: round robin (strategy byte 0), no members, no events.
	f.Add([]byte{})
	// One pod, round robin: add pod 0, pick, pick by key, pick, finish two
	// picks (a success, a cancellation).
	f.Add([]byte{strRR, cfgPlain, opAdd, 0, weight1, opPick, opPickKey, 'a', opPick,
		opDone, 0, doneOK, 5, opDone, 0, doneCancel, 0})
	// Several pods with picks under the load cap, smooth weighted: pods 1..4 of
	// weights 1..4 with loads, fourteen picks, two finished.
	f.Add([]byte{strSW, cfgCap,
		opAdd, 1, 0, opAdd, 2, 1, opAdd, 3, 2, opAdd, 4, 3,
		opSetLoad, 1, 10, opSetLoad, 3, 4,
		opPick, opPick, opPick, opPick, opPickKey, 2, opPickKey, 3, opPick, opPick,
		opDone, 1, doneOK, 10, opPick, opPick, opDone, 3, doneOK, 1, opPick, opPick, opPick, opPick})
	// Failures reaching the threshold, least conn, Failures 3, MaxFraction 0.5:
	// three failed picks to the lone-least pod eject it (one of two members).
	f.Add([]byte{strLC, cfgFail3,
		opAdd, 0, weight1, opAdd, 1, weight1,
		opStats, 1, 7, 3, // pod 1 reports 7 connections: least conn goes to 0
		opPick, opPick, opPick,
		opDone, 0, doneFail, 0, opDone, 0, doneFail, 0, opDone, 0, doneFail, 0,
		opPick, opPick, opPickKey, 9})
	// Every pod ejected (MaxFraction 1 allows it), Failures 2: round robin over
	// two pods, every pick fails, then nothing is eligible.
	f.Add([]byte{strRR, cfgAllOut,
		opAdd, 5, weight1, opAdd, 6, weight1,
		opPick, opPick, opPick, opPick,
		opDone, 0, doneFail, 0, opDone, 0, doneFail, 0, opDone, 0, doneFail, 0, opDone, 0, doneFail, 0,
		opPick})
	// Removal with open picks, P2C: picks to pods 0..2, remove pod 1, finish
	// picks (one failing) after it left, add it back, shrink to pods 0 and 2.
	f.Add([]byte{strP2C, cfgHalf,
		opUpdate, 3, 0, 0, 0, 1, 0, 0, 2, 0, 0,
		opPick, opPick, opPick, opPick, opPick, opPick,
		opRemove, 1, opPick, opPick,
		opDone, 0, doneFail, 0, opDone, 1, doneCancel, 0, opDone, 2, doneOK, 0,
		opAdd, 1, weight1, opPick,
		opUpdate, 2, 0, 0, 0, 2, 0, 50, opPick})
	// All pods unhealthy, maglev: picks fail until one is marked healthy again.
	f.Add([]byte{strMaglev, cfgPlain,
		opAdd, 7, weight1, opAdd, 8, 1, opPickKey, 1,
		opSetHealthy, 7, healthyNo, opSetHealthy, 8, healthyNo,
		opPick, opPickKey, 4,
		opSetHealthy, 8, healthyYes, opPickKey, 4, opPick})
	// Least time with response times, unhealthy and removed pods.
	f.Add([]byte{strLT, cfgPlain,
		opAdd, 0, weight1, opAdd, 1, 2, opAdd, 2, 3,
		opStats, 0, 0, 40, opStats, 1, 2, 3,
		opPick, opPick, opDone, 0, doneOK, 30, opPick,
		opSetHealthy, 2, healthyNo, opPick, opRemove, 2, opPick, opAdd, 2, 0, opPick})

	f.Fuzz(func(t *testing.T, program []byte) {
		runFuzzProgram(t, program)
	})
}

func runFuzzProgram(t *testing.T, program []byte) {
	r := testkit.NewProgram(program)
	strategy := fuzzStrategies[int(r.Next())%len(fuzzStrategies)]
	c := r.Next()
	loadCap := 0.0
	if c&1 != 0 {
		loadCap = 1.25
	}
	failures := 1 + int(c>>1&3)
	fraction := fuzzFractions[int(c>>3)%len(fuzzFractions)]
	b, err := lb.New(lb.Config{
		Strategy:  strategy,
		LoadCap:   loadCap,
		SlowStart: 0,
		Ejection: lb.Ejection{
			Failures:    failures,
			Base:        time.Hour, // no back-off ends during an iteration
			Max:         2 * time.Hour,
			MaxFraction: fraction,
		},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer b.Close()
	setup := fmt.Sprintf("%v, LoadCap %v, Failures %d, MaxFraction %v", strategy, loadCap, failures, fraction)

	var m fuzzModel
	fail := func(ev int, what string, st lb.Stats, format string, args ...any) {
		t.Helper()
		t.Fatalf("%s: event %d (%s): %s\nmodel: %v\nstats: %+v", setup, ev, what, fmt.Sprintf(format, args...), &m, st)
	}
	// check verifies the Stats invariants against the model.
	check := func(ev int, what string) lb.Stats {
		t.Helper()
		st := b.Stats()
		n := m.members()
		if len(st.Pods) != n {
			fail(ev, what, st, "Stats lists %d pods, model has %d members", len(st.Pods), n)
		}
		unhealthy, ejected := 0, 0
		var inflight, want int64
		for i, ps := range st.Pods {
			p := ps.Pod
			if p < 0 || p >= fuzzPods || !m.member[p] {
				fail(ev, what, st, "Stats lists pod %d, not a member", p)
			}
			if i > 0 && st.Pods[i-1].Pod >= p {
				fail(ev, what, st, "Stats pods not sorted or repeated: %d then %d", st.Pods[i-1].Pod, p)
			}
			if ps.Healthy == m.down[p] {
				fail(ev, what, st, "pod %d: Healthy %v, model marked down %v", p, ps.Healthy, m.down[p])
			}
			if ps.Weight != m.weight[p] || ps.Load != m.load[p] {
				fail(ev, what, st, "pod %d: weight %d load %d, model weight %d load %d", p, ps.Weight, ps.Load, m.weight[p], m.load[p])
			}
			if ps.InFlight != m.inflight[p] {
				fail(ev, what, st, "pod %d: InFlight %d, model has %d open picks", p, ps.InFlight, m.inflight[p])
			}
			if ps.Ejected && !ps.Healthy {
				fail(ev, what, st, "pod %d is counted ejected while marked unhealthy by hand", p)
			}
			if !ps.Healthy {
				unhealthy++
			}
			if ps.Ejected {
				ejected++
			}
			inflight += ps.InFlight
		}
		for p := range fuzzPods {
			if m.member[p] {
				want += m.inflight[p]
			}
		}
		if inflight != want {
			fail(ev, what, st, "sum of InFlight %d, model has %d open picks to members", inflight, want)
		}
		if st.Unhealthy != unhealthy || st.Ejected != ejected {
			fail(ev, what, st, "Unhealthy %d Ejected %d, pods say %d and %d", st.Unhealthy, st.Ejected, unhealthy, ejected)
		}
		down := 0
		for p := range fuzzPods {
			if m.member[p] && m.down[p] {
				down++
			}
		}
		if st.Unhealthy != down {
			fail(ev, what, st, "Unhealthy %d, model has %d members marked unhealthy", st.Unhealthy, down)
		}
		if limit := int(math.Floor(fraction * float64(n))); st.Ejected > limit {
			fail(ev, what, st, "Ejected %d > floor(%v × %d members) = %d", st.Ejected, fraction, n, limit)
		}
		return st
	}
	// pick runs one pick and checks it against the Stats taken just before.
	pick := func(ev int, what string, do func() (lb.PickResult, error)) {
		t.Helper()
		pre := check(ev, what+", before")
		eligible := map[int]bool{}
		var sum int64
		for _, ps := range pre.Pods {
			if ps.Healthy && !ps.Ejected {
				eligible[ps.Pod] = true
				sum += ps.Load + ps.InFlight + ps.Conns
			}
		}
		res, err := do()
		if err != nil {
			if !errors.Is(err, lb.ErrNoPod) {
				fail(ev, what, pre, "pick error %v, want nil or ErrNoPod", err)
			}
			if len(eligible) > 0 {
				fail(ev, what, pre, "pick: ErrNoPod with %d eligible pods", len(eligible))
			}
			return
		}
		if len(eligible) == 0 {
			fail(ev, what, pre, "pick got pod %d, want ErrNoPod: no member is eligible", res.Pod)
		}
		if res.Pod < 0 || res.Pod >= fuzzPods || !m.member[res.Pod] {
			fail(ev, what, pre, "pick got pod %d, not a member", res.Pod)
		}
		if !eligible[res.Pod] {
			fail(ev, what, pre, "pick got pod %d, marked unhealthy or ejected", res.Pod)
		}
		if res.Done == nil {
			fail(ev, what, pre, "pick got pod %d with a nil Done", res.Pod)
		}
		if loadCap != 0 {
			// The cap: load + in flight + reported connections, on both sides,
			// over the eligible pods only.
			n := len(eligible)
			limit := int64(math.Ceil(loadCap * float64(sum+1) / float64(n)))
			i, _ := slices.BinarySearchFunc(pre.Pods, res.Pod, func(ps lb.PodStats, p int) int { return ps.Pod - p })
			if ps := pre.Pods[i]; ps.Load+ps.InFlight+ps.Conns+1 > limit {
				fail(ev, what, pre, "pick got pod %d with load %d + in flight %d + conns %d + 1 > cap %d (ceil(%v × (%d + 1) / %d))",
					res.Pod, ps.Load, ps.InFlight, ps.Conns, limit, loadCap, sum, n)
			}
		}
		m.open = append(m.open, openPick{pod: res.Pod, done: res.Done})
		m.inflight[res.Pod]++
	}

	check(-1, "New")
	for ev := 0; r.More() && ev < fuzzEvents; ev++ {
		var what string
		switch op := r.Next() % fuzzOps; op {
		case opAdd, opAdd + 1:
			pod, w := int(r.Next()%fuzzPods), 1+int(r.Next()%8)
			what = fmt.Sprintf("Add(%d, %d)", pod, w)
			if err := b.Add(pod, w); err != nil {
				fail(ev, what, b.Stats(), "Add: %v", err)
			}
			if m.member[pod] {
				m.weight[pod] = w
			} else {
				m.join(pod, w, 0)
			}
		case opRemove:
			pod := int(r.Next() % fuzzPods)
			what = fmt.Sprintf("Remove(%d)", pod)
			if got := b.Remove(pod); got != m.member[pod] {
				fail(ev, what, b.Stats(), "Remove = %v, model membership %v", got, m.member[pod])
			}
			m.leave(pod)
		case opUpdate:
			k := int(r.Next() % 6)
			var ps []lb.Pod
			seen := map[int]bool{}
			for range k {
				p := lb.Pod{Index: int(r.Next() % fuzzPods), Weight: 1 + int(r.Next()%8), Load: int64(r.Next() % 101)}
				if !seen[p.Index] {
					seen[p.Index] = true
					ps = append(ps, p)
				}
			}
			what = fmt.Sprintf("Update(%+v)", ps)
			if err := b.Update(ps); err != nil {
				fail(ev, what, b.Stats(), "Update: %v", err)
			}
			for p := range fuzzPods {
				if m.member[p] && !seen[p] {
					m.leave(p)
				}
			}
			for _, p := range ps {
				if m.member[p.Index] {
					m.weight[p.Index], m.load[p.Index] = p.Weight, p.Load
				} else {
					m.join(p.Index, p.Weight, p.Load)
				}
			}
		case opSetLoad:
			pod, load := int(r.Next()%fuzzPods), int64(r.Next()%101)
			what = fmt.Sprintf("SetLoad(%d, %d)", pod, load)
			err := b.SetLoad(pod, load)
			if (err == nil) != m.member[pod] {
				fail(ev, what, b.Stats(), "SetLoad: %v, model membership %v", err, m.member[pod])
			}
			if m.member[pod] {
				m.load[pod] = load
			}
		case opSetHealthy:
			pod, healthy := int(r.Next()%fuzzPods), r.Next()&1 == 1
			what = fmt.Sprintf("SetHealthy(%d, %v)", pod, healthy)
			err := b.SetHealthy(pod, healthy)
			if (err == nil) != m.member[pod] {
				fail(ev, what, b.Stats(), "SetHealthy: %v, model membership %v", err, m.member[pod])
			}
			if m.member[pod] {
				m.down[pod] = !healthy
			}
		case opStats:
			pod, conns, rt := int(r.Next()%fuzzPods), int64(r.Next()%8), time.Duration(r.Next()%50)*time.Millisecond
			what = fmt.Sprintf("UpdateStats(%d, %d, %v)", pod, conns, rt)
			err := b.UpdateStats(pod, conns, rt)
			if (err == nil) != m.member[pod] {
				fail(ev, what, b.Stats(), "UpdateStats: %v, model membership %v", err, m.member[pod])
			}
		case opPick, opPick + 1, opPick + 2:
			what = "Pick()"
			pick(ev, what, b.Pick)
		case opPickKey, opPickKey + 1:
			key := r.Next()
			if key%2 == 0 {
				what = fmt.Sprintf("PickHash(%d)", key)
				pick(ev, what, func() (lb.PickResult, error) { return b.PickHash(uint64(key) * 0x9E3779B97F4A7C15) })
			} else {
				what = fmt.Sprintf("PickKey(%q)", fmt.Sprint("user-", key))
				pick(ev, what, func() (lb.PickResult, error) { return b.PickKey(fmt.Sprint("user-", key)) })
			}
		default: // opDone .. opDone+3
			which, kind, d := int(r.Next()), r.Next()%3, time.Duration(r.Next()%50)*time.Millisecond
			if len(m.open) == 0 {
				what = "Done with no open pick"
				break
			}
			which %= len(m.open)
			o := m.open[which]
			info := lb.DoneInfo{Duration: d}
			switch kind {
			case doneFail:
				info.Err = errors.New("pod failed")
			case doneCancel:
				info.Err = fmt.Errorf("request: %w", context.Canceled)
			}
			what = fmt.Sprintf("Done(pick %d to pod %d, %+v)", which, o.pod, info)
			m.open = slices.Delete(m.open, which, which+1)
			m.inflight[o.pod]--
			o.done(info)
		}
		check(ev, what)
	}
}
