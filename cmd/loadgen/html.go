package main

import (
	"bytes"
	"cmp"
	"fmt"
	"html/template"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// writeHTML writes rep as a self-contained page: inline SVG charts, inline
// CSS, no script and no external asset.
func writeHTML(path string, rep *Report) error {
	b, err := renderHTML(rep)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// series is one line of a chart.
type series struct {
	name  string
	color string
	ys    []float64
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

// marker is a moment of the run drawn on every time chart as a vertical line
// with a label: event names the kind (deny, shutdown, crash, ...) for
// machines, label and note are for people.
type marker struct {
	event string
	at    float64 // seconds since the start
	label string
	note  string
}

// markers lists the scenarios' moments in rep in time order; a moment
// outside [0, end] did not happen within the run and is left out.
func markers(rep *Report, end float64) []marker {
	var ms []marker
	add := func(event string, at float64, label, note string) {
		if at >= 0 && at <= end {
			ms = append(ms, marker{event, at, label, note})
		}
	}
	if d := rep.Drain; d != nil && d.DenyAt > 0 { // zero: the drain never began
		add("deny", d.DenyAt, fmt.Sprintf("deny pod %d", d.Pod), fmt.Sprintf("pod %d published DenyNewCall at %.2fs", d.Pod, d.DenyAt))
		if d.ShutdownAt > 0 {
			add("shutdown", d.ShutdownAt, fmt.Sprintf("shutdown pod %d", d.Pod), fmt.Sprintf("pod %d published Shutdown at %.2fs", d.Pod, d.ShutdownAt))
		}
	}
	if c := rep.Crash; c != nil {
		add("crash", c.At, fmt.Sprintf("crash pod %d", c.Pod), fmt.Sprintf("pod %d stopped heartbeating at %.2fs", c.Pod, c.At))
		if c.Detected {
			at := c.At + c.DetectedAfterMS/1e3
			add("detected", at, "detected", fmt.Sprintf("every client stopped routing to pod %d at %.2fs, %.0fms after the crash (bound %.0fms)", c.Pod, at, c.DetectedAfterMS, c.BoundMS))
		}
	}
	if b := rep.Blip; b != nil {
		end := b.At + b.ForMS/1e3
		add("blip-start", b.At, "store down", fmt.Sprintf("the store became unreachable at %.2fs", b.At))
		add("blip-end", end, "store back", fmt.Sprintf("the store was reachable again at %.2fs; routing recovered %.0fms later", end, b.RecoveredAfterMS))
	}
	if s := rep.Storm; s != nil {
		done := s.At + s.CompletedAfterMS/1e3
		add("storm", s.At, fmt.Sprintf("storm %d users", s.Users), fmt.Sprintf("%d new users at %.2fs", s.Users, s.At))
		add("storm-placed", done, "storm placed", fmt.Sprintf("the storm's %d users were all placed at %.2fs, %.0fms after it began", s.Users, done, s.CompletedAfterMS))
	}
	if rp := rep.Ramp; rp != nil {
		// The floor's steps (rp.Floor) took turns with this run's, on a
		// fleet of their own: the gaps in this run's timeline.
		steps := func(what string, rp *RampReport) {
			for _, st := range rp.Steps {
				held := "held"
				if !st.Held {
					held = "missed"
				}
				add("ramp", st.At, fmt.Sprintf("%s%.0f/s", strings.TrimPrefix(what+" ", "ramp "), st.Rate),
					fmt.Sprintf("%s step at %.0f ops/s from %.2fs: achieved %.0f, p99 %s, errors %d: %s the SLO", what, st.Rate, st.At, st.Achieved, us(st.P99), st.Errors, held))
			}
		}
		steps("ramp", rp)
		if rp.Floor != nil {
			steps("floor", rp.Floor)
		}
	}
	slices.SortStableFunc(ms, func(a, b marker) int { return cmp.Compare(a.at, b.at) })
	return ms
}

// runLength is the run's length in seconds: the warm-up and the measured
// part, or the end of the last interval, or of the floor's last step (its
// search may end after this run's), if that is later.
func runLength(rep *Report) float64 {
	end := rep.Settings.WarmupMS/1e3 + rep.MeasuredSeconds
	if n := len(rep.Timeline); n > 0 {
		end = max(end, rep.Timeline[n-1].T)
	}
	if rp := rep.Ramp; rp != nil && rp.Floor != nil {
		for _, st := range rp.Floor.Steps {
			end = max(end, st.At+rp.Floor.StepMS/1e3)
		}
	}
	if end <= 0 {
		return 1
	}
	return end
}

// timeTicks returns the ticks of a time axis from 0 to end: multiples of 1,
// 2 or 5 times a power of ten, at most six steps, none past end.
func timeTicks(end float64) (ticks []float64, decimals int) {
	exp := math.Floor(math.Log10(end / 6))
	step := 0.0
	for _, m := range []float64{1, 2, 5, 10} {
		step = m * math.Pow(10, exp)
		if math.Floor(end/step+1e-9) <= 6 {
			break
		}
	}
	n := int(math.Floor(end/step + 1e-9))
	for k := 0; k <= n; k++ {
		ticks = append(ticks, float64(k)*step)
	}
	return ticks, max(0, int(-math.Floor(math.Log10(step)+1e-9)))
}

// yAxis maps values to the height of a chart, linearly from 0 or
// logarithmically between two powers of ten.
type yAxis struct {
	log    bool
	lo, hi float64
	ticks  []float64
	minor  []float64 // unlabelled grid lines
	unit   string
}

// linearAxis runs from 0 to a round value at or above ymax, in four or so
// steps of at least minStep.
func linearAxis(ymax float64, unit string, minStep float64) yAxis {
	step := max(niceCeil(ymax/4), minStep)
	if ymax <= 0 {
		step = max(minStep, 1)
	}
	a := yAxis{hi: step * math.Max(1, math.Ceil(ymax/step-1e-9)), unit: unit}
	for v := 0.0; v <= a.hi+step/2; v += step {
		a.ticks = append(a.ticks, v)
	}
	return a
}

// logAxis runs over the decades from the one at or below the least positive
// value to the one at or above the greatest, with grid lines at 2 and 5 times
// each decade.
func logAxis(ss []series, unit string) yAxis {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for _, y := range s.ys {
			if y > 0 && !math.IsInf(y, 0) {
				lo, hi = math.Min(lo, y), math.Max(hi, y)
			}
		}
	}
	if lo > hi { // nothing to plot
		lo, hi = 1, 1000
	}
	a := yAxis{log: true, lo: math.Pow(10, math.Floor(math.Log10(lo))), hi: math.Pow(10, math.Ceil(math.Log10(hi))), unit: unit}
	if a.hi <= a.lo {
		a.hi = a.lo * 10
	}
	for d := a.lo; d <= a.hi*1.001; d *= 10 {
		a.ticks = append(a.ticks, d)
		if d < a.hi/1.001 {
			a.minor = append(a.minor, 2*d, 5*d)
		}
	}
	return a
}

// frac is where v falls on the axis, 0 at the bottom and 1 at the top; ok is
// false for a value the axis cannot show (missing, or not positive on a log
// axis).
func (a yAxis) frac(v float64) (f float64, ok bool) {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return 0, false
	case a.log:
		if v <= 0 {
			return 0, false
		}
		return math.Log10(v/a.lo) / math.Log10(a.hi/a.lo), true
	}
	return v / a.hi, true
}

// label formats a tick of the axis.
func (a yAxis) label(v float64) string {
	switch a.unit {
	case "us":
		return duration(v)
	case "%":
		return strconv.FormatFloat(v, 'f', 0, 64) + "%"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// duration formats microseconds as a round tick label: 10µs, 1ms, 100ms, 1s.
func duration(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "s"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "ms"
	}
	return strconv.FormatFloat(v, 'f', -1, 64) + "µs"
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// textWidth is a generous estimate of the width of s in a sans-serif font of
// size px, so that what is laid out by it is never cut.
func textWidth(s string, px float64) float64 {
	return 0.62 * px * float64(utf8.RuneCountInString(s))
}

// chart is one time chart: series over xs (seconds since the start) against
// y, from 0 to end seconds, with the run's warm-up shaded and its markers.
type chart struct {
	id, title string
	y         yAxis
	xs        []float64
	ss        []series
	end       float64
	warmup    float64
	marks     []marker
}

// Chart geometry, in viewBox units: the SVG scales to the page's width, so
// these are proportions, not pixels.
const (
	chartW, plotH       = 760.0, 200.0
	plotLeft, plotRight = 64.0, 16.0
	rowH                = 14.0 // a row of marker labels or of the legend
)

// svg draws c as an SVG element with axes, a grid, markers and a legend
// below; everything lies inside its viewBox. The markup is well-formed XML.
func (c chart) svg() template.HTML {
	pw := chartW - plotLeft - plotRight
	px := func(x float64) float64 { return plotLeft + pw*x/c.end }

	// Marker labels sit in rows above the plot, each in the first row where
	// it overlaps no other.
	type placed struct {
		m      marker
		x      float64
		anchor string
		row    int
	}
	var labels []placed
	var rowEnds []float64
	for _, m := range c.marks {
		x, w := px(m.at), textWidth(m.label, 10)
		x0, anchor := x+2, "start"
		if x0+w > chartW-2 {
			x0, anchor = x-2-w, "end"
		}
		row := 0
		for row < len(rowEnds) && rowEnds[row] > x0-6 {
			row++
		}
		if row == len(rowEnds) {
			rowEnds = append(rowEnds, 0)
		}
		rowEnds[row] = x0 + w
		labels = append(labels, placed{m, x, anchor, row})
	}
	top := 30 + rowH*float64(len(rowEnds))
	if len(rowEnds) > 0 {
		top += 4
	}
	bottom := top + plotH
	py := func(f float64) float64 { return bottom - plotH*f }

	// The legend wraps below the time axis.
	type entry struct{ x, row float64 }
	var legend []entry
	lx, lrow := plotLeft, 0.0
	for _, s := range c.ss {
		w := 24 + textWidth(s.name, 11) + 18
		if lx+w > chartW && lx > plotLeft {
			lx, lrow = plotLeft, lrow+1
		}
		legend = append(legend, entry{lx, lrow})
		lx += w
	}
	legendTop := bottom + 40
	h := legendTop + rowH*(lrow+1) + 4

	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="%s" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s">`,
		c.id, chartW, h, template.HTMLEscapeString(c.title))
	fmt.Fprintf(&b, `<text x="%.0f" y="18" class="title">%s</text>`, plotLeft, template.HTMLEscapeString(c.title))
	if c.warmup > 0 {
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.0f" class="warmup"><title>warm-up: not in the totals</title></rect>`,
			px(0), top, px(min(c.warmup, c.end))-px(0), plotH)
		// Shown where the shade holds it (textWidth is generous; a little past
		// the shade cuts nothing); else the shade's title says it.
		if px(c.warmup)-px(0) > 0.8*textWidth("warm-up", 10)+4 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="region">warm-up</text>`, px(0)+4, bottom-6)
		}
	}
	for _, v := range c.y.minor {
		if f, ok := c.y.frac(v); ok && f < 1 {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.2f" x2="%.1f" y2="%.2f" class="grid minor"/>`, plotLeft, py(f), plotLeft+pw, py(f))
		}
	}
	for _, v := range c.y.ticks {
		f, _ := c.y.frac(v)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.2f" x2="%.1f" y2="%.2f" class="grid"/>`, plotLeft, py(f), plotLeft+pw, py(f))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.2f" class="tick ytick" text-anchor="end">%s</text>`, plotLeft-6, py(f)+4, c.y.label(v))
	}
	ticks, decimals := timeTicks(c.end)
	for _, t := range ticks {
		fmt.Fprintf(&b, `<text x="%.2f" y="%.1f" class="tick xtick" text-anchor="middle">%ss</text>`,
			px(t), bottom+16, strconv.FormatFloat(t, 'f', decimals, 64))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="tick" text-anchor="end">seconds since the start</text>`, plotLeft+pw, bottom+30)
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.1f" width="%.0f" height="%.0f" class="frame"/>`, plotLeft, top, pw, plotH)
	labelY := func(row int) float64 { return 30 + rowH*float64(row) + 10 }
	for _, l := range labels {
		fmt.Fprintf(&b, `<line x1="%.2f" y1="%.1f" x2="%.2f" y2="%.1f" class="marker" data-event="%s" data-t="%.3f"><title>%s</title></line>`,
			l.x, labelY(l.row)+3, l.x, bottom, l.m.event, l.m.at, template.HTMLEscapeString(l.m.note))
	}
	for _, l := range labels { // over the lines, which their halo hides
		ly := labelY(l.row)
		dx := 2.0
		if l.anchor == "end" {
			dx = -2
		}
		fmt.Fprintf(&b, `<text x="%.2f" y="%.1f" class="mark" data-event="%s" text-anchor="%s">%s<title>%s</title></text>`,
			l.x+dx, ly, l.m.event, l.anchor, template.HTMLEscapeString(l.m.label), template.HTMLEscapeString(l.m.note))
	}
	for k, s := range c.ss {
		color := s.color
		if color == "" {
			color = palette[k%len(palette)]
		}
		var pts []string
		for i, y := range s.ys {
			if f, ok := c.y.frac(y); ok && i < len(c.xs) {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(c.xs[i]), py(f)))
			}
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`, strings.Join(pts, " "), color)
		e := legend[k]
		ly := legendTop + rowH*e.row
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="%s" stroke-width="3"/>`, e.x, ly-4, e.x+18, ly-4, color)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" class="legend">%s</text>`, e.x+24, ly, template.HTMLEscapeString(s.name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built above from numbers and escaped names
}

