package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// copyable reports whether a batch may try the COPY path: its records all created rows in the
// source, it is one statement of upserts that COPY can express, and the last tries did not fail.
func (c *Connector) copyable(p *plan) bool {
	return c.cfg.copyInserts && p.inserts && len(p.steps) == 1 && p.steps[0].copy != "" && c.copyGate.allow()
}

// copyInserts writes a batch of new rows with COPY, which PostgreSQL loads about twice as fast as
// INSERT … ON CONFLICT (no speculative insertion, no per-row executor), in one transaction with
// the partition's next offset. COPY fails when a key is already in the table, as after a crash or
// a replay sends the records again; then, as on any other failure, the transaction is rolled back
// and copyInserts reports false: the caller applies the batch as upserts, which gives the same
// rows and reports the errors. Nothing is written twice: the failed transaction left no trace.
func (c *Connector) copyInserts(ctx context.Context, t *target, b *sink.Batch, st *step, sinkName string) bool {
	err := c.copyTx(ctx, t, b, st.copy, copyText(st), sinkName)
	if err != nil {
		c.copyFallbacks.Add(1)
		c.copyGate.failed()
		c.log.Debug("COPY of new rows failed; applying them as upserts", zap.String("topic", b.Topic),
			zap.Int32("partition", b.Partition), zap.Int("rows", st.rows), zap.Error(err))
		return false
	}
	c.copies.Add(1)
	c.copyGate.succeeded()
	return true
}

// copyTx runs the COPY statement copySQL with data (text format) into t and stores b's next
// offset, in one transaction; a failed table check fails it, and the upsert path that follows
// reports it. It takes two round trips rather than five: BEGIN goes in one query with the COPY,
// and the table check, the offset and COMMIT in one pipeline after it. The check after the COPY
// is the stronger one: the COPY holds the table's lock, so the table checked is the one written.
func (c *Connector) copyTx(ctx context.Context, t *target, b *sink.Batch, copySQL string, data []byte, sinkName string) error {
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data), "BEGIN; "+copySQL); err != nil {
		return rollback(ctx, conn.Conn(), err)
	}
	offSQL, offArgs := c.offsetStatement(sinkName, b)
	batch := &pgx.Batch{}
	batch.Queue(tableCheckSQL, t.ident, int64(t.oid))
	batch.Queue(offSQL, offArgs...)
	batch.Queue("COMMIT")
	br := conn.SendBatch(ctx, batch)
	for i := range batch.Len() {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			if i == 1 && fencedErr(err) {
				err = c.fenced(b)
			}
			return rollback(ctx, conn.Conn(), err)
		}
	}
	if err := br.Close(); err != nil {
		return rollback(ctx, conn.Conn(), err)
	}
	return nil
}

// rollback ends the failed transaction conn is in, if any, and returns err. A connection it
// cannot roll back is left in its transaction, and the pool closes it when it is released.
func rollback(ctx context.Context, conn *pgx.Conn, err error) error {
	if conn.PgConn().TxStatus() == 'I' || conn.PgConn().IsClosed() {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	_, _ = conn.Exec(ctx, "ROLLBACK")
	return err
}

// rollbackTimeout bounds the ROLLBACK of a failed COPY transaction.
const rollbackTimeout = 5 * time.Second

// copyText writes a step's rows in COPY's text format: values separated by tabs, rows ended by a
// newline, \N for NULL, and backslash, tab, newline and carriage return escaped with a backslash.
func copyText(st *step) []byte {
	cols := make([]textColumn, len(st.args))
	size := 0
	for i, a := range st.args {
		cols[i] = a.(textColumn)
		for _, v := range cols[i] {
			size += len(v.String) + 1
		}
	}
	buf := make([]byte, 0, size+size/16)
	for r := range st.rows {
		for i, col := range cols {
			if i > 0 {
				buf = append(buf, '\t')
			}
			if v := col[r]; !v.Valid {
				buf = append(buf, `\N`...)
			} else {
				buf = appendCopyEscaped(buf, v.String)
			}
		}
		buf = append(buf, '\n')
	}
	return buf
}

// appendCopyEscaped appends s to buf, escaped for COPY's text format.
func appendCopyEscaped[T ~string | ~[]byte](buf []byte, s T) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		var esc byte
		switch s[i] {
		case '\\':
			esc = '\\'
		case '\t':
			esc = 't'
		case '\n':
			esc = 'n'
		case '\r':
			esc = 'r'
		default:
			continue
		}
		buf = append(buf, s[start:i]...)
		buf = append(buf, '\\', esc)
		start = i + 1
	}
	return append(buf, s[start:]...)
}

// maxCopyPause is the most batches that skip COPY after failed tries.
const maxCopyPause = 1024

// copyGate stops trying COPY for a while after it failed, so that a replay over rows the target
// already has does not pay for a failed COPY on every batch: after n failures in a row the next
// min(2^n, 1024) eligible batches go straight to the upsert.
type copyGate struct {
	mu    sync.Mutex
	skip  int // eligible batches still to skip
	pause int // the last pause
}

func (g *copyGate) allow() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.skip > 0 {
		g.skip--
		return false
	}
	return true
}

func (g *copyGate) failed() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pause = min(max(2*g.pause, 1), maxCopyPause)
	g.skip = g.pause
}

func (g *copyGate) succeeded() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pause = 0
}

// offsetStatement is the statement storing b's next offset: fenced when the runtime holds a
// fence for b's partition (see sink.Fence), plain for replays and resets.
func (c *Connector) offsetStatement(sinkName string, b *sink.Batch) (string, []any) {
	if !b.Fence.Held {
		return c.offUpsert, []any{sinkName, b.Topic, b.Partition, b.NextOffset}
	}
	var held *int64 // NULL: the partition must have no stored offset yet
	if b.Fence.Offset >= 0 {
		held = &b.Fence.Offset
	}
	return c.offFenced, []any{sinkName, b.Topic, b.Partition, b.NextOffset, held}
}

// queueOffset queues the statement storing b's next offset.
func (c *Connector) queueOffset(batch *pgx.Batch, sinkName string, b *sink.Batch) {
	sql, args := c.offsetStatement(sinkName, b)
	batch.Queue(sql, args...)
}

// fencedErr reports whether the offset statement failed because its fence no longer holds.
func fencedErr(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "22012" // division_by_zero, see offsetsFencedSQL
}

// fenced is the error of a batch refused by its fence.
func (c *Connector) fenced(b *sink.Batch) error {
	return fmt.Errorf("store offset of %s/%d in %s.%s: %w", b.Topic, b.Partition, c.cfg.offSchema, c.cfg.offTable, sink.ErrFenced)
}
