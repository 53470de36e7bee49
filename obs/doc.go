// Package obs lets operators see each routing decision: Prometheus-style
// metrics (VictoriaMetrics), OpenTelemetry traces and a performance analyzer.
//
// The engine reports through engine.Observer, an interface it declares;
// Metrics and Tracer implement it and Join combines them:
//
//	set := metrics.NewSet()                // the application's set
//	m := obs.NewMetrics(set)
//	t := obs.NewTracer(tracerProvider, obs.TracerConfig{ServerAddress: "redis:6379"})
//	client, err := engine.NewClient(engine.ClientConfig{Store: st, Observer: obs.Join(m, t)})
//	m.Watch(client)                        // m.Unwatch(client) once it is closed
//
// Cache hits make no span and take no time here: the metrics read the
// watched clients' cache counters when the set is written. Every operation
// that reaches Redis is counted, timed and traced (one span, with the
// database attributes of its round trips; optionally a child span per round
// trip).
//
// An Analyzer keeps a rolling history of Metrics snapshots (read from the
// metrics, not from their text) and reports what looks wrong (hit ratio, p99,
// placement skew, store errors, heartbeats, tracking lag) with the numbers
// and a suggestion; Handler serves /metrics and the report over HTTP.
package obs
