package observe

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SnapshotProgress is one table of a snapshot in progress, as the capture process sees it. The
// total is PostgreSQL's estimate (pg_class.reltuples or pg_stat_user_tables.n_live_tup): it may
// be off by a lot on a table not analyzed lately, so Percent is capped at 100 and the ETA is a
// guide, not a promise.
type SnapshotProgress struct {
	Table string `json:"table"`
	// Done counts the rows Kafka acknowledged, previous runs of this snapshot included.
	Done int64 `json:"done"`
	// Estimated is the estimated row count, 0 when PostgreSQL has none (never analyzed).
	Estimated int64 `json:"estimated"`
	// Percent is Done of Estimated, capped at 100; 0 without an estimate.
	Percent float64 `json:"percent"`
	// RowsPerSec is the rate of this run (rows acknowledged since it started on the table).
	RowsPerSec float64 `json:"rows_per_sec"`
	// ETASeconds is the time the remaining estimated rows take at RowsPerSec; -1 when unknown.
	ETASeconds float64   `json:"eta_seconds"`
	Started    time.Time `json:"started"`
}

// snapshotRun is what Metrics keeps of a table being snapshotted to compute its progress.
type snapshotRun struct {
	estimate, startDone, done int64
	started                   time.Time
}

// progressAt computes the progress of r at now: the rate counts only this run's rows, since rows
// of an earlier run took an unknown time.
func (r snapshotRun) progressAt(table string, now time.Time) SnapshotProgress {
	p := SnapshotProgress{Table: table, Done: r.done, Estimated: r.estimate, ETASeconds: -1, Started: r.started}
	if r.estimate > 0 {
		p.Percent = min(100, 100*float64(r.done)/float64(r.estimate))
	}
	if secs := now.Sub(r.started).Seconds(); secs > 0 {
		p.RowsPerSec = float64(r.done-r.startDone) / secs
	}
	if p.RowsPerSec > 0 && r.estimate > 0 {
		p.ETASeconds = float64(max(r.estimate-r.done, 0)) / p.RowsPerSec
	}
	return p
}

// snapshotMetrics count the rows a snapshot published and those it has left, by table.
type snapshotMetrics struct {
	rows      *prometheus.CounterVec
	remaining *prometheus.GaugeVec
}

func newSnapshotMetrics(reg *prometheus.Registry) *snapshotMetrics {
	s := &snapshotMetrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_snapshot_rows_total",
			Help: "Rows of the initial snapshot and of re-snapshots read and acknowledged by Kafka, by table."}, []string{"table"}),
		remaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backflow_snapshot_rows_remaining",
			Help: "Estimated rows the snapshot or re-snapshot of a table has left to read, by table (0 once the table is done)."}, []string{"table"}),
	}
	reg.MustRegister(s.rows, s.remaining)
	return s
}

// SnapshotStarted records that the snapshot of table starts (or resumes with done rows already
// acknowledged), with PostgreSQL's estimate of its rows (0: none).
func (m *Metrics) SnapshotStarted(table string, estimate, done int64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.snapshots[table] = &snapshotRun{estimate: estimate, startDone: done, done: done, started: time.Now()}
	m.snap.remaining.WithLabelValues(table).Set(float64(max(estimate-done, 0)))
}

// SnapshotRows counts n more rows of table acknowledged by Kafka.
func (m *Metrics) SnapshotRows(table string, n int) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.snap.rows.WithLabelValues(table).Add(float64(n))
	if r, ok := m.snapshots[table]; ok {
		r.done += int64(n)
		m.snap.remaining.WithLabelValues(table).Set(float64(max(r.estimate-r.done, 0)))
	}
	m.progress[ComponentCapture] = time.Now() // a long snapshot is progress, not a stall
}

// SnapshotDone records that table is snapshotted: it leaves the status and nothing remains.
func (m *Metrics) SnapshotDone(table string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.snapshots, table)
	m.snap.remaining.WithLabelValues(table).Set(0)
}

// Snapshots returns the tables being snapshotted now, by name.
func (m *Metrics) Snapshots() []SnapshotProgress {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	var out []SnapshotProgress
	for _, t := range slices.Sorted(maps.Keys(m.snapshots)) {
		out = append(out, m.snapshots[t].progressAt(t, now))
	}
	return out
}

// SnapshotProgressAt computes a table's progress at now, for capture's log lines: done rows of
// estimate, startDone of them acknowledged before started.
func SnapshotProgressAt(table string, estimate, startDone, done int64, started, now time.Time) SnapshotProgress {
	return snapshotRun{estimate: estimate, startDone: startDone, done: done, started: started}.progressAt(table, now)
}

// String writes the progress for people: "public.orders: 1200 of ~5000 rows (24.0%), 350 rows/s, ETA 11s".
func (p SnapshotProgress) String() string {
	total := " rows (no estimate)"
	if p.Estimated > 0 {
		total = fmt.Sprintf(" of ~%d rows (%.1f%%)", p.Estimated, p.Percent)
	}
	eta := ""
	if p.ETASeconds >= 0 {
		eta = ", ETA " + time.Duration(p.ETASeconds*float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("%s: %d%s, %.0f rows/s%s", p.Table, p.Done, total, p.RowsPerSec, eta)
}
