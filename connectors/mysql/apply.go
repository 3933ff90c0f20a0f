package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/backflow-dev/backflow/pkg/sink"
)

const (
	// maxPlaceholders is the protocol's limit on parameters of one prepared statement.
	maxPlaceholders = 65535
	// maxStatementRows caps the rows of one multi-row statement: with 10,000-row batches,
	// 500 to 2,000 rows per statement measured fastest; 9,000-row statements were slower.
	maxStatementRows = 1000
)

// upRow is one upsert record resolved against the table's columns.
type upRow struct {
	rec         *sink.Record
	vals        []any // converted values by column position; only the group's columns are set
	softDeleted bool  // a soft delete: nothing to do when the row is absent
}

// group is a run of upserts that set the same columns (records lacking unchanged-TOAST fields
// set fewer columns and form their own group).
type group struct {
	cols []*column
	rows []*upRow
	// missing is a NOT NULL column without a default that the records lack: they cannot be
	// inserted, so their rows are updated one by one instead of upserted.
	missing *column
}

// segment is a run of records with distinct keys, ended by a truncate or by a key seen again:
// its deletes, then its upserts, then maybe the truncate. As its keys are distinct, the order
// among its deletes and upserts does not change the result; deletes go first so that a row
// deleted and another inserted with the same unique value do not collide. Batches are
// coalesced, so a batch is normally one segment per truncate.
type segment struct {
	deletes  []*sink.Record
	groups   []*group
	truncate *sink.Record
}

// unknownFieldError is a record field the table has no (writable) column for.
type unknownFieldError struct{ msg string }

func (e *unknownFieldError) Error() string { return e.msg }

// Apply writes the batch and its next offset in one transaction.
func (c *Connector) Apply(ctx context.Context, b *sink.Batch) error {
	if b == nil {
		return errors.New("mysql: nil batch")
	}
	if c.stale.Load() {
		if err := c.reload(ctx); err != nil {
			return err
		}
	}
	meta := c.meta.Load()
	segs, err := c.plan(meta, b)
	var ufe *unknownFieldError
	if errors.As(err, &ufe) {
		// The table may have gained the column since it was read.
		if rerr := c.reload(ctx); rerr != nil {
			return rerr
		}
		meta = c.meta.Load()
		segs, err = c.plan(meta, b)
		if errors.As(err, &ufe) {
			// Every record carries the mapped fields: the mapping or the table needs fixing,
			// and dead-lettering the records would not help.
			return sink.Retryable(err)
		}
	}
	if err != nil {
		return err
	}

	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return classify(ctx, fmt.Errorf("mysql: begin: %w", err))
	}
	if err := c.applyTx(ctx, tx, meta, b, segs); err != nil {
		_ = tx.Rollback()
		return c.failed(ctx, err)
	}
	if err := tx.Commit(); err != nil {
		// The outcome is unknown; applying the batch again is safe.
		return c.failed(ctx, fmt.Errorf("mysql: commit: %w", err))
	}
	return nil
}

func (c *Connector) failed(ctx context.Context, err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && schemaCodes[me.Number] {
		c.stale.Store(true)
	}
	return classify(ctx, err)
}

func (c *Connector) reload(ctx context.Context) error {
	meta, err := c.loadMeta(ctx)
	if err != nil {
		// The table is gone or its key no longer fits: wait for someone to fix it.
		if !sink.IsRetryable(err) {
			err = sink.Retryable(err)
		}
		return err
	}
	c.meta.Store(meta)
	c.stale.Store(false)
	return nil
}

func (c *Connector) applyTx(ctx context.Context, tx *sql.Tx, meta *tableMeta, b *sink.Batch, segs []segment) error {
	sinkName := b.Sink
	if sinkName == "" {
		sinkName = c.sinkName
	}
	if err := c.checkFence(ctx, tx, sinkName, b); err != nil {
		return err
	}
	for _, s := range segs {
		if err := c.execDeletes(ctx, tx, meta, s.deletes); err != nil {
			return err
		}
		for _, g := range s.groups {
			exec := c.execUpserts
			if g.missing != nil {
				exec = c.execUpdates
			}
			if err := exec(ctx, tx, meta, g); err != nil {
				return err
			}
		}
		if s.truncate != nil {
			if err := c.execTruncate(ctx, tx, meta, s.truncate); err != nil {
				return err
			}
		}
	}
	if _, err := tx.ExecContext(ctx, c.offsetSQL, sinkName, b.Topic, b.Partition, b.NextOffset); err != nil {
		return fmt.Errorf("mysql: store offset in %s: %w", c.offsets, err)
	}
	return nil
}

