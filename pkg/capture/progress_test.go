package capture_test

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// TestSnapshotProgressMetrics snapshots a table of some thousands of rows in small chunks: the
// rows counter reaches the table's row count, as do the captured changes, nothing remains once
// it is done, and the snapshot started from PostgreSQL's estimate.
func TestSnapshotProgressMetrics(t *testing.T) {
	const rows = 3000
	e := newEnv(t, "public.p")
	e.exec(`CREATE TABLE public.p (id int PRIMARY KEY, v text);
		INSERT INTO public.p SELECT g, 'v' || g FROM generate_series(1, 3000) g; ANALYZE public.p`)
	e.cfg.Source.Postgres.SnapshotChunk = 70 // not a divisor: the last chunk is short
	m := observe.NewMetrics()
	core, logs := observer.New(zapcore.InfoLevel)
	e.opts = append(e.opts, capture.WithMetrics(m), capture.WithLogger(zap.New(core)))
	e.start()
	e.waitEvents("wh.public.p", rows)
	eventually(t, "the snapshot is counted and done", func() error {
		done, left := metricSum(t, m, "backflow_snapshot_rows_total"), metricSum(t, m, "backflow_snapshot_rows_remaining")
		if done != rows || left != 0 || len(m.Snapshots()) != 0 {
			return notYet("rows %v, remaining %v, in progress %+v", done, left, m.Snapshots())
		}
		// The rows are captured changes too (op r), counted a chunk at a time.
		if changes := metricSum(t, m, "backflow_capture_changes_total"); changes != rows {
			return notYet("captured changes %v", changes)
		}
		return nil
	})
	started := logs.FilterMessage("snapshot table").AllUntimed()
	if len(started) != 1 || started[0].ContextMap()["rows_estimated"] != int64(rows) {
		t.Errorf("snapshot table logs %+v, want one with rows_estimated %d", started, rows)
	}
}
