package main

import (
	"bytes"
	"encoding/xml"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// eventReport is a 15 s run (1 s of warm-up, 14 s measured) with every
// scenario's moment set, as no single run has them: each chart must mark
// them all where they happened.
func eventReport() *Report {
	r := &Report{Scenario: "drain", Backend: "embedded",
		Settings:        Settings{Pods: 3, Clients: 2, Users: 1000, WarmupMS: 1000, DurationMS: 15000},
		MeasuredSeconds: 14,
		Ops:             map[string]Latency{},
		Drain:           &DrainReport{Pod: 2, DenyAt: 5, ShutdownAt: 6.5, Respected: true},
		Crash:           &CrashReport{Pod: 1, At: 8, Detected: true, DetectedAfterMS: 600, BoundMS: 750, Within: true},
		Blip:            &BlipReport{At: 10, ForMS: 2000, Recovered: true, RecoveredAfterMS: 40},
		Storm:           &StormReport{Users: 500, At: 3, CompletedAfterMS: 80},
		Ramp:            &RampReport{SLOUS: 1000, Steps: []RampStep{{Rate: 1000, At: 1, Held: true}, {Rate: 1500, At: 8}}},
	}
	for i := 1; i <= 15; i++ {
		iv := Interval{T: float64(i), Ops: 1000, P50: 20, P90: 300, P99: 4000, Max: 9000, HitRatio: 0.9,
			UsersPerPod: []int64{int64(10 * i), int64(9 * i), 5}}
		if i == 7 {
			iv.Max = 80000 // the one spike
		}
		r.Timeline = append(r.Timeline, iv)
	}
	return r
}

// node is an element of the parsed page.
type node struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Text    string     `xml:",chardata"`
	Nodes   []node     `xml:",any"`
}

func (n node) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// num is the attribute name of n as a number.
func (n node) num(t *testing.T, name string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(n.attr(name), 64)
	if err != nil {
		t.Fatalf("<%s %s=%q>: %v", n.XMLName.Local, name, n.attr(name), err)
	}
	return v
}

func (n node) hasClass(c string) bool { return slices.Contains(strings.Fields(n.attr("class")), c) }

// all lists the elements under n (n included) named name with class c
// (any class when c is empty), in document order.
func (n node) all(name, c string) []node {
	var out []node
	if n.XMLName.Local == name && (c == "" || n.hasClass(c)) {
		out = append(out, n)
	}
	for _, k := range n.Nodes {
		out = append(out, k.all(name, c)...)
	}
	return out
}

// renderPage renders rep and parses the page strictly as XML.
func renderPage(t *testing.T, rep *Report) node {
	t.Helper()
	b, err := renderHTML(rep)
	if err != nil {
		t.Fatal(err)
	}
	var page node
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.Strict = true
	if err := dec.Decode(&page); err != nil {
		t.Fatalf("the page is not well-formed XML: %v", err)
	}
	return page
}

// chartOf finds the chart with the id.
func chartOf(t *testing.T, page node, id string) node {
	t.Helper()
	for _, svg := range page.all("svg", "chart") {
		if svg.attr("id") == id {
			return svg
		}
	}
	t.Fatalf("no chart %q", id)
	return node{}
}

// timeAxis reads the time ticks of a chart: their labels, and the mapping
// from seconds to x they imply (from the first and the last tick).
func timeAxis(t *testing.T, svg node) (labels []string, x func(float64) float64, last float64) {
	t.Helper()
	ticks := svg.all("text", "xtick")
	if len(ticks) < 2 {
		t.Fatalf("chart %s: %d time ticks", svg.attr("id"), len(ticks))
	}
	secs := func(n node) float64 {
		v, err := strconv.ParseFloat(strings.TrimSuffix(n.Text, "s"), 64)
		if err != nil {
			t.Fatalf("time tick %q: %v", n.Text, err)
		}
		return v
	}
	first, end := ticks[0], ticks[len(ticks)-1]
	t0, x0, t1, x1 := secs(first), first.num(t, "x"), secs(end), end.num(t, "x")
	for _, n := range ticks {
		labels = append(labels, n.Text)
	}
	return labels, func(s float64) float64 { return x0 + (s-t0)*(x1-x0)/(t1-t0) }, t1
}