// checkFence locks the partition's stored offset, first thing in the batch's transaction, and
// refuses the batch (sink.ErrFenced) when it is not the one the runtime's fence holds: another
// worker has written the partition since this one was assigned it (see sink.Fence). A second
// writer of the partition waits on the lock until the first commits, then sees its offset.
func (c *Connector) checkFence(ctx context.Context, tx *sql.Tx, sinkName string, b *sink.Batch) error {
	if !b.Fence.Held {
		return nil
	}
	stored := int64(-1)
	err := tx.QueryRowContext(ctx, c.fenceSQL, sinkName, b.Topic, b.Partition).Scan(&stored)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("mysql: lock offset of %s/%d in %s: %w", b.Topic, b.Partition, c.offsets, err)
	}
	if stored != b.Fence.Offset {
		return fmt.Errorf("mysql: offset of %s/%d in %s is %d, not %d: %w", b.Topic, b.Partition, c.offsets, stored, b.Fence.Offset, sink.ErrFenced)
	}
	return nil
}

// plan resolves every record against the table's columns, converts the values, and splits the
// batch into segments and groups. Its errors name the record, the column and the value.
func (c *Connector) plan(meta *tableMeta, b *sink.Batch) ([]segment, error) {
	segs := []segment{{}}
	groups := map[string]*group{}
	seen := map[string]struct{}{}
	sig := make([]byte, len(meta.cols))
	keyVals := make([]any, len(meta.key))
	var kb []byte
	// next starts a new segment when r's key was already seen in the current one.
	next := func(r *sink.Record) (*segment, error) {
		for j, k := range c.key {
			v, ok := keyValue(r, k)
			if !ok {
				return nil, fmt.Errorf("mysql: %s: %v without key field %q", recordRef(r), r.Op, k)
			}
			cv, err := convert(meta.key[j], v)
			if err != nil {
				return nil, fmt.Errorf("mysql: %s: key column %s = %s: %v", recordRef(r), meta.key[j].name, describe(v), err)
			}
			keyVals[j] = cv
		}
		kb = appendKey(kb[:0], keyVals)
		if _, dup := seen[string(kb)]; dup {
			segs = append(segs, segment{})
			clear(groups)
			clear(seen)
		}
		seen[string(kb)] = struct{}{}
		return &segs[len(segs)-1], nil
	}
	for i := range b.Records {
		r := &b.Records[i]
		switch r.Op {
		case sink.OpTruncate:
			segs[len(segs)-1].truncate = r
			segs = append(segs, segment{})
			clear(groups)
			clear(seen)
		case sink.OpDelete:
			cur, err := next(r)
			if err != nil {
				return nil, err
			}
			cur.deletes = append(cur.deletes, r)
		case sink.OpUpsert:
			cur, err := next(r)
			if err != nil {
				return nil, err
			}
			row := &upRow{rec: r, vals: make([]any, len(meta.cols))}
			clear(sig)
			for name, v := range r.Fields {
				col := meta.lookup(name)
				if col == nil {
					return nil, &unknownFieldError{fmt.Sprintf("mysql: field %q is not a column of table %s (columns: %s); fix the mapping or add the column", name, c.table, meta.colList())}
				}
				if col.generated {
					return nil, &unknownFieldError{fmt.Sprintf("mysql: field %q maps to generated column %s of table %s, which cannot be written; fix the mapping", name, col.name, c.table)}
				}
				if col == meta.softDel {
					row.softDeleted = v == true
					v = softDeleteValue(col, v, r)
				}
				cv, err := convert(col, v)
				if err != nil {
					return nil, fmt.Errorf("mysql: %s: column %s = %s: %v", recordRef(r), col.name, describe(v), err)
				}
				row.vals[col.pos] = cv
				sig[col.pos] = 1
			}
			for j, k := range c.key {
				col := meta.key[j]
				if sig[col.pos] == 1 {
					continue
				}
				v, ok := keyValue(r, k)
				if !ok {
					return nil, fmt.Errorf("mysql: %s: upsert without key field %q", recordRef(r), k)
				}
				cv, err := convert(col, v)
				if err != nil {
					return nil, fmt.Errorf("mysql: %s: key column %s = %s: %v", recordRef(r), col.name, describe(v), err)
				}
				row.vals[col.pos], sig[col.pos] = cv, 1
			}
			if sd := meta.softDel; sd != nil && sig[sd.pos] == 0 {
				// A row written again is live again.
				if !sd.temporal() {
					row.vals[sd.pos] = int64(0)
				}
				sig[sd.pos] = 1
			}
			g := groups[string(sig)]
			if g == nil {
				g = &group{}
				for _, col := range meta.cols {
					if sig[col.pos] == 1 {
						g.cols = append(g.cols, col)
					} else if col.required && g.missing == nil {
						g.missing = col
					}
				}
				groups[string(sig)] = g
				cur.groups = append(cur.groups, g)
			}
			g.rows = append(g.rows, row)
		default:
			return nil, fmt.Errorf("mysql: %s: unknown operation %v", recordRef(r), r.Op)
		}
	}
	return segs, nil
}

