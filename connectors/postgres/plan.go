package postgres

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/backflow-dev/backflow/connectors/internal/sqlplan"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// step is one statement of a batch's transaction.
type step struct {
	what string // "upsert into", "delete from", "truncate" — for messages
	sql  string
	args []any // one text array per parameter
	cols []int // the column each parameter holds, -1 for none (for probes)
	rows int
	copy string // for upserts: the COPY statement that inserts the same rows, if any
}

// plan is a batch turned into statements.
type plan struct {
	steps   []step
	unknown []string // upsert fields that are not columns of the table (or no table yet)
	upserts int
	// inserts: every record is an upsert of a row the source created (or a snapshot read), so
	// the rows are most likely new to the target too.
	inserts bool
}

// plan turns a batch into statements, applying its records in order (see package sqlplan): each
// run between truncates becomes one delete statement and one upsert statement per field set.
// Record values are converted to text here, before a connection is taken.
func (t *target) plan(b *sink.Batch) (*plan, error) {
	p := &plan{inserts: true}
	for i := range b.Records {
		r := &b.Records[i]
		p.inserts = p.inserts && r.Op == sink.OpUpsert && r.Event != nil &&
			(r.Event.Op == change.OpCreate || r.Event.Op == change.OpRead)
		switch r.Op {
		case sink.OpUpsert:
			p.upserts++
			if !t.exists {
				// auto_create has not made the table yet: every upsert field is unknown, and
				// deletes and truncates have nothing to remove.
				for name := range r.Fields {
					if !slices.Contains(p.unknown, name) {
						p.unknown = append(p.unknown, name)
					}
				}
			}
		case sink.OpDelete, sink.OpTruncate:
		default:
			return nil, recordError(r, "", fmt.Errorf("unknown operation %v", r.Op))
		}
	}
	if !t.exists {
		return p, nil
	}
	sp, err := sqlplan.Build(b.Records, t.planTable(len(b.Records)))
	if err != nil {
		return nil, err
	}
	for _, seg := range sp.Segments {
		t.deleteStep(p, seg.Deletes)
		for _, g := range seg.Upserts {
			if err := t.upsertStep(p, g); err != nil {
				return nil, err
			}
		}
		if seg.Truncate != nil {
			p.steps = append(p.steps, t.truncateStep(seg.Truncate))
		}
	}
	if p.unknown = sp.Unknown; len(p.unknown) > 0 {
		p.steps = nil // the table changes first; the batch is planned again
	}
	return p, nil
}

// planTable is the table for sqlplan: key values are converted to text once, to tell keys apart
// and to be sent as they are; their texts share one backing array for the batch.
func (t *target) planTable(records int) sqlplan.Table[segKey, []pgtype.Text] {
	keys := make([]pgtype.Text, 0, records*len(t.key))
	return sqlplan.Table[segKey, []pgtype.Text]{
		Columns:    len(t.cols),
		KeyColumns: t.key,
		Key: func(r *sink.Record) (segKey, []pgtype.Text, error) {
			n := len(keys)
			keys = slices.Grow(keys, len(t.key))[:n+len(t.key)]
			key := keys[n : n+len(t.key) : n+len(t.key)]
			for i, ci := range t.key {
				c := &t.cols[ci]
				v, ok := r.Key[c.name]
				if !ok {
					v, ok = r.Fields[c.name]
				}
				if !ok {
					return segKey{}, nil, recordError(r, c.name, fmt.Errorf("no value for key field %q", c.name))
				}
				txt, null, err := textValue(v, c.typ)
				if err != nil {
					return segKey{}, nil, recordError(r, c.name, err)
				}
				key[i] = pgtype.Text{String: txt, Valid: !null}
			}
			var k segKey
			k.set(key)
			return k, key, nil
		},
		Column: func(name string) (int, bool) {
			ci, ok := t.byName[name]
			return ci, ok && t.cols[ci].writable
		},
	}
}

// item is a key's record in a segment, with its key values as text in key order.
type item = sqlplan.Item[[]pgtype.Text]

// segKey identifies a key within a segment by its values as text: up to four as they are, more
// spelled out in one string (text values cannot hold NUL, so that spelling is unambiguous).
type segKey struct {
	vals  [4]string
	nulls uint8
	long  string
}

func (k *segKey) set(key []pgtype.Text) {
	if len(key) <= len(k.vals) {
		for i, v := range key {
			k.vals[i] = v.String
			if !v.Valid {
				k.nulls |= 1 << i
			}
		}
		return
	}
	var b strings.Builder
	for _, v := range key {
		if !v.Valid {
			b.WriteByte('n')
		} else {
			b.WriteByte('v')
			b.WriteString(v.String)
		}
		b.WriteByte(0)
	}
	k.long = b.String()
}

