package codec

import (
	"context"

	"github.com/hamba/avro/v2"

	"github.com/backflow-dev/backflow/pkg/change"
)

// RowWriter receives the after image of a created row from ScanCreated, one column at a time in
// the table's column order, with each value in its base Go type instead of boxed in an any. col
// is the column's index in Table.Columns. Int carries Avro int and long values, String Avro
// strings (the kind says what the text is: numeric, timestamptz, uuid, …).
type RowWriter interface {
	Null(col int)
	Bool(col int, v bool)
	Int(col int, v int64)
	Float32(col int, v float32)
	Float64(col int, v float64)
	String(col int, v string)
	Bytes(col int, v []byte)
}

// Created is what ScanCreated read from an event besides its row.
type Created struct {
	Op         change.Op // OpCreate or OpRead
	SourceTsMs int64     // when the change was committed in the source
}

// ScanTable returns the table of an Avro message's writer schema when ScanCreated can read its
// events, without reading the body. It returns nil for JSON, for schemas that are not known yet
// and for schemas with columns whose values need converting (arrays, Debezium's temporal
// types): those messages go through Decode.
func (d *Decoder) ScanTable(ctx context.Context, value []byte) *change.Table {
	if sp, _ := d.scanPlan(ctx, value); sp != nil {
		return sp.table
	}
	return nil
}

// ScanCreated reads an event that created a row (op c, or r for a snapshot read) of table t and
// hands its after image to w, column by column. It reports false, having read nothing further,
// when the message is not such an event: another table or shape, another op, an unchanged-TOAST
// list, a message ScanTable rejects, or a body that does not decode. w may have received columns
// of the row by then; the caller drops them and decodes the message with Decode instead, which
// also says what is wrong with it.
func (d *Decoder) ScanCreated(ctx context.Context, value []byte, t *change.Table, w RowWriter) (Created, bool) {
	sp, body := d.scanPlan(ctx, value)
	if sp == nil || sp.table != t {
		return Created{}, false
	}
	r := readerPool.Get().(*avro.Reader)
	defer func() {
		r.Reset(nil)
		r.Error = nil
		readerPool.Put(r)
	}()
	r.Reset(body)
	r.Error = nil
	var c Created
	for _, step := range sp.steps {
		if !step(r, w, &c) || r.Error != nil {
			return Created{}, false
		}
	}
	if r.Peek(); r.Error == nil { // trailing bytes
		return Created{}, false
	}
	return c, c.Op == change.OpCreate || c.Op == change.OpRead
}

// scanPlan returns the compiled scan of a message's writer schema and the message's Avro body, or
// nil.
func (d *Decoder) scanPlan(ctx context.Context, value []byte) (*scanPlan, []byte) {
	if len(value) == 0 || isJSON(value) {
		return nil, nil
	}
	cs, body, _, err := d.writerSchema(ctx, value)
	if err != nil {
		return nil, nil
	}
	return cs.scan(), body
}

// scanPlan reads an Envelope of created rows: before must be null, after goes to a RowWriter.
type scanPlan struct {
	table *change.Table
	steps []scanStep
}

// scanStep reads one envelope field; false means the event is not a created row.
type scanStep func(r *avro.Reader, w RowWriter, c *Created) bool

// scanColumn reads one column into w.
type scanColumn func(r *avro.Reader, w RowWriter, col int)

func (c *compiledSchema) scan() *scanPlan {
	c.scanOnce.Do(func() {
		env, err := c.envelope()
		if err != nil {
			return
		}
		c.scanned = compileScan(c.schema, env.table)
	})
	return c.scanned
}

// compileScan compiles the scan of an Envelope whose rows are of table t, or returns nil when
// some field cannot be scanned.
func compileScan(s avro.Schema, t *change.Table) *scanPlan {
	rec, ok := deref(s).(*avro.RecordSchema)
	if !ok {
		return nil
	}
	p := &scanPlan{table: t}
	for _, f := range rec.Fields() {
		var step scanStep
		switch f.Name() {
		case "before":
			step = scanAbsent(f.Type())
		case "after":
			step = scanAfter(f.Type())
		case "unchanged_toast":
			step = scanNoToast(f.Type())
		case "source":
			src, err := compileSource(f.Type())
			if err != nil {
				return nil
			}
			step = func(r *avro.Reader, _ RowWriter, c *Created) bool {
				var s change.Source
				src(r, &s)
				c.SourceTsMs = s.TsMs
				return true
			}
		case "op":
			fn := compileAny(f.Type())
			step = func(r *avro.Reader, _ RowWriter, c *Created) bool {
				c.Op = change.Op(asString(fn(r)))
				return true
			}
		default:
			fn := compileAny(f.Type())
			step = func(r *avro.Reader, _ RowWriter, _ *Created) bool { fn(r); return true }
		}
		if step == nil {
			return nil
		}
		p.steps = append(p.steps, step)
	}
	return p
}

