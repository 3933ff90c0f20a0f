package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/sink"
)

var _ sink.RowLoader = (*Connector)(nil)

// errCopyPaused: COPY failed lately (see copyGate), so rows go as records for a while.
var errCopyPaused = errors.New("COPY is paused after failed tries")

// rowLayout is how the columns of one source table are written into the target by COPY: the
// same rows the records path would upsert, in COPY's text format, without a Record per row.
type rowLayout struct {
	t       *target // the catalog the layout was built from
	copySQL string
	cols    []rowColumn // per source column
}

// rowColumn is one source column in a rowLayout.
type rowColumn struct {
	skip bool // the mapping leaves the column out
	sep  bool // a tab goes before the value (not the first written column)
	key  bool
	typ  *colType
}

// RowBuffer returns a buffer that COPYs rows of table t into the target (see sink.RowLoader).
// It refuses when copy_inserts is off, COPY failed lately, the target table does not exist yet
// or has a soft delete or version column, a mapped field is not a plain writable column, or a
// column's wire form differs from its mapped value for the column's type.
func (c *Connector) RowBuffer(t *change.Table, fields []string) (sink.RowBuffer, error) {
	if !c.cfg.copyInserts {
		return nil, errors.New("copy_inserts is off")
	}
	if !c.copyGate.allow() {
		return nil, errCopyPaused
	}
	cur := c.target.Load()
	if c.stale.Load() {
		return nil, errors.New("the table's catalog is being re-read")
	}
	l, err := c.layout(cur, t, fields)
	if err != nil {
		return nil, err
	}
	return &rowBuffer{c: c, l: l, buf: make([]byte, 0, c.rowBufSize())}, nil
}

// layout returns the cached layout of t for the current catalog, building it when needed.
func (c *Connector) layout(cur *target, t *change.Table, fields []string) (*rowLayout, error) {
	if v, ok := c.layouts.Load(t); ok {
		if l := v.(*rowLayout); l.t == cur {
			return l, nil
		}
	}
	l, err := newRowLayout(cur, t, fields)
	if err != nil {
		return nil, err
	}
	c.layouts.Store(t, l)
	return l, nil
}

func newRowLayout(tg *target, t *change.Table, fields []string) (*rowLayout, error) {
	switch {
	case !tg.exists:
		return nil, fmt.Errorf("table %s does not exist yet", tg.qualifiedName())
	case tg.softDelete >= 0 || tg.version >= 0:
		return nil, errors.New("the table has a soft delete or version column")
	}
	l := &rowLayout{t: tg, cols: make([]rowColumn, len(t.Columns))}
	var idents []string
	keys := 0
	for i, src := range t.Columns {
		name := fields[i]
		if name == "" {
			l.cols[i].skip = true
			continue
		}
		ci, ok := tg.byName[name]
		if !ok || !tg.cols[ci].writable || tg.cols[ci].always {
			return nil, fmt.Errorf("field %q is not a plain writable column of %s", name, tg.qualifiedName())
		}
		col := &tg.cols[ci]
		if !sameText(src.Kind, col.typ.kind) {
			return nil, fmt.Errorf("column %q (%s) goes into %s through its mapped value", src.Name, src.Kind, col.typ.name)
		}
		l.cols[i] = rowColumn{sep: len(idents) > 0, key: tg.isKey[ci], typ: col.typ}
		if tg.isKey[ci] {
			keys++
		}
		idents = append(idents, col.ident)
	}
	if keys != len(tg.key) {
		return nil, errors.New("the mapping does not give every key field")
	}
	l.copySQL = "COPY " + tg.ident + " (" + strings.Join(idents, ", ") + ") FROM STDIN"
	return l, nil
}