func TestHTMLMarksEveryEventWhereItHappened(t *testing.T) {
	page := renderPage(t, eventReport())
	want := []struct {
		event, label string
		at           float64
	}{
		{"ramp", "1000/s", 1},
		{"storm", "storm 500 users", 3}, {"storm-placed", "storm placed", 3.08},
		{"deny", "deny pod 2", 5}, {"shutdown", "shutdown pod 2", 6.5},
		{"crash", "crash pod 1", 8}, {"ramp", "1500/s", 8}, {"detected", "detected", 8.6},
		{"blip-start", "store down", 10}, {"blip-end", "store back", 12},
	}
	for _, id := range []string{"latency", "users", "hitratio", "errors"} {
		svg := chartOf(t, page, id)
		_, x, _ := timeAxis(t, svg)
		lines, labels := svg.all("line", "marker"), svg.all("text", "mark")
		if len(lines) != len(want) || len(labels) != len(want) {
			t.Errorf("chart %s: %d marker lines and %d labels, want %d of each", id, len(lines), len(labels), len(want))
			continue
		}
		for i, w := range want {
			l, lb := lines[i], labels[i]
			if l.attr("data-event") != w.event || lb.attr("data-event") != w.event || lb.Text != w.label {
				t.Errorf("chart %s marker %d: line %q, label %q %q; want %q %q",
					id, i, l.attr("data-event"), lb.attr("data-event"), lb.Text, w.event, w.label)
			}
			if x1, x2 := l.num(t, "x1"), l.num(t, "x2"); math.Abs(x1-x(w.at)) > 0.01 || x1 != x2 {
				t.Errorf("chart %s %s: line from x %.2f to %.2f, want vertical at %.2f (%.1fs on the time axis)",
					id, w.event, x1, x2, x(w.at), w.at)
			}
			if at := l.num(t, "data-t"); at != w.at {
				t.Errorf("chart %s %s: data-t %v, want %v", id, w.event, at, w.at)
			}
		}
	}
}

func TestHTMLMarkersLeaveOutWhatDidNotHappen(t *testing.T) {
	r := eventReport()
	r.Drain.ShutdownAt = 0 // the run ended in the drain window
	r.Crash.Detected = false
	r.Blip.At = 14 // the store came back after the end of the run
	r.Storm, r.Ramp = nil, nil
	var got []string
	for _, l := range chartOf(t, renderPage(t, r), "latency").all("line", "marker") {
		got = append(got, l.attr("data-event"))
	}
	if want := []string{"deny", "crash", "blip-start"}; !slices.Equal(got, want) {
		t.Errorf("markers %q, want %q", got, want)
	}
}

func TestHTMLTimeAxisEndsAtTheRunsLength(t *testing.T) {
	for _, tc := range []struct {
		warmup, measured float64
		ticks            []string
	}{
		{1, 14, []string{"0s", "5s", "10s", "15s"}},
		{1, 9.013, []string{"0s", "2s", "4s", "6s", "8s", "10s"}},
		{0.5, 12.9, []string{"0s", "2s", "4s", "6s", "8s", "10s", "12s"}},
		{0, 0.8, []string{"0.0s", "0.2s", "0.4s", "0.6s", "0.8s"}},
		{5, 55, []string{"0s", "10s", "20s", "30s", "40s", "50s", "60s"}},
		{10, 115, []string{"0s", "20s", "40s", "60s", "80s", "100s", "120s"}},
	} {
		r := eventReport()
		r.Settings.WarmupMS, r.MeasuredSeconds = 1000*tc.warmup, tc.measured
		r.Timeline = r.Timeline[:0]
		for s := 1.0; s <= tc.warmup+tc.measured; s++ {
			r.Timeline = append(r.Timeline, Interval{T: s, Ops: 10, P50: 10, P90: 20, P99: 30, Max: 40})
		}
		run := tc.warmup + tc.measured
		for _, id := range []string{"latency", "users", "hitratio", "errors"} {
			svg := chartOf(t, renderPage(t, r), id)
			labels, x, last := timeAxis(t, svg)
			if !slices.Equal(labels, tc.ticks) || last > run {
				t.Errorf("%.3gs run, chart %s: ticks %q, want %q (none past the end)", run, id, labels, tc.ticks)
			}
			frame := svg.all("rect", "frame")[0]
			if right := frame.num(t, "x") + frame.num(t, "width"); math.Abs(right-x(run)) > 0.05 {
				t.Errorf("%.3gs run, chart %s: the plot ends at x %.2f, where the axis puts %.2fs; the run ends at x %.2f",
					run, id, right, (right-x(0))/(x(1)-x(0)), x(run))
			}
		}
	}
}

// micros reads a latency tick label (10µs, 1ms, 100ms, 1s) as microseconds.
func micros(t *testing.T, label string) float64 {
	t.Helper()
	for _, u := range []struct {
		suffix string
		scale  float64
	}{{"µs", 1}, {"ms", 1e3}, {"s", 1e6}} {
		if v, ok := strings.CutSuffix(label, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("latency tick %q: %v", label, err)
			}
			return f * u.scale
		}
	}
	t.Fatalf("latency tick %q has no unit", label)
	return 0
}