// scanAbsent reads a nullable field that must be null (before, in a created row's event).
func scanAbsent(s avro.Schema) scanStep {
	_, nullIdx, err := splitNullable(s)
	if err != nil || nullIdx < 0 {
		return nil
	}
	return func(r *avro.Reader, _ RowWriter, _ *Created) bool {
		return r.ReadLong() == int64(nullIdx)
	}
}

// scanNoToast reads an unchanged_toast list that must be null or empty.
func scanNoToast(s avro.Schema) scanStep {
	t, nullIdx, err := splitNullable(s)
	if err != nil || t.Type() != avro.Array {
		return nil
	}
	u, isUnion := deref(s).(*avro.UnionSchema)
	single := isUnion && len(u.Types()) == 1
	return func(r *avro.Reader, _ RowWriter, _ *Created) bool {
		if !present(r, nullIdx, single) {
			return true
		}
		n, _ := r.ReadBlockHeader()
		return n == 0
	}
}

// scanAfter reads the after image, which must be present, into the RowWriter.
func scanAfter(s avro.Schema) scanStep {
	t, nullIdx, err := splitNullable(s)
	if err != nil {
		return nil
	}
	rec, ok := t.(*avro.RecordSchema)
	if !ok {
		return nil
	}
	cols := make([]scanColumn, len(rec.Fields()))
	for i, f := range rec.Fields() {
		if cols[i] = compileScanColumn(f.Type()); cols[i] == nil {
			return nil
		}
	}
	u, isUnion := deref(s).(*avro.UnionSchema)
	single := isUnion && len(u.Types()) == 1
	return func(r *avro.Reader, w RowWriter, _ *Created) bool {
		if !present(r, nullIdx, single) {
			return false
		}
		for i, col := range cols {
			col(r, w, i)
		}
		return true
	}
}

// compileScanColumn compiles a column of our own schemas (which name the kind in backflow.kind
// and need no conversion), or returns nil.
func compileScanColumn(s avro.Schema) scanColumn {
	t, nullIdx, err := splitNullable(s)
	if err != nil {
		return nil
	}
	ks := propString(t, propKind)
	k, ok := change.ParseKind(ks)
	if !ok || k == change.KindArray {
		return nil
	}
	if want, _, _ := avroTypeOf(k); want != t.Type() {
		return nil
	}
	var read scanColumn
	switch t.Type() {
	case avro.Int:
		read = func(r *avro.Reader, w RowWriter, col int) { w.Int(col, int64(r.ReadInt())) }
	case avro.Long:
		read = func(r *avro.Reader, w RowWriter, col int) { w.Int(col, r.ReadLong()) }
	case avro.Float:
		read = func(r *avro.Reader, w RowWriter, col int) { w.Float32(col, r.ReadFloat()) }
	case avro.Double:
		read = func(r *avro.Reader, w RowWriter, col int) { w.Float64(col, r.ReadDouble()) }
	case avro.Boolean:
		read = func(r *avro.Reader, w RowWriter, col int) { w.Bool(col, r.ReadBool()) }
	case avro.String:
		read = func(r *avro.Reader, w RowWriter, col int) { w.String(col, r.ReadString()) }
	case avro.Bytes:
		read = func(r *avro.Reader, w RowWriter, col int) { w.Bytes(col, r.ReadBytes()) }
	default:
		return nil
	}
	u, isUnion := deref(s).(*avro.UnionSchema)
	single := isUnion && len(u.Types()) == 1
	if nullIdx < 0 && !single {
		return read
	}
	return func(r *avro.Reader, w RowWriter, col int) {
		if present(r, nullIdx, single) {
			read(r, w, col)
		} else if r.Error == nil {
			w.Null(col)
		}
	}
}
