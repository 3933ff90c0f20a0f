package codec

import (
	"context"
	"fmt"

	"github.com/hamba/avro/v2"

	"github.com/backflow-dev/backflow/pkg/change"
)

// RowEncoder encodes events that differ only in their after row, such as the read events of a
// snapshot's chunk, and returns what Encode would, byte for byte. In Avro everything around
// the row (the schema header, the source block, the op, the commit fields) is the same for all
// of them: it is written once, and each row costs only its own fields. The row comes as values
// in the table's column order, so no map is built to encode it. The other formats go through
// Encode. A RowEncoder serves one goroutine.
type RowEncoder struct {
	e     *Encoder
	topic string
	ev    change.Event // the events' shared fields; After is the row being encoded (non-Avro)
	p     *tablePlan
	keyAt []int // the positions of the key columns among the table's
	// keyHead, head and tail are the Avro bytes of the key before its fields, and of the value
	// before and after the after row's fields.
	keyHead, head, tail []byte
	w                   *avro.Writer // EncodeFrom's, whose bytes it returns
}

// A RowSource is a row that writes its own columns, for EncodeFrom: a row as it came from the
// database, whose text can often be written as it is, without a Go value in between. Columns
// are given by position in the table's order.
type RowSource interface {
	// Null reports whether column i is NULL.
	Null(i int) bool
	// WriteColumn writes column i, not NULL, to w in the Avro form of its kind (AvroForm) and
	// reports true; or it writes nothing and reports false, for EncodeFrom to write Value(i).
	WriteColumn(w *avro.Writer, i int) (bool, error)
	// Value returns column i, not NULL, in the form of package change.
	Value(i int) (any, error)
}

// AvroForm names the Avro type a value of kind k is written as, outside of unions: "int",
// "long", "float", "double", "boolean", "bytes", "string", or "array" (of the element kind's
// form). A RowSource writes its columns in it.
func AvroForm(k change.Kind) string {
	switch k {
	case change.KindInt16, change.KindInt32, change.KindDate:
		return "int"
	case change.KindInt64, change.KindTime, change.KindTimestamp:
		return "long"
	case change.KindFloat32:
		return "float"
	case change.KindFloat64:
		return "double"
	case change.KindBool:
		return "boolean"
	case change.KindBytes:
		return "bytes"
	case change.KindArray:
		return "array"
	}
	return "string"
}

// Rows returns the RowEncoder of the events for topic that are ev with another after row. ev
// has no before row; its after row is ignored.
func (e *Encoder) Rows(ctx context.Context, topic string, ev *change.Event) (*RowEncoder, error) {
	if ev == nil || ev.Table == nil {
		return nil, fmt.Errorf("codec: row encoder for topic %q: no event or table", topic)
	}
	if ev.Before != nil || (ev.Op != change.OpRead && ev.Op != change.OpCreate) {
		return nil, fmt.Errorf("codec: row encoder for topic %q: a %q event: only reads and inserts without a before row differ in their after row alone", topic, ev.Op)
	}
	p, err := e.plan(ev.Table)
	if err != nil {
		return nil, err
	}
	r := &RowEncoder{e: e, topic: topic, ev: *ev, p: p, w: avro.NewWriter(nil, 1024)}
	r.ev.After = nil
	for i, c := range ev.Table.Columns {
		if c.Key {
			r.keyAt = append(r.keyAt, i)
		}
	}
	if !e.isAvro() {
		return r, nil
	}
	w := getWriter()
	defer putWriter(w)
	if p.key != nil {
		if err := e.writeHeader(ctx, w, topic, p.key, "-key"); err != nil {
			return nil, r.wrap(err)
		}
		r.keyHead = detach(w.Buffer())
		w.Reset(nil)
	}
	if err := e.writeHeader(ctx, w, topic, p.value, "-value"); err != nil {
		return nil, r.wrap(err)
	}
	w.WriteLong(0) // no before row
	w.WriteLong(1) // an after row
	r.head = detach(w.Buffer())
	w.Reset(nil)
	var t Template
	writeEnvelopeTail(w, &r.ev, e.cfg.prefix, &t.Cuts)
	t.Value = w.Buffer()
	if r.tail, err = e.Fill(t, CommitOf(&r.ev)); err != nil {
		return nil, r.wrap(err)
	}
	return r, nil
}

