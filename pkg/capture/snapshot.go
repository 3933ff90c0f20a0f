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
	dec   *decoder
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
	q, err := s.chunkQuery(ctx, t)
	if err != nil {
		return err
	}
	s.c.log.Info("snapshot table", zap.String("table", qn), zap.Int64("rows_done", prog.Rows))
	for {
		n, err := s.chunk(ctx, tx, t, q, prog)
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", qn, err)
		}
		s.c.log.Debug("snapshot chunk", zap.Int("rows", n), zap.Strings("last_key", prog.LastKey))
		if err := s.em.tr.drain(ctx); err != nil {
			return err
		}
		prog.Done = n < s.c.pg.SnapshotChunk
		if err := s.store.save(ctx, s.state); err != nil {
			return err
		}
		if prog.Done {
			s.c.log.Info("snapshot table done", zap.String("table", qn), zap.Int64("rows", prog.Rows))
			return nil
		}
	}
}

// chunkQueries holds the first and the following chunk queries of a table.
type chunkQueries struct{ first, next string }

// chunkQuery builds keyset-paginated queries: every column as text (the same text pgoutput
// sends), ordered by the key, the next chunk starting strictly after the last key read. Columns
// are qualified: a bare name in ORDER BY would sort by the text output column of the same name.
func (s *snapshotter) chunkQuery(ctx context.Context, t *change.Table) (chunkQueries, error) {
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		q := "src." + quoteIdent(c.Name)
		if c.PGType == "bpchar" { // bpchar::text trims padding; its output function keeps it
			cols[i] = fmt.Sprintf("CASE WHEN %s IS NULL THEN NULL ELSE concat(%s) END", q, q)
		} else {
			cols[i] = q + "::text"
		}
	}
	var keys, params []string
	for i, k := range t.KeyColumns() {
		var typ string
		if err := s.cat.conn.QueryRow(ctx, "SELECT format_type($1::int8::oid, NULL)", int64(k.TypeOID)).Scan(&typ); err != nil {
			return chunkQueries{}, fmt.Errorf("type of key column %s: %w", k.Name, err)
		}
		keys = append(keys, "src."+quoteIdent(k.Name))
		params = append(params, fmt.Sprintf("$%d::text::%s", i+1, typ))
	}
	base := fmt.Sprintf("SELECT %s FROM %s AS src", strings.Join(cols, ", "), quoteTable(t.Schema, t.Name))
	order := fmt.Sprintf(" ORDER BY %s LIMIT %d", strings.Join(keys, ", "), s.c.pg.SnapshotChunk)
	return chunkQueries{
		first: base + order,
		next:  fmt.Sprintf("%s WHERE (%s) > (%s)%s", base, strings.Join(keys, ", "), strings.Join(params, ", "), order),
	}, nil
}

func (s *snapshotter) chunk(ctx context.Context, tx pgx.Tx, t *change.Table, q chunkQueries, prog *tableProgress) (int, error) {
	query, args := q.first, []any(nil)
	if prog.LastKey != nil {
		query = q.next
		for _, k := range prog.LastKey {
			args = append(args, k)
		}
	}
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	var last []string
	for rows.Next() {
		raw := rows.RawValues()
		ev := s.event(t)
		ev.After = make(change.Row, len(t.Columns))
		last = last[:0]
		for i, c := range t.Columns {
			if raw[i] == nil {
				ev.After[c.Name] = nil
				continue
			}
			if c.Key {
				last = append(last, string(raw[i]))
			}
			if ev.After[c.Name], err = s.dec.decode(c, raw[i]); err != nil {
				return 0, fmt.Errorf("column %s: %w", c.Name, err)
			}
		}
		if err := s.em.emit(ctx, ev); err != nil {
			return 0, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if n > 0 {
		prog.LastKey = append([]string(nil), last...)
		prog.Rows += int64(n)
	}
	return n, nil
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
