package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/backflow-dev/backflow/connectors/internal/sqlplan"
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

// segment is a run of records with distinct keys (see package sqlplan): its deletes, then its
// upserts, then maybe the truncate. A key seen again starts a new segment, so that a batch that
// repeats a key is still applied in order; batches are coalesced, so a batch is normally one
// segment per truncate.
type segment struct {
	deletes  []keyed
	groups   []*group
	truncate *sink.Record
}

// keyed is a record with its key values converted, in key order.
type keyed = sqlplan.Item[[]any]

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

	sinkName := b.Sink
	if sinkName == "" {
		sinkName = c.sinkName
	}
	if err := c.verifyTable(ctx, sinkName, meta); err != nil {
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
	if err := c.checkIdentity(ctx, tx, meta); err != nil {
		return err
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
	// Again, under the metadata lock the writes took: the server opens a name again once it has
	// waited for its lock, so a table swapped by RENAME TABLE meanwhile took the writes.
	if err := c.checkIdentity(ctx, tx, meta); err != nil {
		return err
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

// plan splits the batch into segments and groups (package sqlplan), resolves every record
// against the table's columns and converts the values. Its errors name the record, the column
// and the value.
func (c *Connector) plan(meta *tableMeta, b *sink.Batch) ([]segment, error) {
	sp, err := sqlplan.Build(b.Records, c.planTable(meta, len(b.Records)))
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	if len(sp.Unknown) > 0 {
		return nil, c.unknownField(meta, sp.Unknown[0])
	}
	segs := make([]segment, len(sp.Segments))
	set := make([]bool, len(meta.cols)) // scratch: the columns a record's fields set
	for i, s := range sp.Segments {
		segs[i] = segment{deletes: s.Deletes, truncate: s.Truncate}
		for _, sg := range s.Upserts {
			g := &group{rows: make([]*upRow, 0, len(sg.Items))}
			for _, ci := range sg.Cols {
				g.cols = append(g.cols, meta.cols[ci])
			}
			for _, col := range meta.cols {
				if !sg.Has(col.pos) && col.required {
					g.missing = col
					break
				}
			}
			for _, it := range sg.Items {
				row, err := upsertRow(meta, it, set)
				if err != nil {
					return nil, err
				}
				g.rows = append(g.rows, row)
			}
			segs[i].groups = append(segs[i].groups, g)
		}
	}
	return segs, nil
}

// planTable is the table for sqlplan: keys told apart by their converted values.
func (c *Connector) planTable(meta *tableMeta, records int) sqlplan.Table[string, []any] {
	t := sqlplan.Table[string, []any]{Columns: len(meta.cols), SplitOnRepeat: true}
	for _, col := range meta.key {
		t.KeyColumns = append(t.KeyColumns, col.pos)
	}
	if meta.softDel != nil {
		// A row written again is live again: every upsert sets the mark.
		t.Always = []int{meta.softDel.pos}
	}
	keys := make([]any, 0, records*len(meta.key)) // backing store of the converted keys
	var kb []byte
	t.Key = func(r *sink.Record) (string, []any, error) {
		n := len(keys)
		keys = slices.Grow(keys, len(meta.key))[:n+len(meta.key)]
		vals := keys[n : n+len(meta.key) : n+len(meta.key)]
		for j, k := range c.key {
			v, ok := keyValue(r, k)
			if !ok {
				return "", nil, fmt.Errorf("%s: %v without key field %q", sqlplan.Ref(r), r.Op, k)
			}
			cv, err := convert(meta.key[j], v)
			if err != nil {
				return "", nil, fmt.Errorf("%s: key column %s = %s: %v", sqlplan.Ref(r), meta.key[j].name, describe(v), err)
			}
			vals[j] = cv
		}
		kb = appendKey(kb[:0], vals)
		return string(kb), vals, nil
	}
	t.Column = func(name string) (int, bool) {
		col := meta.lookup(name)
		if col == nil || col.generated {
			return 0, false
		}
		return col.pos, true
	}
	return t
}

// unknownField says why field cannot be written.
func (c *Connector) unknownField(meta *tableMeta, name string) error {
	if col := meta.lookup(name); col != nil {
		return &unknownFieldError{fmt.Sprintf("mysql: field %q maps to generated column %s of table %s, which cannot be written; fix the mapping", name, col.name, c.table)}
	}
	return &unknownFieldError{fmt.Sprintf("mysql: field %q is not a column of table %s (columns: %s); fix the mapping or add the column", name, c.table, meta.colList())}
}

// upsertRow converts an upsert's values by column position; set is scratch space.
func upsertRow(meta *tableMeta, it keyed, set []bool) (*upRow, error) {
	r := it.Rec
	row := &upRow{rec: r, vals: make([]any, len(meta.cols))}
	clear(set)
	var bad *column // the first column, in table order, whose value cannot be stored: the same one every try
	var badErr error
	for name, v := range it.Fields {
		col := meta.lookup(name) // a writable column: sqlplan checked
		if col == meta.softDel {
			row.softDeleted = v == true
			v = softDeleteValue(col, v, r)
		}
		cv, err := convert(col, v)
		if err != nil {
			if bad == nil || col.pos < bad.pos {
				bad, badErr = col, fmt.Errorf("mysql: %s: column %s = %s: %v", sqlplan.Ref(r), col.name, describe(v), err)
			}
			continue
		}
		row.vals[col.pos], set[col.pos] = cv, true
	}
	if badErr != nil {
		return nil, badErr
	}
	for j, col := range meta.key {
		if !set[col.pos] {
			row.vals[col.pos] = it.Key[j]
		}
	}
	if sd := meta.softDel; sd != nil && !set[sd.pos] && !sd.temporal() {
		row.vals[sd.pos] = int64(0) // a row written again is live again
	}
	return row, nil
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
	binds := make([]int, len(meta.key))
	for i, k := range meta.key {
		if i > 0 {
			sb.WriteString(" AND ")
		}
		var cond string
		cond, binds[i] = keyMatch(k)
		sb.WriteString(cond)
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
		for i, k := range meta.key {
			for range binds[i] {
				args = append(args, row.vals[k.pos])
			}
		}
		res, err := stmt.ExecContext(ctx, args...)
		if err != nil {
			return c.explainUpsert(err, meta, g, []*upRow{row})
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 && !row.softDeleted {
			return fmt.Errorf("mysql: upsert into %s: %s: the row (%s) is not in the table and cannot be inserted: the record lacks column %s (NOT NULL without a default), whose value did not change in the source and so was not sent",
				c.table, sqlplan.Ref(row.rec), keyDescr(meta, row), g.missing.name)
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
				what = sqlplan.Ref(rows[0].rec) + " (" + keyDescr(meta, rows[0]) + ")"
			}
			return fmt.Errorf("mysql: upsert into %s: duplicate entry: %s collides with an existing row whose key differs, on a unique index other than the key "+
				"or on a key column whose collation takes different strings for equal (case, accents, trailing spaces: use a _bin collation) (%w)", c.table, what, err)
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
		return fmt.Errorf("mysql: upsert into %s: %w (column %s = %s; %s)", c.table, err, col.name, describe(v), sqlplan.Ref(row.rec))
	}
	return fmt.Errorf("mysql: upsert into %s: %w (%s)", c.table, err, sqlplan.Ref(row.rec))
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

// exactKeys is the start of the condition that the key matches byte by byte, " AND (k1, BINARY
// k2) IN (", when a key column has a loose collation; "" when none has.
func exactKeys(key []*column) string {
	if !slices.ContainsFunc(key, (*column).loose) {
		return ""
	}
	cols := make([]string, len(key))
	for i, k := range key {
		cols[i] = k.exact()
	}
	if len(cols) == 1 {
		return " AND " + cols[0] + " IN ("
	}
	return " AND (" + strings.Join(cols, ", ") + ") IN ("
}

func (c *Connector) execDeletes(ctx context.Context, tx *sql.Tx, meta *tableMeta, recs []keyed) error {
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
	// A loose collation would also delete "abc" for "ABC": the keys must match byte by byte too,
	// which binds each key again.
	exact := exactKeys(meta.key)
	binds := nk
	if exact != "" {
		binds = 2 * nk
	}
	maxRows := min(maxPlaceholders/binds, maxStatementRows)
	budget := c.budget()
	args := make([]any, 0, min(len(recs), maxRows)*nk)
	start, size := 0, 0
	flush := func(end int) error {
		if end == start {
			return nil
		}
		var list strings.Builder
		for i := start; i < end; i++ {
			if i > start {
				list.WriteString(", ")
			}
			list.WriteString(tuple)
		}
		q := head + list.String() + ")"
		if exact != "" {
			q += exact + list.String() + ")"
			args = append(args, args...)
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			err = fmt.Errorf("mysql: delete from %s: %w", c.table, err)
			if end-start == 1 {
				err = fmt.Errorf("%w (%s)", err, sqlplan.Ref(recs[start].Rec))
			}
			return err
		}
		args, start, size = args[:0], end, 0
		return nil
	}
	for i, r := range recs {
		rs := 0
		for _, v := range r.Key {
			rs += (wireSize(v) + 4) * binds / nk
		}
		if i > start && (i-start >= maxRows || size+rs > budget) {
			if err := flush(i); err != nil {
				return err
			}
		}
		args = append(args, r.Key...)
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