// Encode returns the key and value of the event whose after row is vals, one value per column
// of the table in its order, in the forms of package change.
func (r *RowEncoder) Encode(ctx context.Context, vals []any) (key, value []byte, err error) {
	t := r.p.table
	if len(vals) != len(t.Columns) {
		return nil, nil, fmt.Errorf("codec: encode a row of %s: %d values for %d columns", t.QualifiedName(), len(vals), len(t.Columns))
	}
	if !r.e.isAvro() {
		r.ev.After = make(change.Row, len(vals))
		for i, c := range t.Columns {
			r.ev.After[c.Name] = vals[i]
		}
		defer func() { r.ev.After = nil }()
		return r.e.Encode(ctx, r.topic, &r.ev)
	}
	w := getWriter()
	defer putWriter(w)
	if r.keyHead != nil {
		_, _ = w.Write(r.keyHead)
		if err := writeFields(w, r.p.keyCols, posRow{vals: vals, at: r.keyAt}); err != nil {
			return nil, nil, r.wrap(fmt.Errorf("key: %w", err))
		}
		key = detach(w.Buffer())
		w.Reset(nil)
	}
	_, _ = w.Write(r.head)
	if err := writeFields(w, r.p.cols, posRow{vals: vals}); err != nil {
		return nil, nil, r.wrap(fmt.Errorf("after: %w", err))
	}
	row := w.Buffer()
	value = make([]byte, len(row)+len(r.tail))
	copy(value[copy(value, row):], r.tail)
	return key, value, nil
}

// EncodeFrom returns what Encode would of the row src gives, whose columns are written as src
// wrote them where it could. In Avro the key and value are the RowEncoder's own: they stay
// valid until its next EncodeFrom, so the caller copies them out (into memory of its choosing,
// which is the point: no allocation per row here).
func (r *RowEncoder) EncodeFrom(ctx context.Context, src RowSource) (key, value []byte, err error) {
	if !r.e.isAvro() {
		vals := make([]any, len(r.p.table.Columns))
		for i := range vals {
			if !src.Null(i) {
				if vals[i], err = src.Value(i); err != nil {
					return nil, nil, r.wrap(fmt.Errorf("column %q: %w", r.p.table.Columns[i].Name, err))
				}
			}
		}
		return r.Encode(ctx, vals)
	}
	w := r.w
	w.Reset(nil)
	keyLen := 0
	if r.keyHead != nil {
		_, _ = w.Write(r.keyHead)
		if err := writeSourceFields(w, r.p.keyCols, r.keyAt, src); err != nil {
			return nil, nil, r.wrap(fmt.Errorf("key: %w", err))
		}
		keyLen = len(w.Buffer())
	}
	_, _ = w.Write(r.head)
	if err := writeSourceFields(w, r.p.cols, nil, src); err != nil {
		return nil, nil, r.wrap(fmt.Errorf("after: %w", err))
	}
	_, _ = w.Write(r.tail)
	if err := w.Error; err != nil {
		return nil, nil, r.wrap(err)
	}
	out := w.Buffer()
	if r.keyHead != nil {
		key = out[:keyLen:keyLen]
	}
	return key, out[keyLen:], nil
}

// writeSourceFields is writeFields of a RowSource: the i-th of cols is src's column at[i]
// (i when at is nil).
func writeSourceFields(w *avro.Writer, cols []colPlan, at []int, src RowSource) error {
	for i := range cols {
		c, pos := &cols[i], i
		if at != nil {
			pos = at[i]
		}
		if src.Null(pos) {
			if !c.nullable {
				return fmt.Errorf("key column %q is NULL", c.name)
			}
			w.WriteLong(0)
			continue
		}
		if c.nullable {
			w.WriteLong(1)
		}
		if err := writeSourceColumn(w, c, pos, src); err != nil {
			return fmt.Errorf("column %q (%s): %w", c.name, c.kind, err)
		}
	}
	return nil
}

func writeSourceColumn(w *avro.Writer, c *colPlan, pos int, src RowSource) error {
	written, err := src.WriteColumn(w, pos)
	if err != nil || written {
		return err
	}
	v, err := src.Value(pos)
	if err != nil {
		return err
	}
	return writeValue(w, c, v)
}

func (r *RowEncoder) wrap(err error) error {
	return fmt.Errorf("codec: encode %s event (op %q) for topic %q: %w", r.p.table.QualifiedName(), r.ev.Op, r.topic, err)
}
