package main

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"os"
	"strconv"
	"strings"
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

// lineChart draws series over xs as an SVG element with axes, a grid and a
// legend. The markup is well-formed XML.
func lineChart(id, title, unit string, xs []float64, ss []series) template.HTML {
	const w, h, left, right, top, bottom = 760.0, 260.0, 64.0, 150.0, 28.0, 36.0
	pw, ph := w-left-right, h-top-bottom
	xmax, ymax := 1.0, 0.0
	for _, x := range xs {
		xmax = math.Max(xmax, x)
	}
	for _, s := range ss {
		for _, y := range s.ys {
			if !math.IsNaN(y) {
				ymax = math.Max(ymax, y)
			}
		}
	}
	xmax, ymax = niceCeil(xmax), niceCeil(ymax) // round axes: ticks fall on round values
	px := func(x float64) float64 { return left + pw*x/xmax }
	py := func(y float64) float64 { return top + ph - ph*y/ymax }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="%s" class="chart" xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s">`,
		id, w, h, w, h, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<text x="%.0f" y="18" class="title">%s</text>`, left, template.HTMLEscapeString(title))
	for i := 0; i <= 4; i++ {
		y := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="grid"/>`, left, py(y), left+pw, py(y))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="tick" text-anchor="end">%s</text>`, left-6, py(y)+4, tick(y, unit))
	}
	for i := 0; i <= 5; i++ {
		x := xmax * float64(i) / 5
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="tick" text-anchor="middle">%.0fs</text>`, px(x), top+ph+18, x)
	}
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" class="frame"/>`, left, top, pw, ph)
	for k, s := range ss {
		color := s.color
		if color == "" {
			color = palette[k%len(palette)]
		}
		var pts []string
		for i, y := range s.ys {
			if i < len(xs) && !math.IsNaN(y) {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(xs[i]), py(y)))
			}
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`, strings.Join(pts, " "), color)
		ly := top + 14 + 16*float64(k)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="%s" stroke-width="3"/>`, left+pw+12, ly-4, left+pw+30, ly-4, color)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" class="legend">%s</text>`, left+pw+36, ly, template.HTMLEscapeString(s.name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built above from numbers and escaped names
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

// tick formats an axis value.
func tick(v float64, unit string) string {
	switch unit {
	case "us":
		return us(v)
	case "%":
		return strconv.FormatFloat(v, 'f', 0, 64) + "%"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

type htmlData struct {
	R                                *Report
	Table                            string
	Latency, Users, HitRatio, Errors template.HTML
}

var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" lang="en">
<head>
<meta charset="utf-8"/>
<title>stickyroute loadgen: {{.R.Scenario}} on {{.R.Backend}} Redis</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 980px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
pre { background: #f6f6f6; padding: 12px; overflow-x: auto; font-size: 12px; }
.chart { display: block; margin: 8px 0 20px; }
.chart .title { font-weight: 600; font-size: 13px; }
.chart .tick, .chart .legend { font-size: 11px; fill: #444; }
.chart .grid { stroke: #e4e4e4; }
.chart .frame { fill: none; stroke: #999; }
.ok { color: #2a7d2a; font-weight: 600; } .bad { color: #b00; font-weight: 600; }
</style>
</head>
<body>
<h1>stickyroute loadgen: {{.R.Scenario}} on {{.R.Backend}} Redis</h1>
<p>{{.R.Settings.Pods}} pods, {{.R.Settings.Clients}} clients, {{.R.Settings.Users}} users, seed {{.R.Settings.Seed}};
started {{.R.Started.Format "2006-01-02 15:04:05 MST"}}.
Invariants: {{if eq .R.Invariants.Total 0}}<span class="ok">held</span>{{else}}<span class="bad">violated</span>{{end}}.</p>
<h2>Latency of routing calls, per one-second interval</h2>
{{.Latency}}
<h2>Users in session per pod</h2>
{{.Users}}
<h2>Cache hit ratio</h2>
{{.HitRatio}}
<h2>Routing errors per second</h2>
{{.Errors}}
<h2>Summary</h2>
<pre>{{.Table}}</pre>
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
	for i, iv := range tl {
		xs[i] = iv.T
		p50[i], p90[i], p99[i], pmax[i] = iv.P50, iv.P90, iv.P99, iv.Max
		if iv.Ops == 0 {
			p50[i], p90[i], p99[i], pmax[i] = math.NaN(), math.NaN(), math.NaN(), math.NaN()
		}
		hit[i] = 100 * iv.HitRatio
		errs[i] = float64(iv.Errors)
		for p := range users {
			if p < len(iv.UsersPerPod) {
				users[p][i] = float64(iv.UsersPerPod[p])
			}
		}
	}
	us := make([]series, pods)
	for p := range us {
		us[p] = series{name: "pod " + strconv.Itoa(p), ys: users[p]}
	}
	d := htmlData{R: rep, Table: table.String(),
		Latency: lineChart("latency", "route latency percentiles", "us", xs, []series{
			{name: "p50", ys: p50}, {name: "p90", ys: p90}, {name: "p99", ys: p99}, {name: "max", ys: pmax}}),
		Users:    lineChart("users", "users in session per pod", "", xs, us),
		HitRatio: lineChart("hitratio", "cache hit ratio", "%", xs, []series{{name: "hit ratio", ys: hit}}),
		Errors:   lineChart("errors", "routing errors per second", "", xs, []series{{name: "errors", color: "#d62728", ys: errs}}),
	}
	var b bytes.Buffer
	if err := page.Execute(&b, d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
