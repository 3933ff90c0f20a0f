package postgres

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

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

// plan turns a batch into statements, applying its records in order: a truncate removes the rows
// written before it, and between truncates deletes and upserts of distinct keys commute, so each
// run between truncates becomes one delete statement and one upsert statement per field set.
// Record values are converted to text here, before a connection is taken.
func (t *target) plan(b *sink.Batch) (*plan, error) {
	p := &plan{inserts: true}
	seg := segment{t: t, byKey: make(map[segKey]int, len(b.Records)), items: make([]item, 0, len(b.Records))}
	if t.exists {
		seg.keys = make([]pgtype.Text, 0, len(b.Records)*len(t.key))
	}
	for i := range b.Records {
		r := &b.Records[i]
		p.inserts = p.inserts && r.Op == sink.OpUpsert && r.Event != nil &&
			(r.Event.Op == change.OpCreate || r.Event.Op == change.OpRead)
		switch r.Op {
		case sink.OpUpsert:
			p.upserts++
			if err := seg.add(r, p); err != nil {
				return nil, err
			}
		case sink.OpDelete:
			if err := seg.add(r, p); err != nil {
				return nil, err
			}
		case sink.OpTruncate:
			if err := seg.flush(p); err != nil {
				return nil, err
			}
			if t.exists {
				p.steps = append(p.steps, t.truncateStep(r))
			}
		default:
			return nil, recordError(r, "", fmt.Errorf("unknown operation %v", r.Op))
		}
	}
	if err := seg.flush(p); err != nil {
		return nil, err
	}
	return p, nil
}

// segment collects the records between two truncates, one item per key (the last state).
type segment struct {
	t     *target
	items []item
	byKey map[segKey]int
	keys  []pgtype.Text // backing store of the items' key values
}

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

type item struct {
	r      *sink.Record
	op     sink.Op
	fields map[string]any // upserts: the record's fields, merged when a key came twice
	key    []pgtype.Text  // key values as text, in key order
}

func (s *segment) add(r *sink.Record, p *plan) error {
	t := s.t
	if !t.exists {
		// auto_create has not made the table yet: every upsert field is unknown, and deletes
		// have nothing to delete.
		if r.Op == sink.OpUpsert {
			for name := range r.Fields {
				if !slices.Contains(p.unknown, name) {
					p.unknown = append(p.unknown, name)
				}
			}
		}
		return nil
	}
	n := len(s.keys)
	s.keys = slices.Grow(s.keys, len(t.key))[:n+len(t.key)]
	it := item{r: r, op: r.Op, fields: r.Fields, key: s.keys[n : n+len(t.key) : n+len(t.key)]}
	var k segKey
	for i, ci := range t.key {
		c := &t.cols[ci]
		v, ok := r.Key[c.name]
		if !ok {
			v, ok = r.Fields[c.name]
		}
		if !ok {
			return recordError(r, c.name, fmt.Errorf("no value for key field %q", c.name))
		}
		txt, null, err := textValue(v, c.typ)
		if err != nil {
			return recordError(r, c.name, err)
		}
		it.key[i] = pgtype.Text{String: txt, Valid: !null}
	}
	k.set(it.key)
	if j, dup := s.byKey[k]; dup {
		// The runtime coalesces batches, so this is only a safety net: keep the last state,
		// with the earlier upsert's fields under a later upsert that lacks them (TOAST).
		prev := s.items[j]
		if prev.op == sink.OpUpsert && it.op == sink.OpUpsert {
			merged := make(map[string]any, len(prev.fields)+len(it.fields))
			for n, v := range prev.fields {
				merged[n] = v
			}
			for n, v := range it.fields {
				merged[n] = v
			}
			it.fields = merged
		}
		s.items[j] = it
		return nil
	}
	s.byKey[k] = len(s.items)
	s.items = append(s.items, it)
	return nil
}

// group is the upserts of one field set.
type group struct {
	sig  []uint64
	u    *upsertSQL
	vals [][]pgtype.Text // per parameter
	rows int
}

