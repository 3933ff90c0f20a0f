// Package sqlplan turns a batch's records into the statements a SQL target runs, in order, for
// connectors whose dialect supplies only the SQL text and the conversion of values.
//
// A batch is applied in its records' order. A truncate removes every row written before it, so
// it ends a segment. Within a segment each key is written once, and as the keys are distinct,
// deletes and upserts commute: a segment becomes one run of deletes, then one upsert statement
// per set of fields present (records lacking unchanged-TOAST fields write fewer columns, and
// must not write NULL over them), then the truncate that ends it, if any. Deletes go first so
// that a row deleted and another upserted with the same unique value do not collide.
//
// The runtime coalesces batches, so a key comes once per segment; for a batch that repeats one,
// the table says what to do (Table.SplitOnRepeat).
package sqlplan

import (
	"fmt"
	"slices"

	"github.com/backflow-dev/backflow/pkg/connector"
)

// Table is what the planner needs of the target table. K identifies a key within a segment; V is
// the dialect's converted key values, kept with each record for its statements.
type Table[K comparable, V any] struct {
	// Columns is the number of columns; positions run from 0.
	Columns int
	// KeyColumns are the positions of the key columns, part of every upsert's column set.
	KeyColumns []int
	// Always are the positions of other columns every upsert writes (a soft-delete mark the
	// dialect fills in when the mapping does not set it).
	Always []int
	// SplitOnRepeat starts a new segment at a key seen again in the current one, so the batch is
	// applied strictly in order; otherwise the key's records are merged into its last state,
	// the fields of an earlier upsert kept under a later upsert that lacks them, as the runtime's
	// coalescing does.
	SplitOnRepeat bool
	// Key converts a record's key values, or says why they cannot be written.
	Key func(r *connector.Record) (K, V, error)
	// Column returns the position of the writable column a field is written to; false when
	// there is none.
	Column func(field string) (int, bool)
}

// Item is one key's record in a segment.
type Item[V any] struct {
	Rec *connector.Record
	// Fields are the record's fields (upserts), merged when the key came twice.
	Fields map[string]any
	Key    V
}

// Group is the upserts of a segment that write the same columns.
type Group[V any] struct {
	// Sig is the set of columns written, a bit per position: the group's identity, for
	// dialects that keep a statement per column set.
	Sig []uint64
	// Cols are the positions of the columns written, ascending.
	Cols  []int
	Items []Item[V]
}

// Has reports whether the group writes column ci.
func (g *Group[V]) Has(ci int) bool { return g.Sig[ci/64]&(1<<(ci%64)) != 0 }

// Segment is a run of records with distinct keys: its deletes, its upserts by column set, in the
// order each set first appears, and the truncate that ends it (nil at the end of the batch).
type Segment[V any] struct {
	Deletes  []Item[V]
	Upserts  []*Group[V]
	Truncate *connector.Record
}

// Plan is a batch made statements-to-run.
type Plan[V any] struct {
	Segments []Segment[V]
	// Unknown are the upsert fields no writable column takes, in the order first met; the
	// records having them are in no group. A dialect adds the columns, or refuses the batch.
	Unknown []string
}

// Build plans records, in order, against t. Its errors are those of t.Key, and an operation it
// does not know.
func Build[K comparable, V any](records []connector.Record, t Table[K, V]) (*Plan[V], error) {
	b := &builder[K, V]{t: t, plan: &Plan[V]{}, byKey: make(map[K]int, len(records)),
		items: make([]Item[V], 0, len(records)), sig: make([]uint64, (t.Columns+63)/64)}
	for i := range records {
		r := &records[i]
		switch r.Op {
		case connector.OpUpsert, connector.OpDelete:
			if err := b.add(r); err != nil {
				return nil, err
			}
		case connector.OpTruncate:
			b.flush(r)
		default:
			return nil, fmt.Errorf("%s: unknown operation %v", Ref(r), r.Op)
		}
	}
	if len(b.items) > 0 {
		b.flush(nil)
	}
	return b.plan, nil
}

// Ref names a record in errors: "record <topic>/<partition>@<offset>".
func Ref(r *connector.Record) string {
	return fmt.Sprintf("record %s/%d@%d", r.Topic, r.Partition, r.Offset)
}

