package capture

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/observe"
)

// A snapshot logs its progress every progressRows rows or every progressEvery, whichever comes
// first, checked after each acknowledged chunk: often enough that a table of hundreds of millions
// of rows is not hours of silence, rarely enough that a fast one does not flood the log.
const (
	progressRows  = 100_000
	progressEvery = 10 * time.Second
)

// estimateQuery is PostgreSQL's cheap row estimate (no count(*)): reltuples as of the last
// VACUUM or ANALYZE, else the statistics' live tuples. reltuples is -1 on a table never vacuumed
// or analyzed (PostgreSQL 14 and later) and 0 before that.
const estimateQuery = `SELECT c.reltuples::int8, coalesce(s.n_live_tup, 0)
	FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
	WHERE c.oid = $1::text::regclass`

// estimateRows returns the estimated row count of a table, 0 when PostgreSQL has none: progress
// is a guide, so a failure to read it never stops the snapshot.
func estimateRows(ctx context.Context, db querier, schema, name string, log *zap.Logger) int64 {
	rows, err := db.Query(ctx, estimateQuery, quoteTable(schema, name))
	if err != nil {
		log.Debug("no row estimate", zap.String("table", schema+"."+name), zap.Error(err))
		return 0
	}
	defer rows.Close()
	var reltuples, live int64
	if rows.Next() {
		err = rows.Scan(&reltuples, &live)
	}
	if err != nil || rows.Err() != nil {
		log.Debug("no row estimate", zap.String("table", schema+"."+name), zap.Error(err), zap.NamedError("rows", rows.Err()))
		return 0
	}
	if reltuples > 0 {
		return reltuples
	}
	return max(live, 0)
}

// progressLog reports one table's snapshot: the log line now and then, the metrics after every
// acknowledged chunk.
type progressLog struct {
	table               string
	log                 *zap.Logger
	metrics             *observe.Metrics
	estimate, startDone int64
	started             time.Time
	lastLog             time.Time
	lastRows            int64
}

func newProgressLog(table string, log *zap.Logger, m *observe.Metrics, estimate, done int64) *progressLog {
	now := time.Now()
	m.SnapshotStarted(table, estimate, done)
	return &progressLog{table: table, log: log, metrics: m, estimate: estimate, startDone: done,
		started: now, lastLog: now, lastRows: done}
}

// acked records n more rows acknowledged by Kafka, done in all, and logs when it is time.
func (p *progressLog) acked(n int, done int64, now time.Time) {
	p.metrics.SnapshotRows(p.table, n)
	if done-p.lastRows < progressRows && now.Sub(p.lastLog) < progressEvery {
		return
	}
	p.lastLog, p.lastRows = now, done
	pr := observe.SnapshotProgressAt(p.table, p.estimate, p.startDone, done, p.started, now)
	fields := []zap.Field{zap.String("table", p.table), zap.Int64("rows_done", pr.Done), zap.Int64("rows_estimated", pr.Estimated),
		zap.Float64("percent", round1(pr.Percent)), zap.Float64("rows_per_sec", round1(pr.RowsPerSec))}
	if pr.ETASeconds >= 0 {
		fields = append(fields, zap.Duration("eta", time.Duration(pr.ETASeconds*float64(time.Second)).Round(time.Second)))
	}
	p.log.Info("snapshot progress", fields...)
}

// done records that the table is snapshotted.
func (p *progressLog) done() { p.metrics.SnapshotDone(p.table) }

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }
