package observe

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ModelStatus is one model's last runs, as recorded in the capture state topic.
type ModelStatus struct {
	Name  string `json:"name"`
	Topic string `json:"topic"`
	// Run is the number of the last committed run, 0 before the first; Rows its result's size.
	Run         int64      `json:"run"`
	Rows        int64      `json:"rows"`
	CommittedAt *time.Time `json:"committed_at,omitempty"`
	// LastAttempt is when a run last ended, successful or not (runs that changed nothing after a
	// successful one are recorded at most once a minute); LastChanges what it published.
	LastAttempt *time.Time       `json:"last_attempt,omitempty"`
	LastChanges map[string]int64 `json:"last_changes,omitempty"`
	// Error is why the last attempt failed; "" when it succeeded.
	Error string `json:"error,omitempty"`
}

// AddModels adds the models' status and a problem for each model whose last run failed.
func (s *Status) AddModels(models []ModelStatus) {
	s.Models = models
	for _, m := range models {
		if m.Error != "" {
			s.Problems = append(s.Problems, fmt.Sprintf("model %s: last run failed: %s (retried at its next schedule)", m.Name, m.Error))
		}
	}
	s.Healthy = len(s.Problems) == 0
}

// modelMetrics count the runs of models and what they published.
type modelMetrics struct {
	runs        *prometheus.CounterVec
	changes     *prometheus.CounterVec
	rows        *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	duration    *prometheus.HistogramVec
}

func newModelMetrics(reg *prometheus.Registry) *modelMetrics {
	mm := &modelMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_model_runs_total",
			Help: "Model runs by result: ok, failed, or skipped (another process was running the model)."}, []string{"model", "result"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_model_changes_total",
			Help: "Changes model runs published and committed, by op."}, []string{"model", "op"}),
		rows: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backflow_model_rows",
			Help: "Rows in the model's last committed result."}, []string{"model"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backflow_model_last_success_timestamp_seconds",
			Help: "Unix time of the model's last successful run."}, []string{"model"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "backflow_model_run_duration_seconds",
			Help: "Time of a successful model run: query, diff, publish and commit.", Buckets: prometheus.ExponentialBuckets(0.01, 3, 10)}, []string{"model"}),
	}
	reg.MustRegister(mm.runs, mm.changes, mm.rows, mm.lastSuccess, mm.duration)
	return mm
}

// ModelRun records a successful run of a model: its result's rows and the changes it published.
func (m *Metrics) ModelRun(model string, rows int64, changes map[string]int64, took time.Duration) {
	if m == nil {
		return
	}
	m.models.runs.WithLabelValues(model, "ok").Inc()
	for op, n := range changes {
		m.models.changes.WithLabelValues(model, op).Add(float64(n))
	}
	m.models.rows.WithLabelValues(model).Set(float64(rows))
	m.models.lastSuccess.WithLabelValues(model).Set(float64(time.Now().Unix()))
	m.models.duration.WithLabelValues(model).Observe(took.Seconds())
	m.Progress("model/" + model)
}

// ModelFailed counts a failed run of a model.
func (m *Metrics) ModelFailed(model string) {
	if m == nil {
		return
	}
	m.models.runs.WithLabelValues(model, "failed").Inc()
	m.Error("model/" + model)
}

// ModelSkipped counts a run skipped because another process was running the model.
func (m *Metrics) ModelSkipped(model string) {
	if m == nil {
		return
	}
	m.models.runs.WithLabelValues(model, "skipped").Inc()
}