// summaryLine is a line of the summary table; Indent is the width of its
// first column, where the line continues when it wraps.
type summaryLine struct {
	Text   string
	Indent int
}

// summaryLines splits the table into lines and finds the first column of
// each: up to the end of the first run of two or more spaces, which the
// table writer puts between columns.
func summaryLines(table string) []summaryLine {
	var ls []summaryLine
	for _, line := range strings.Split(strings.TrimRight(table, "\n"), "\n") {
		line = strings.TrimRight(line, " ")
		l := summaryLine{Text: line}
		if i := strings.Index(line, "  "); i >= 0 {
			j := i
			for j < len(line) && line[j] == ' ' {
				j++
			}
			l.Indent = utf8.RuneCountInString(line[:j])
		}
		ls = append(ls, l)
	}
	return ls
}

type htmlData struct {
	R                                *Report
	Summary                          []summaryLine
	Latency, Users, HitRatio, Errors template.HTML
}

var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>stickyroute loadgen: {{.R.Scenario}} on {{.R.Backend}} Redis</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1000px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
.chart { display: block; width: 100%; height: auto; margin: 8px 0 20px; }
.chart text { font-family: system-ui, sans-serif; }
.chart .title { font-weight: 600; font-size: 13px; }
.chart .tick, .chart .legend { font-size: 11px; fill: #444; }
.chart .grid { stroke: #e4e4e4; } .chart .grid.minor { stroke: #f2f2f2; }
.chart .frame { fill: none; stroke: #999; }
.chart .warmup { fill: #f4f4f4; } .chart .region { font-size: 10px; fill: #999; }
.chart .marker { stroke: #555; stroke-width: 1; stroke-dasharray: 4 3; }
.chart .mark { font-size: 10px; fill: #333; stroke: #fff; stroke-width: 3px; paint-order: stroke; }
.summary { background: #f6f6f6; padding: 12px; font: 12px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.summary div { white-space: pre-wrap; overflow-wrap: anywhere; min-height: 1.5em; }
.ok { color: #2a7d2a; font-weight: 600; } .bad { color: #b00; font-weight: 600; }
</style>
</head>
<body>
<h1>stickyroute loadgen: {{.R.Scenario}} on {{.R.Backend}} Redis</h1>
<p>{{.R.Settings.Pods}} pods, {{.R.Settings.Clients}} clients, {{.R.Settings.Users}} users, seed {{.R.Settings.Seed}};
started {{.R.Started.Format "2006-01-02 15:04:05 MST"}}.
Invariants: {{if eq .R.Invariants.Total 0}}<span class="ok">held</span>{{else}}<span class="bad">violated</span>{{end}}.</p>
<h2>Latency of routing calls, per one-second interval (log scale)</h2>
{{.Latency}}
<h2>Users in session per pod</h2>
{{.Users}}
<h2>Cache hit ratio</h2>
{{.HitRatio}}
<h2>Routing errors per second</h2>
{{.Errors}}
<h2>Summary</h2>
<div class="summary" id="summary">
{{range .Summary}}<div style="padding-left: {{.Indent}}ch; text-indent: -{{.Indent}}ch">{{.Text}}</div>
{{end}}</div>
</body>
</html>
`))

// renderHTML renders the page of rep.
func renderHTML(rep *Report) ([]byte, error) {
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		return nil, err
	}
	tl := rep.Timeline
	xs := make([]float64, len(tl))
	p50, p90, p99, pmax := make([]float64, len(tl)), make([]float64, len(tl)), make([]float64, len(tl)), make([]float64, len(tl))
	hit, errs := make([]float64, len(tl)), make([]float64, len(tl))
	pods := rep.Settings.Pods
	users := make([][]float64, pods)
	for p := range users {
		users[p] = make([]float64, len(tl))
	}
	maxUsers, maxErrs := 0.0, 0.0
	for i, iv := range tl {
		xs[i] = iv.T
		p50[i], p90[i], p99[i], pmax[i] = iv.P50, iv.P90, iv.P99, iv.Max
		if iv.Ops == 0 {
			p50[i], p90[i], p99[i], pmax[i] = math.NaN(), math.NaN(), math.NaN(), math.NaN()
		}
		hit[i] = 100 * iv.HitRatio
		errs[i] = float64(iv.Errors)
		maxErrs = max(maxErrs, errs[i])
		for p := range users {
			if p < len(iv.UsersPerPod) {
				users[p][i] = float64(iv.UsersPerPod[p])
				maxUsers = max(maxUsers, users[p][i])
			}
		}
	}
	us := make([]series, pods)
	for p := range us {
		us[p] = series{name: "pod " + strconv.Itoa(p), ys: users[p]}
	}
	lat := []series{{name: "p50", ys: p50}, {name: "p90", ys: p90}, {name: "p99", ys: p99}, {name: "max", ys: pmax}}
	end := runLength(rep)
	base := chart{xs: xs, end: end, warmup: rep.Settings.WarmupMS / 1e3, marks: markers(rep, end)}
	with := func(id, title string, y yAxis, ss []series) template.HTML {
		c := base
		c.id, c.title, c.y, c.ss = id, title, y, ss
		return c.svg()
	}
	pct := yAxis{hi: 100, ticks: []float64{0, 25, 50, 75, 100}, unit: "%"}
	d := htmlData{R: rep, Summary: summaryLines(table.String()),
		Latency:  with("latency", "route latency percentiles (log scale)", logAxis(lat, "us"), lat),
		Users:    with("users", "users in session per pod", linearAxis(maxUsers, "", 1), us),
		HitRatio: with("hitratio", "cache hit ratio", pct, []series{{name: "hit ratio", ys: hit}}),
		Errors:   with("errors", "routing errors per second", linearAxis(maxErrs, "", 1), []series{{name: "errors", color: "#d62728", ys: errs}}),
	}
	var b bytes.Buffer
	if err := page.Execute(&b, d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