type builder[K comparable, V any] struct {
	t     Table[K, V]
	plan  *Plan[V]
	items []Item[V] // the current segment's, one per key
	byKey map[K]int
	sig   []uint64 // scratch
}

// add puts a record in the current segment.
func (b *builder[K, V]) add(r *connector.Record) error {
	k, v, err := b.t.Key(r)
	if err != nil {
		return err
	}
	it := Item[V]{Rec: r, Fields: r.Fields, Key: v}
	j, dup := b.byKey[k]
	switch {
	case !dup:
	case b.t.SplitOnRepeat:
		b.flush(nil)
		dup = false
	default:
		prev := b.items[j]
		if prev.Rec.Op == connector.OpUpsert && r.Op == connector.OpUpsert {
			merged := make(map[string]any, len(prev.Fields)+len(it.Fields))
			for n, v := range prev.Fields {
				merged[n] = v
			}
			for n, v := range it.Fields {
				merged[n] = v
			}
			it.Fields = merged
		}
		b.items[j] = it
		return nil
	}
	b.byKey[k] = len(b.items)
	b.items = append(b.items, it)
	return nil
}

// flush ends the current segment with truncate (nil at a repeated key or the batch's end).
func (b *builder[K, V]) flush(truncate *connector.Record) {
	seg := Segment[V]{Truncate: truncate}
	for _, it := range b.items {
		if it.Rec.Op == connector.OpDelete {
			seg.Deletes = append(seg.Deletes, it)
		}
	}
	seg.Upserts = b.group()
	b.plan.Segments = append(b.plan.Segments, seg)
	b.items = b.items[:0] // the segment holds copies
	clear(b.byKey)
}

// group sorts the segment's upserts into groups by the columns they write.
func (b *builder[K, V]) group() []*Group[V] {
	var groups []*Group[V]
	var last *Group[V]
	var lastOrder []string // the field order of the last item, whose column set is last's
	sig := b.sig
	for _, it := range b.items {
		if it.Rec.Op != connector.OpUpsert {
			continue
		}
		if last != nil && sameFields(it, lastOrder) {
			// The runtime hands every record with all mapped fields the same FieldOrder
			// slice: same fields, same group, without looking at them.
			last.Items = append(last.Items, it)
			continue
		}
		lastOrder = nil
		if !b.signature(it) {
			continue
		}
		if last == nil || !slices.Equal(last.Sig, sig) {
			last = nil
			for _, g := range groups {
				if slices.Equal(g.Sig, sig) {
					last = g
					break
				}
			}
			if last == nil {
				last = newGroup[V](sig, b.t.Columns)
				groups = append(groups, last)
			}
		}
		if len(it.Rec.FieldOrder) == len(it.Fields) {
			lastOrder = it.Rec.FieldOrder
		}
		last.Items = append(last.Items, it)
	}
	return groups
}

// signature sets b.sig to the columns an upsert writes. It returns false, noting the fields,
// when some field has no writable column.
func (b *builder[K, V]) signature(it Item[V]) bool {
	sig := b.sig
	clear(sig)
	ok := true
	for name := range it.Fields {
		ci, found := b.t.Column(name)
		if !found {
			if !slices.Contains(b.plan.Unknown, name) {
				b.plan.Unknown = append(b.plan.Unknown, name)
			}
			ok = false
			continue
		}
		sig[ci/64] |= 1 << (ci % 64)
	}
	for _, ci := range b.t.KeyColumns {
		sig[ci/64] |= 1 << (ci % 64)
	}
	for _, ci := range b.t.Always {
		sig[ci/64] |= 1 << (ci % 64)
	}
	return ok
}

func newGroup[V any](sig []uint64, columns int) *Group[V] {
	g := &Group[V]{Sig: slices.Clone(sig)}
	for ci := range columns {
		if g.Has(ci) {
			g.Cols = append(g.Cols, ci)
		}
	}
	return g
}

// sameFields reports whether an item's fields are listed by order, the very same slice: the item
// then has the same field set as the item order came from.
func sameFields[V any](it Item[V], order []string) bool {
	fo := it.Rec.FieldOrder
	return len(order) > 0 && len(fo) == len(order) && &fo[0] == &order[0] && len(it.Fields) == len(fo)
}
