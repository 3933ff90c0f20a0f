package codec

import (
	"context"
	"fmt"

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
	r := &RowEncoder{e: e, topic: topic, ev: *ev, p: p}
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

func (r *RowEncoder) wrap(err error) error {
	return fmt.Errorf("codec: encode %s event (op %q) for topic %q: %w", r.p.table.QualifiedName(), r.ev.Op, r.topic, err)
}
