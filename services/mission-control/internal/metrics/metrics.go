// Package metrics holds mission-control's own Prometheus metrics: turns by
// backend and outcome and their duration, events stored by kind, run
// takeovers, and gauges read on scrape (SSE clients, queued messages,
// active runs).
package metrics

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sortie.dev/services/mission-control/internal/control"
	"sortie.dev/services/mission-control/internal/event"
	"sortie.dev/services/mission-control/internal/events"
	"sortie.dev/services/mission-control/internal/missions"
)

// Sources are what the metrics read.
type Sources struct {
	// Missions gives a finished turn's backend and terminal reason.
	Missions interface {
		Load(ctx context.Context, id string) (*missions.Mission, error)
	}
	// Runs gives a finished turn's start, and the queue and run counts.
	Runs interface {
		Run(ctx context.Context, mission string) (*control.Run, error)
		QueueDepth(ctx context.Context) (int64, error)
		ActiveRuns(ctx context.Context) (int64, error)
	}
	// SSEClients counts this replica's open event streams.
	SSEClients func() int
	Log        *slog.Logger
}

// Metrics records mission-control's metrics. It is the events store's
// observer: a turn ends with its fenced terminal mission_status_changed,
// stored exactly once whichever replica drives it.
type Metrics struct {
	src       Sources
	runs      *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	events    *prometheus.CounterVec
	takeovers prometheus.Counter
}

// New registers the metrics on reg.
func New(reg prometheus.Registerer, src Sources) *Metrics {
	if src.Log == nil {
		src.Log = slog.Default()
	}
	m := &Metrics{
		src: src,
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sortie_mc_runs_total",
			Help: "Turns finished, by backend and outcome (completed, failed, cancelled, interrupted).",
		}, []string{"backend", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sortie_mc_turn_duration_seconds",
			Help:    "Time from a turn's start to its final status, by backend.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600},
		}, []string{"backend"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sortie_mc_events_appended_total",
			Help: "Mission events stored, by kind (rate() gives events per second).",
		}, []string{"kind"}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sortie_mc_run_takeovers_total",
			Help: "Runs this replica took over after their driver stopped renewing the lease.",
		}),
	}
	reg.MustRegister(m.runs, m.duration, m.events, m.takeovers, &gauges{src: src})
	return m
}

var _ events.Observer = (*Metrics)(nil)

// Appended counts a stored event and, for the end of a turn, the turn.
func (m *Metrics) Appended(ctx context.Context, e event.Event, o events.AppendOptions) {
	m.events.WithLabelValues(string(e.Kind)).Inc()
	if e.Kind != event.KindMissionStatusChanged || o.Fence == nil || e.Status == string(missions.Active) {
		return
	}
	backend, outcome := "unknown", e.Status
	if ms, err := m.src.Missions.Load(ctx, e.MissionID); err == nil {
		backend = ms.Backend
		if ms.TerminalReason == "cancelled" {
			outcome = "cancelled"
		}
	}
	m.runs.WithLabelValues(backend, outcome).Inc()
	if run, err := m.src.Runs.Run(ctx, e.MissionID); err == nil && run != nil && !run.StartedAt.IsZero() {
		m.duration.WithLabelValues(backend).Observe(e.Time.Sub(run.StartedAt).Seconds())
	}
}

// TookOver counts a run taken over.
func (m *Metrics) TookOver(string) { m.takeovers.Inc() }

// gauges reads the current values at each scrape.
type gauges struct{ src Sources }

var (
	sseDesc    = prometheus.NewDesc("sortie_mc_sse_clients", "Open event streams on this replica.", nil, nil)
	queueDesc  = prometheus.NewDesc("sortie_mc_queue_depth", "Messages waiting in users' queues (all replicas).", nil, nil)
	activeDesc = prometheus.NewDesc("sortie_mc_active_runs", "Turns in progress (all replicas).", nil, nil)
)

func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- sseDesc
	ch <- queueDesc
	ch <- activeDesc
}

// Collect reads Redis with a short timeout; a gauge it cannot read is
// left out of this scrape rather than reported wrong.
func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(sseDesc, prometheus.GaugeValue, float64(g.src.SSEClients()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, r := range []struct {
		desc *prometheus.Desc
		read func(context.Context) (int64, error)
	}{{queueDesc, g.src.Runs.QueueDepth}, {activeDesc, g.src.Runs.ActiveRuns}} {
		n, err := r.read(ctx)
		if err != nil {
			g.src.Log.Warn("cannot read a metric", "metric", r.desc.String(), "error", err.Error())
			continue
		}
		ch <- prometheus.MustNewConstMetric(r.desc, prometheus.GaugeValue, float64(n))
	}
}