func (s *segment) flush(p *plan) error {
	t := s.t
	defer func() {
		s.items = s.items[:0]
		clear(s.byKey)
	}()
	if len(s.items) == 0 {
		return nil
	}
	if err := s.flushDeletes(p); err != nil {
		return err
	}
	var groups []*group
	var last *group
	words := (len(t.cols) + 63) / 64
	sig := make([]uint64, words)
	var lastOrder []string // the field order of the last item, whose field set is sig
	for _, it := range s.items {
		if it.op != sink.OpUpsert {
			continue
		}
		if last != nil && sameFields(it, lastOrder) {
			// the runtime hands every record with all mapped fields the same FieldOrder slice:
			// same field set, same group
			if err := last.append(t, it); err != nil {
				return err
			}
			continue
		}
		lastOrder = nil
		clear(sig)
		missing := false
		for name := range it.fields {
			ci, ok := t.byName[name]
			if !ok || !t.cols[ci].writable {
				if !slices.Contains(p.unknown, name) {
					p.unknown = append(p.unknown, name)
				}
				missing = true
				continue
			}
			sig[ci/64] |= 1 << (ci % 64)
		}
		if missing {
			continue
		}
		for _, ci := range t.key {
			sig[ci/64] |= 1 << (ci % 64)
		}
		g := last
		if g == nil || !slices.Equal(g.sig, sig) {
			g = nil
			for _, h := range groups {
				if slices.Equal(h.sig, sig) {
					g = h
					break
				}
			}
			if g == nil {
				g = &group{sig: slices.Clone(sig), u: t.upsert(sig)}
				g.vals = make([][]pgtype.Text, len(g.u.cols))
				for j := range g.vals {
					g.vals[j] = make([]pgtype.Text, 0, len(s.items))
				}
				groups = append(groups, g)
			}
			last = g
		}
		if len(it.r.FieldOrder) == len(it.fields) {
			lastOrder = it.r.FieldOrder
		}
		if err := g.append(t, it); err != nil {
			return err
		}
	}
	if len(p.unknown) > 0 {
		return nil
	}
	for _, g := range groups {
		st := step{what: "upsert into", sql: g.u.sql, args: make([]any, len(g.vals)), cols: g.u.cols, rows: g.rows, copy: g.u.copy}
		for i, v := range g.vals {
			st.args[i] = textColumn(v)
		}
		p.steps = append(p.steps, st)
	}
	return nil
}

// sameFields reports whether an item's fields are listed by order, the very same slice: the item
// then has the same field set as the item order came from.
func sameFields(it item, order []string) bool {
	fo := it.r.FieldOrder
	return len(order) > 0 && len(fo) == len(order) && &fo[0] == &order[0] && len(it.fields) == len(fo)
}

func (g *group) append(t *target, it item) error {
	for j, ci := range g.u.cols {
		if k := g.u.keyPos[j]; k >= 0 {
			// key values were converted already, for deduplication
			g.vals[j] = append(g.vals[j], it.key[k])
			continue
		}
		c := &t.cols[ci]
		v := it.fields[c.name]
		if ci == t.softDelete && v == true && c.typ.kind != kBool {
			// the runtime marks a soft delete with true; a date or timestamp column gets the
			// time of the delete instead
			g.vals[j] = append(g.vals[j], pgtype.Text{String: deleteMark(t, it.r), Valid: true})
			continue
		}
		txt, null, err := textValue(v, c.typ)
		if err != nil {
			return recordError(it.r, c.name, err)
		}
		g.vals[j] = append(g.vals[j], pgtype.Text{String: txt, Valid: !null})
	}
	g.rows++
	return nil
}

func (s *segment) flushDeletes(p *plan) error {
	t := s.t
	n := len(t.key)
	var vals [][]pgtype.Text
	rows := 0
	for _, it := range s.items {
		if it.op != sink.OpDelete {
			continue
		}
		if vals == nil {
			vals = make([][]pgtype.Text, n, n+1)
		}
		for i := range n {
			vals[i] = append(vals[i], it.key[i])
		}
		switch {
		case t.softDelete >= 0:
			vals = extra(vals, n, pgtype.Text{String: deleteMark(t, it.r), Valid: true})
		case t.version >= 0:
			vals = extra(vals, n, deleteVersion(it.r))
		}
		rows++
	}
	if rows == 0 {
		return nil
	}
	st := step{what: "delete from", rows: rows}
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
	return nil
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
	where := fmt.Sprintf("record %s/%d@%d", r.Topic, r.Partition, r.Offset)
	if column != "" {
		return fmt.Errorf("%s: column %q: %w", where, column, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}