// upsertStep adds the statement upserting a group of rows that have the same columns.
func (t *target) upsertStep(p *plan, g *sqlplan.Group[[]pgtype.Text]) error {
	u := t.upsert(g.Sig)
	vals := make([][]pgtype.Text, len(u.cols)) // per parameter
	for j := range vals {
		vals[j] = make([]pgtype.Text, 0, len(g.Items))
	}
	for _, it := range g.Items {
		if err := t.appendRow(vals, u, it); err != nil {
			return err
		}
	}
	st := step{what: "upsert into", sql: u.sql, args: make([]any, len(vals)), cols: u.cols, rows: len(g.Items), copy: u.copy}
	for i, v := range vals {
		st.args[i] = textColumn(v)
	}
	p.steps = append(p.steps, st)
	return nil
}

// appendRow appends an upsert's values, as text, to the parameters of u.
func (t *target) appendRow(vals [][]pgtype.Text, u *upsertSQL, it item) error {
	for j, ci := range u.cols {
		if k := u.keyPos[j]; k >= 0 {
			// key values were converted already, for deduplication
			vals[j] = append(vals[j], it.Key[k])
			continue
		}
		c := &t.cols[ci]
		v := it.Fields[c.name]
		if ci == t.softDelete && v == true && c.typ.kind != kBool {
			// the runtime marks a soft delete with true; a date or timestamp column gets the
			// time of the delete instead
			vals[j] = append(vals[j], pgtype.Text{String: deleteMark(t, it.Rec), Valid: true})
			continue
		}
		txt, null, err := textValue(v, c.typ)
		if err != nil {
			return recordError(it.Rec, c.name, err)
		}
		vals[j] = append(vals[j], pgtype.Text{String: txt, Valid: !null})
	}
	return nil
}

// deleteStep adds the statement deleting (or marking) a segment's deleted keys.
func (t *target) deleteStep(p *plan, deletes []item) {
	if len(deletes) == 0 {
		return
	}
	n := len(t.key)
	vals := make([][]pgtype.Text, n, n+1)
	for _, it := range deletes {
		for i := range n {
			vals[i] = append(vals[i], it.Key[i])
		}
		switch {
		case t.softDelete >= 0:
			vals = extra(vals, n, pgtype.Text{String: deleteMark(t, it.Rec), Valid: true})
		case t.version >= 0:
			vals = extra(vals, n, deleteVersion(it.Rec))
		}
	}
	st := step{what: "delete from", rows: len(deletes)}
	last := -1 // the column of the parameter after the keys
	switch {
	case t.softDelete >= 0:
		st.what, st.sql, last = "soft delete in", t.softDeleteSQL(), t.softDelete
	case t.version >= 0:
		st.sql, last = t.versionedDeleteSQL(), t.version
	default:
		st.sql = t.deleteSQL()
	}
	for i, v := range vals {
		st.args = append(st.args, textColumn(v))
		if i < n {
			st.cols = append(st.cols, t.key[i])
		} else {
			st.cols = append(st.cols, last)
		}
	}
	p.steps = append(p.steps, st)
}

// extra appends v to the parameter after the n key parameters.
func extra(vals [][]pgtype.Text, n int, v pgtype.Text) [][]pgtype.Text {
	if len(vals) == n {
		vals = append(vals, nil)
	}
	vals[n] = append(vals[n], v)
	return vals
}

// deleteVersion is the version of a delete: the source LSN of its change, NULL when unknown.
func deleteVersion(r *sink.Record) pgtype.Text {
	if r.Event == nil || r.Event.Source.LSN == 0 {
		return pgtype.Text{}
	}
	return pgtype.Text{String: strconv.FormatInt(r.Event.Source.LSN, 10), Valid: true}
}

// deleteMark is what a soft delete writes: true, or the delete's commit time in the source
// (the transaction's time when the record does not say), so that reapplying writes the same.
func deleteMark(t *target, r *sink.Record) string {
	c := &t.cols[t.softDelete]
	if c.typ.kind == kBool {
		return "true"
	}
	if r.Event != nil && r.Event.Source.TsMs > 0 {
		return timeText(time.UnixMilli(r.Event.Source.TsMs), c.typ.kind)
	}
	return "now"
}

// recordError is a value of a record that cannot be written: not retryable, and, for a batch of
// one, the reason the record goes to the dead-letter topic.
func recordError(r *sink.Record, column string, err error) error {
	where := sqlplan.Ref(r)
	if column != "" {
		return fmt.Errorf("%s: column %q: %w", where, column, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}