// softDeleteValue turns the runtime's `deleted: true` into a timestamp for a temporal
// soft-delete column (deleted_at), and false into NULL.
func softDeleteValue(col *column, v any, r *sink.Record) any {
	if b, ok := v.(bool); ok && col.temporal() {
		if b {
			return deleteTime(r)
		}
		return nil
	}
	return v
}

// deleteTime is when a record's change was committed in the source, so that applying it again
// writes the same mark; now when the record does not say.
func deleteTime(r *sink.Record) time.Time {
	if r != nil && r.Event != nil && r.Event.Source.TsMs > 0 {
		return time.UnixMilli(r.Event.Source.TsMs).UTC()
	}
	return time.Now().UTC()
}

// appendKey appends a comparable encoding of converted key values.
func appendKey(b []byte, vals []any) []byte {
	for _, v := range vals {
		switch x := v.(type) {
		case string:
			b = append(b, 's')
			b = strconv.AppendInt(b, int64(len(x)), 10)
			b = append(b, ':')
			b = append(b, x...)
		case []byte:
			b = append(b, 'b')
			b = strconv.AppendInt(b, int64(len(x)), 10)
			b = append(b, ':')
			b = append(b, x...)
		case int64:
			b = append(b, 'i')
			b = strconv.AppendInt(b, x, 10)
		default:
			s := fmt.Sprintf("%T:%v", v, v)
			b = append(b, 'o')
			b = strconv.AppendInt(b, int64(len(s)), 10)
			b = append(b, ':')
			b = append(b, s...)
		}
		b = append(b, 0)
	}
	return b
}

func keyValue(r *sink.Record, k string) (any, bool) {
	if v, ok := r.Key[k]; ok {
		return v, true
	}
	v, ok := r.Fields[k]
	return v, ok
}

func recordRef(r *sink.Record) string {
	return fmt.Sprintf("record %s/%d@%d", r.Topic, r.Partition, r.Offset)
}

// budget is the bytes one statement's values may take: well under max_allowed_packet.
func (c *Connector) budget() int {
	return max(c.maxPacket/2, 4096)
}

func (c *Connector) execUpserts(ctx context.Context, tx *sql.Tx, meta *tableMeta, g *group) error {
	ncols := len(g.cols)
	maxRows := min(maxPlaceholders/ncols, maxStatementRows)
	budget := c.budget()
	var head, tail string
	{
		var sb strings.Builder
		sb.WriteString("INSERT INTO ")
		sb.WriteString(c.table.quoted())
		sb.WriteString(" (")
		for i, col := range g.cols {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(col.quoted)
		}
		sb.WriteString(") VALUES ")
		head = sb.String()
		sb.Reset()
		sb.WriteString(" ON DUPLICATE KEY UPDATE ")
		first := true
		if meta.guard != nil {
			sb.WriteString(meta.guard.quoted)
			sb.WriteString(" = ")
			sb.WriteString(meta.guardExpr)
			first = false
		}
		for _, col := range g.cols {
			if col == meta.guard {
				continue
			}
			if !first {
				sb.WriteString(", ")
			}
			first = false
			sb.WriteString(col.quoted)
			sb.WriteString(" = VALUES(")
			sb.WriteString(col.quoted)
			sb.WriteString(")")
		}
		tail = sb.String()
	}
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?, ", ncols), ", ") + ")"

	args := make([]any, 0, min(len(g.rows), maxRows)*ncols)
	start, size := 0, 0
	flush := func(end int) error {
		if end == start {
			return nil
		}
		var sb strings.Builder
		sb.Grow(len(head) + (end-start)*(len(tuple)+2) + len(tail))
		sb.WriteString(head)
		for i := start; i < end; i++ {
			if i > start {
				sb.WriteString(", ")
			}
			sb.WriteString(tuple)
		}
		sb.WriteString(tail)
		_, err := tx.ExecContext(ctx, sb.String(), args...)
		if err != nil {
			return c.explainUpsert(err, meta, g, g.rows[start:end])
		}
		args, start, size = args[:0], end, 0
		return nil
	}
	for i, row := range g.rows {
		rs := 0
		for _, col := range g.cols {
			rs += wireSize(row.vals[col.pos]) + 4
		}
		if i > start && (i-start >= maxRows || size+rs > budget) {
			if err := flush(i); err != nil {
				return err
			}
		}
		for _, col := range g.cols {
			args = append(args, row.vals[col.pos])
		}
		size += rs
	}
	return flush(len(g.rows))
}