func TestHTMLLatencyAxisIsLogarithmic(t *testing.T) {
	page := renderPage(t, eventReport()) // latencies from 20µs to one 80ms spike
	svg := chartOf(t, page, "latency")
	ticks := svg.all("text", "ytick")
	var labels []string
	for _, n := range ticks {
		labels = append(labels, n.Text)
	}
	if want := []string{"10µs", "100µs", "1ms", "10ms", "100ms"}; !slices.Equal(labels, want) {
		t.Fatalf("latency ticks %q, want the decades %q", labels, want)
	}
	step := ticks[0].num(t, "y") - ticks[1].num(t, "y")
	for i := 1; i < len(ticks); i++ {
		if r := micros(t, labels[i]) / micros(t, labels[i-1]); r != 10 {
			t.Errorf("tick %s is %v times tick %s, want 10", labels[i], r, labels[i-1])
		}
		if d := ticks[i-1].num(t, "y") - ticks[i].num(t, "y"); step <= 0 || math.Abs(d-step) > 0.01 {
			t.Errorf("ticks %s and %s are %.2f apart, want %.2f upward like every decade", labels[i-1], labels[i], d, step)
		}
	}
	// p50 is 20µs throughout: log10(2) of a decade above the 10µs tick.
	bottom := ticks[0].num(t, "y") - 4 // labels sit 4 below their grid line
	want := bottom - math.Log10(2)*step
	pts := strings.Fields(svg.all("polyline", "")[0].attr("points"))
	for _, p := range pts {
		_, y, _ := strings.Cut(p, ",")
		if v, _ := strconv.ParseFloat(y, 64); math.Abs(v-want) > 0.06 {
			t.Fatalf("p50 of 20µs plotted at y %s, want %.2f", y, want)
		}
	}

	// The other charts stay linear from zero.
	users := chartOf(t, page, "users").all("text", "ytick")
	var got []string
	for _, n := range users {
		got = append(got, n.Text)
	}
	if want := []string{"0", "50", "100", "150"}; !slices.Equal(got, want) {
		t.Errorf("users ticks %q, want %q", got, want)
	}
}

func TestHTMLSummaryShowsEveryLineWrappedUnderItsColumn(t *testing.T) {
	r := eventReport()
	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	var summary node
	for _, d := range renderPage(t, r).all("div", "summary") {
		summary = d
	}
	lines := summary.all("div", "")[1:]
	want := strings.Split(strings.TrimRight(table.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("summary has %d lines, the table %d", len(lines), len(want))
	}
	drain := false
	for i, l := range lines {
		if l.Text != strings.TrimRight(want[i], " ") {
			t.Errorf("summary line %d %q, want %q", i, l.Text, want[i])
		}
		if rest, ok := strings.CutPrefix(l.Text, "drain"); ok {
			drain = true
			col := len("drain") + len(rest) - len(strings.TrimLeft(rest, " "))
			if style := l.attr("style"); style != "padding-left: "+strconv.Itoa(col)+"ch; text-indent: -"+strconv.Itoa(col)+"ch" {
				t.Errorf("drain line wraps with %q, want under column %d", style, col)
			}
		}
	}
	if !drain {
		t.Error("the summary has no drain line")
	}
}

func TestHTMLChartsScaleWithEverythingInside(t *testing.T) {
	r := eventReport()
	r.Settings.Pods = 24                        // a legend longer than a row
	r.Blip = &BlipReport{At: 12.5, ForMS: 2400} // a label at the right edge
	for i := range r.Timeline {
		r.Timeline[i].UsersPerPod = make([]int64, 24)
	}
	page := renderPage(t, r)
	for _, svg := range page.all("svg", "chart") {
		id := svg.attr("id")
		if svg.attr("width") != "" || svg.attr("height") != "" {
			t.Errorf("chart %s has a fixed size %q×%q: it would not scale to the window", id, svg.attr("width"), svg.attr("height"))
		}
		var w, h float64
		if vb := strings.Fields(svg.attr("viewBox")); len(vb) == 4 {
			w, _ = strconv.ParseFloat(vb[2], 64)
			h, _ = strconv.ParseFloat(vb[3], 64)
		}
		if w == 0 || h == 0 {
			t.Fatalf("chart %s: viewBox %q", id, svg.attr("viewBox"))
		}
		for _, txt := range svg.all("text", "") {
			x, y := txt.num(t, "x"), txt.num(t, "y")
			size := 11.0
			switch {
			case txt.hasClass("title"):
				size = 13
			case txt.hasClass("mark"), txt.hasClass("region"):
				size = 10
			}
			wd := textWidth(txt.Text, size)
			x0, x1 := x, x+wd
			switch txt.attr("text-anchor") {
			case "middle":
				x0, x1 = x-wd/2, x+wd/2
			case "end":
				x0, x1 = x-wd, x
			}
			if x0 < 0 || x1 > w || y-size < 0 || y > h {
				t.Errorf("chart %s: text %q spans x %.0f to %.0f at y %.0f, outside the viewBox %.0f×%.0f", id, txt.Text, x0, x1, y, w, h)
			}
		}
	}
	if n := len(chartOf(t, page, "users").all("text", "legend")); n != 24 {
		t.Errorf("users legend has %d entries, want 24", n)
	}
}