// sameText reports whether a column of source kind k, written as it is decoded, reads the same
// into a target column of kind tk as its mapped value: true for every kind the mapping passes on
// unchanged, and for timestamptz into timestamptz (its RFC 3339 wire text is the same instant).
func sameText(k change.Kind, tk kind) bool {
	switch k {
	case change.KindDate, change.KindTime, change.KindTimestamp, change.KindArray:
		return false
	case change.KindTimestampTZ:
		return tk == kTimestamptz
	}
	return true
}

// rowBufSize is the capacity new buffers start with: the largest batch so far, so that a buffer
// grows once at most.
func (c *Connector) rowBufSize() int { return int(c.rowBufHint.Load()) }

// rowBuffer is a batch of rows in COPY's text format.
type rowBuffer struct {
	c    *Connector
	l    *rowLayout
	buf  []byte
	rows int
	bad  bool // a null key field in the current row
}

func (b *rowBuffer) begin(col int) bool {
	rc := &b.l.cols[col]
	if rc.skip {
		return false
	}
	if rc.sep {
		b.buf = append(b.buf, '\t')
	}
	return true
}

// Null writes SQL NULL.
func (b *rowBuffer) Null(col int) {
	if b.begin(col) {
		b.buf = append(b.buf, `\N`...)
		b.bad = b.bad || b.l.cols[col].key
	}
}

// Bool writes a boolean as textValue does.
func (b *rowBuffer) Bool(col int, v bool) {
	if b.begin(col) {
		b.buf = strconv.AppendBool(b.buf, v)
	}
}

// Int writes an integer.
func (b *rowBuffer) Int(col int, v int64) {
	if b.begin(col) {
		b.buf = strconv.AppendInt(b.buf, v, 10)
	}
}

// Float32 writes a float4 value as textValue does.
func (b *rowBuffer) Float32(col int, v float32) {
	if b.begin(col) {
		b.buf = append(b.buf, floatText(float64(v), 32)...)
	}
}

// Float64 writes a float8 value as textValue does.
func (b *rowBuffer) Float64(col int, v float64) {
	if b.begin(col) {
		b.buf = append(b.buf, floatText(v, 64)...)
	}
}

// String writes text, escaped for COPY (hex for a bytea column, as textValue does).
func (b *rowBuffer) String(col int, v []byte) {
	if b.begin(col) {
		if b.l.cols[col].typ.kind == kBytea {
			b.buf = appendCopyEscaped(b.buf, hexBytes(v))
			return
		}
		b.buf = appendCopyEscaped(b.buf, v)
	}
}

// Bytes writes bytes as textValue does, escaped for COPY.
func (b *rowBuffer) Bytes(col int, v []byte) {
	if b.begin(col) {
		b.buf = appendCopyEscaped(b.buf, bytesText(v, b.l.cols[col].typ))
	}
}

// EndRow ends the row; false when a key field was null.
func (b *rowBuffer) EndRow() bool {
	b.buf = append(b.buf, '\n')
	b.rows++
	ok := !b.bad
	b.bad = false
	return ok
}

// Load COPYs the rows and stores the batch's next offset in one transaction. A failure (a key
// the table has already, after a crash or a replay) rolls everything back and pauses COPY as the
// records path does.
func (b *rowBuffer) Load(ctx context.Context, batch *sink.Batch) error {
	c := b.c
	if c.target.Load() != b.l.t || c.stale.Load() {
		return errors.New("the table's catalog changed")
	}
	c.rowBufHint.Store(max(c.rowBufHint.Load(), int64(len(b.buf))))
	sinkName := batch.Sink
	if sinkName == "" {
		sinkName = c.cfg.sinkName
	}
	if err := c.verifyTable(ctx, sinkName, b.l.t, batch); err != nil {
		return err
	}
	if err := c.copyTx(ctx, b.l.t, batch, b.l.copySQL, b.buf, sinkName); err != nil {
		c.copyFallbacks.Add(1)
		c.copyGate.failed()
		return fmt.Errorf("COPY %d rows into %s: %w", b.rows, b.l.t.qualifiedName(), err)
	}
	c.copies.Add(1)
	c.copyGate.succeeded()
	return nil
}
