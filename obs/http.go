package obs

import (
	"net/http"
)

// Handler serves the metrics and the analyzer's report:
//
//	/metrics       Prometheus text of m's set
//	/report        the analyzer's report as text
//	/report.json   the same as JSON
//
// Either of m and a may be nil; its paths then answer 404. The report is
// generated on each request from the history the analyzer holds.
func Handler(m *Metrics, a *Analyzer) http.Handler {
	mux := http.NewServeMux()
	if m != nil {
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			m.WritePrometheus(w)
		})
	}
	if a != nil {
		mux.HandleFunc("GET /report", func(w http.ResponseWriter, r *http.Request) {
			rep, err := a.GenerateReport(r.Context())
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_ = rep.WriteText(w)
		})
		mux.HandleFunc("GET /report.json", func(w http.ResponseWriter, r *http.Request) {
			rep, err := a.GenerateReport(r.Context())
			if err == nil {
				var b []byte
				if b, err = rep.JSON(); err == nil {
					w.Header().Set("Content-Type", "application/json")
					_, _ = w.Write(b)
					return
				}
			}
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		})
	}
	return mux
}
