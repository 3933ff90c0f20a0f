package capture

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/change"
)

// snapshotter reads the captured tables as of the slot's consistent point, in primary-key chunks,
// and publishes every row as an op=r event. Progress is saved after each chunk is acknowledged,
// so a crash re-reads at most one chunk per table.
type snapshotter struct {
	c     *Capture
	conn  *pgx.Conn // reader, inside one REPEATABLE READ transaction
	cat   *catalog
	em    *emitter
	store *stateStore
	state *snapshotState
	lsn   pglogrepl.LSN
	start time.Time
}

// run snapshots every table not yet done. exported is the snapshot name returned by
// CREATE_REPLICATION_SLOT, valid only while the replication connection stays idle; it is empty
// when resuming after a crash, in which case rows are read as of now and the slot replays every
// change since its consistent point after them (duplicates possible, loss not).
func (s *snapshotter) run(ctx context.Context, tables [][2]string, exported string) error {
	tx, err := s.conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin snapshot transaction: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	if exported != "" {
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+quoteLiteral(exported)); err != nil {
			return fmt.Errorf("import exported snapshot %s: %w", exported, err)
		}
	}
	for _, st := range tables {
		if err := s.table(ctx, tx, st[0], st[1]); err != nil {
			return err
		}
	}
	s.state.Done = true
	return s.store.save(ctx, s.state)
}

func (s *snapshotter) table(ctx context.Context, tx pgx.Tx, schema, name string) error {
	qn := schema + "." + name
	prog := s.state.Tables[qn]
	if prog == nil {
		prog = &tableProgress{}
		s.state.Tables[qn] = prog
	}
	if prog.Done {
		return nil
	}
	t, err := s.cat.table(ctx, schema, name)
	if err != nil {
		return err
	}
	if err := s.em.ensureTopic(ctx, t); err != nil {
		return err
	}
	reader, err := newChunkReader(ctx, s.cat, t, s.c.pg.SnapshotChunk, "")
	if err != nil {
		return err
	}
	estimate := estimateRows(ctx, s.cat.conn, schema, name, s.c.log)
	s.c.log.Info("snapshot table", zap.String("table", qn), zap.Int64("rows_done", prog.Rows), zap.Int64("rows_estimated", estimate))
	pl := newProgressLog(qn, s.c.log, s.c.metrics, estimate, prog.Rows)
	for {
		n, err := s.chunk(ctx, tx, reader, prog)
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", qn, err)
		}
		s.c.log.Debug("snapshot chunk", zap.Int("rows", n), zap.Strings("last_key", prog.LastKey))
		if err := s.em.tr.drain(ctx); err != nil {
			return err
		}
		pl.acked(n, prog.Rows, time.Now()) // counted once Kafka has them, like capture's changes
		prog.Done = n < s.c.pg.SnapshotChunk
		if err := s.store.save(ctx, s.state); err != nil {
			return err
		}
		if prog.Done {
			pl.done()
			s.c.log.Info("snapshot table done", zap.String("table", qn), zap.Int64("rows", prog.Rows))
			return nil
		}
	}
}

func (s *snapshotter) chunk(ctx context.Context, tx pgx.Tx, r *chunkReader, prog *tableProgress) (int, error) {
	rows, last, err := r.read(ctx, tx, prog.LastKey)
	if err != nil {
		return 0, err
	}
	for _, row := range rows {
		ev := s.event(r.t)
		ev.After = row
		if err := s.em.emit(ctx, ev); err != nil {
			return 0, err
		}
	}
	if len(rows) > 0 {
		prog.LastKey = last
		prog.Rows += int64(len(rows))
	}
	return len(rows), nil
}

func (s *snapshotter) event(t *change.Table) *change.Event {
	return &change.Event{
		Op:    change.OpRead,
		Table: t,
		Source: change.Source{
			Connector: "postgresql", Name: s.c.prefix, DB: s.c.db, Schema: t.Schema, Table: t.Name,
			LSN: int64(s.lsn), TsMs: s.start.UnixMilli(), Snapshot: "true",
		},
		TsMs: time.Now().UnixMilli(),
	}
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