// execUpdates updates the rows of records lacking a column the INSERT path needs, one
// prepared UPDATE per row. A row absent from the target cannot be inserted without that column:
// that is an error for the record (a soft delete of an absent row is simply nothing to do).
func (c *Connector) execUpdates(ctx context.Context, tx *sql.Tx, meta *tableMeta, g *group) error {
	var set []*column
	isKey := map[*column]bool{}
	for _, k := range meta.key {
		isKey[k] = true
	}
	for _, col := range g.cols {
		if !isKey[col] {
			set = append(set, col)
		}
	}
	if len(set) == 0 {
		return nil // nothing but the key: nothing to write
	}
	var sb strings.Builder
	sb.WriteString("UPDATE " + c.table.quoted() + " SET ")
	for i, col := range set {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(col.quoted + " = ?")
	}
	sb.WriteString(" WHERE ")
	for i, k := range meta.key {
		if i > 0 {
			sb.WriteString(" AND ")
		}
		sb.WriteString(k.quoted + " = ?")
	}
	stmt, err := tx.PrepareContext(ctx, sb.String())
	if err != nil {
		return fmt.Errorf("mysql: update %s: %w", c.table, err)
	}
	defer stmt.Close()
	args := make([]any, 0, len(set)+len(meta.key))
	for _, row := range g.rows {
		args = args[:0]
		for _, col := range set {
			args = append(args, row.vals[col.pos])
		}
		for _, k := range meta.key {
			args = append(args, row.vals[k.pos])
		}
		res, err := stmt.ExecContext(ctx, args...)
		if err != nil {
			return c.explainUpsert(err, meta, g, []*upRow{row})
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 && !row.softDeleted {
			return fmt.Errorf("mysql: upsert into %s: %s: the row (%s) is not in the table and cannot be inserted: the record lacks column %s (NOT NULL without a default), whose value did not change in the source and so was not sent",
				c.table, recordRef(row.rec), keyDescr(meta, row), g.missing.name)
		}
	}
	return nil
}

// explainUpsert adds to a server error the record, column and value it is about, so that the
// dead-letter reason of a single bad record says what was wrong with it.
func (c *Connector) explainUpsert(err error, meta *tableMeta, g *group, rows []*upRow) error {
	var me *mysql.MySQLError
	if !errors.As(err, &me) || isRetryable(err) {
		return fmt.Errorf("mysql: upsert into %s: %w", c.table, err)
	}
	colName, n := errColumnRow(me.Message)
	col := meta.lookup(colName)
	var row *upRow
	switch {
	case n >= 1 && n <= len(rows):
		row = rows[n-1]
	case col != nil && me.Number == 1048:
		for _, r := range rows {
			if r.vals[col.pos] == nil {
				row = r
				break
			}
		}
		if row == nil && col == meta.guard {
			// No record has a NULL key: the guard fired, so a row conflicts on a unique index
			// other than the key with an existing row whose key differs.
			what := "a row of this batch"
			if len(rows) == 1 {
				what = recordRef(rows[0].rec) + " (" + keyDescr(meta, rows[0]) + ")"
			}
			return fmt.Errorf("mysql: upsert into %s: duplicate entry: %s collides on a unique index other than the key with an existing row whose key differs (%w)", c.table, what, err)
		}
	}
	if row == nil && len(rows) == 1 {
		row = rows[0]
	}
	if row == nil {
		return fmt.Errorf("mysql: upsert into %s: %w", c.table, err)
	}
	if col != nil {
		v, ok := fieldValue(row.rec, col.name)
		if !ok {
			v = row.vals[col.pos]
		}
		return fmt.Errorf("mysql: upsert into %s: %w (column %s = %s; %s)", c.table, err, col.name, describe(v), recordRef(row.rec))
	}
	return fmt.Errorf("mysql: upsert into %s: %w (%s)", c.table, err, recordRef(row.rec))
}

func fieldValue(r *sink.Record, col string) (any, bool) {
	if v, ok := r.Fields[col]; ok {
		return v, true
	}
	for k, v := range r.Fields {
		if strings.EqualFold(k, col) {
			return v, true
		}
	}
	return nil, false
}

func keyDescr(meta *tableMeta, row *upRow) string {
	parts := make([]string, len(meta.key))
	for i, k := range meta.key {
		parts[i] = k.name + " = " + describe(row.vals[k.pos])
	}
	return strings.Join(parts, ", ")
}

func (c *Connector) execDeletes(ctx context.Context, tx *sql.Tx, meta *tableMeta, recs []*sink.Record) error {
	if len(recs) == 0 {
		return nil
	}
	nk := len(meta.key)
	var head string
	var sb strings.Builder
	if sd := meta.softDel; sd != nil {
		// Deletes reach here only when the runtime did not turn them into soft-delete upserts.
		sb.WriteString("UPDATE " + c.table.quoted() + " SET " + sd.quoted + " = " + softDeletedSQL(sd) + " WHERE ")
		// (UTC_TIMESTAMP(6) for a temporal column: these records carry no commit time of their own.)
	} else {
		sb.WriteString("DELETE FROM " + c.table.quoted() + " WHERE ")
	}
	tuple := "?"
	if nk == 1 {
		sb.WriteString(meta.key[0].quoted)
	} else {
		sb.WriteString("(")
		for i, k := range meta.key {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(k.quoted)
		}
		sb.WriteString(")")
		tuple = "(" + strings.TrimSuffix(strings.Repeat("?, ", nk), ", ") + ")"
	}
	sb.WriteString(" IN (")
	head = sb.String()
	maxRows := min(maxPlaceholders/nk, maxStatementRows)
	budget := c.budget()
	args := make([]any, 0, min(len(recs), maxRows)*nk)
	start, size := 0, 0
	flush := func(end int) error {
		if end == start {
			return nil
		}
		var q strings.Builder
		q.WriteString(head)
		for i := start; i < end; i++ {
			if i > start {
				q.WriteString(", ")
			}
			q.WriteString(tuple)
		}
		q.WriteString(")")
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			err = fmt.Errorf("mysql: delete from %s: %w", c.table, err)
			if end-start == 1 {
				err = fmt.Errorf("%w (%s)", err, recordRef(recs[start]))
			}
			return err
		}
		args, start, size = args[:0], end, 0
		return nil
	}
	for i, r := range recs {
		rs := 0
		vals := make([]any, nk)
		for j, k := range c.key {
			v, _ := keyValue(r, k)
			vals[j], _ = convert(meta.key[j], v) // checked by plan
			rs += wireSize(vals[j]) + 4
		}
		if i > start && (i-start >= maxRows || size+rs > budget) {
			if err := flush(i); err != nil {
				return err
			}
		}
		args = append(args, vals...)
		size += rs
	}
	return flush(len(recs))
}

func softDeletedSQL(col *column) string {
	if col.temporal() {
		return "UTC_TIMESTAMP(6)"
	}
	return "1"
}

// execTruncate removes every row of the table (marks them deleted with a soft-delete column).
// DELETE, not TRUNCATE TABLE: TRUNCATE commits implicitly and would break the transaction.
func (c *Connector) execTruncate(ctx context.Context, tx *sql.Tx, meta *tableMeta, r *sink.Record) error {
	q := "DELETE FROM " + c.table.quoted()
	var args []any
	if sd := meta.softDel; sd != nil {
		if sd.temporal() {
			q = "UPDATE " + c.table.quoted() + " SET " + sd.quoted + " = ? WHERE " + sd.quoted + " IS NULL"
			args = append(args, convertTime(sd, deleteTime(r)))
		} else {
			q = "UPDATE " + c.table.quoted() + " SET " + sd.quoted + " = 1 WHERE " + sd.quoted + " IS NULL OR " + sd.quoted + " = 0"
		}
	}
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("mysql: truncate %s: %w", c.table, err)
	}
	return nil
}
