package repo

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the repository's Prometheus metrics.
type Metrics struct {
	ops         *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	pushPending prometheus.Gauge
}

// NewMetrics creates the metrics and registers them on reg (nil: not
// registered, for tests and tools).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sortie_library_git_operations_total",
			Help: "Git operations of the library by operation (clone, commit, push, fetch, force_push, reset, log) and result (ok, error).",
		}, []string{"op", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sortie_library_git_operation_duration_seconds",
			Help:    "Time taken by a git operation of the library, by operation.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"op"}),
		pushPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sortie_library_push_failing",
			Help: "1 while the last push of the library failed and awaits a retry, else 0.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.ops, m.duration, m.pushPending)
	}
	return m
}

func (m *Metrics) observe(op string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.ops.WithLabelValues(op, result).Inc()
	m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}
