package obs_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/stickyroute/stickyroute/engine"
	"github.com/stickyroute/stickyroute/obs"
	"github.com/stickyroute/stickyroute/store"
	"github.com/stickyroute/stickyroute/store/embedded"
)

// Metrics and tracing plug into a client through engine.ClientConfig.Observer;
// the metrics go to the application's own set.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := embedded.MustDial(store.DialConfig{}) // embedded Redis
	defer st.Close()
	_, _ = st.SetServiceState(ctx, "game", "room", 0, 0, store.Ready)

	set := metrics.NewSet()
	m := obs.NewMetrics(set)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	c, err := engine.NewClient(engine.ClientConfig{Store: st, Observer: obs.Join(m, obs.NewTracer(tp, obs.TracerConfig{}))})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	m.Watch(c) // its cache's hits are read from it, not reported one by one
	for range 3 {
		_, _ = c.ComputeLinkedPod(ctx, "game", "u42", "room")
	}

	var text bytes.Buffer
	set.WritePrometheus(&text)
	for _, line := range strings.Split(text.String(), "\n") {
		if strings.HasPrefix(line, "stickyroute_requests_total") || strings.HasPrefix(line, "stickyroute_cache_hits") ||
			strings.HasPrefix(line, "stickyroute_placements_total") {
			fmt.Println(line)
		}
	}
	for _, s := range spans.Ended() {
		fmt.Println("span", s.Name())
	}
	// Output:
	// stickyroute_requests_total{namespace="game",service="room",op="ComputeLinkedPod",outcome="ok"} 1
	// stickyroute_cache_hits_total 2
	// stickyroute_placements_total{namespace="game",service="room",pod="0"} 1
	// span stickyroute.ComputeLinkedPod
}

// The analyzer reads snapshots of the metrics and reports what looks wrong,
// with the figures and a suggestion.
func ExampleAnalyzer() {
	m := obs.NewMetrics(nil)
	a := obs.NewAnalyzer(m.Snapshot, obs.AnalyzerConfig{MinLookups: 10})
	a.Collect()
	for range 30 {
		m.RecordCacheMiss()
	}
	for range 10 {
		m.RecordCacheHit()
	}
	a.Collect()
	findings, _ := a.Analyze(context.Background())
	for _, f := range findings {
		fmt.Printf("%s %s: %s\n", f.Severity, f.Rule, f.Summary)
	}
	// Output:
	// critical cache_hit_ratio: cache hit ratio 25.0% is below 80.0% over 40 lookups
}
