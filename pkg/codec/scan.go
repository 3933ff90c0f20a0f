package codec

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/hamba/avro/v2"

	"github.com/backflow-dev/backflow/pkg/change"
)

// RowWriter receives the after image of a created row from ScanCreated, one column at a time in
// the table's column order, with each value in its base Go type instead of boxed in an any. col
// is the column's index in Table.Columns. Int carries Avro int and long values, String the bytes
// of Avro strings (the kind says what the text is: numeric, timestamptz, uuid, …), Bytes Avro
// bytes. The slices given to String and Bytes are only valid during the call.
type RowWriter interface {
	Null(col int)
	Bool(col int, v bool)
	Int(col int, v int64)
	Float32(col int, v float32)
	Float64(col int, v float64)
	String(col int, v []byte)
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
	st := scanStates.Get().(*scanState)
	st.r, st.size = readerFor(body), len(body)
	defer func() {
		putReader(st.r, st.size)
		st.r = nil
		if cap(st.scratch) > maxPooledScratch {
			st.scratch = nil // one huge value must not stay pinned in the pool
		}
		scanStates.Put(st)
	}()
	var c Created
	for _, step := range sp.steps {
		if !step(st, w, &c) || st.r.Error != nil {
			return Created{}, false
		}
	}
	if st.r.Peek(); st.r.Error == nil { // trailing bytes
		return Created{}, false
	}
	return c, c.Op == change.OpCreate || c.Op == change.OpRead
}

// scanState is a Reader and a scratch buffer for the strings and bytes of one message: values go
// to the RowWriter without a string or slice allocated for each.
type scanState struct {
	r       *avro.Reader
	size    int // of the message body: no value is longer
	scratch []byte
}

// maxPooledScratch is the largest scratch buffer kept for the next message.
const maxPooledScratch = 1 << 20

var scanStates = sync.Pool{New: func() any { return &scanState{} }}

// bytes reads an Avro string or bytes value into the scratch buffer. A length beyond the body
// is refused before the buffer grows to it.
func (st *scanState) bytes() []byte {
	n := st.r.ReadLong()
	if n < 0 || n > int64(min(st.size, maxValueBytes)) {
		st.r.ReportError("scan", fmt.Sprintf("invalid length %d", n))
		return nil
	}
	st.scratch = slices.Grow(st.scratch[:0], int(n))[:n]
	st.r.Read(st.scratch)
	return st.scratch
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
type scanStep func(st *scanState, w RowWriter, c *Created) bool

// scanColumn reads one column into w.
type scanColumn func(st *scanState, w RowWriter, col int)

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
			step = scanSource(f.Type())
		case "op":
			fn := compileAny(f.Type())
			step = func(st *scanState, _ RowWriter, c *Created) bool {
				c.Op = change.Op(asString(fn(st.r)))
				return true
			}
		default:
			fn := skipper(f.Type())
			step = func(st *scanState, _ RowWriter, _ *Created) bool { fn(st.r); return true }
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
	return func(st *scanState, _ RowWriter, _ *Created) bool {
		return st.r.ReadLong() == int64(nullIdx)
	}
}

// scanNoToast reads an unchanged_toast list that must be null or empty.
func scanNoToast(s avro.Schema) scanStep {
	t, nullIdx, err := splitNullable(s)
	if err != nil || t.Type() != avro.Array {
		return nil
	}
	single := singleUnion(s)
	return func(st *scanState, _ RowWriter, _ *Created) bool {
		if !present(st.r, nullIdx, single) {
			return true
		}
		n, _ := st.r.ReadBlockHeader()
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
	single := singleUnion(s)
	return func(st *scanState, w RowWriter, _ *Created) bool {
		if !present(st.r, nullIdx, single) {
			return false
		}
		for i, col := range cols {
			col(st, w, i)
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
		read = func(st *scanState, w RowWriter, col int) { w.Int(col, int64(st.r.ReadInt())) }
	case avro.Long:
		read = func(st *scanState, w RowWriter, col int) { w.Int(col, st.r.ReadLong()) }
	case avro.Float:
		read = func(st *scanState, w RowWriter, col int) { w.Float32(col, st.r.ReadFloat()) }
	case avro.Double:
		read = func(st *scanState, w RowWriter, col int) { w.Float64(col, st.r.ReadDouble()) }
	case avro.Boolean:
		read = func(st *scanState, w RowWriter, col int) { w.Bool(col, st.r.ReadBool()) }
	case avro.String:
		read = func(st *scanState, w RowWriter, col int) {
			if b := st.bytes(); st.r.Error == nil {
				w.String(col, b)
			}
		}
	case avro.Bytes:
		read = func(st *scanState, w RowWriter, col int) {
			if b := st.bytes(); st.r.Error == nil {
				w.Bytes(col, b)
			}
		}
	default:
		return nil
	}
	single := singleUnion(s)
	if nullIdx < 0 && !single {
		return read
	}
	return func(st *scanState, w RowWriter, col int) {
		if present(st.r, nullIdx, single) {
			read(st, w, col)
		} else if st.r.Error == nil {
			w.Null(col)
		}
	}
}

// scanSource reads the source block's ts_ms and skips the rest.
func scanSource(s avro.Schema) scanStep {
	rec, ok := deref(s).(*avro.RecordSchema)
	if !ok {
		return nil
	}
	fields := make([]func(r *avro.Reader, c *Created), len(rec.Fields()))
	for i, f := range rec.Fields() {
		if f.Name() != "ts_ms" {
			skip := skipper(f.Type())
			fields[i] = func(r *avro.Reader, _ *Created) { skip(r) }
			continue
		}
		read := compileAny(f.Type())
		fields[i] = func(r *avro.Reader, c *Created) { c.SourceTsMs = asInt64(read(r)) }
	}
	return func(st *scanState, _ RowWriter, c *Created) bool {
		for _, f := range fields {
			f(st.r, c)
		}
		return true
	}
}

// skipPrimitive returns the function that reads past a value of a primitive type, or nil.
func skipPrimitive(t avro.Type) func(r *avro.Reader) {
	switch t {
	case avro.Boolean:
		return (*avro.Reader).SkipBool
	case avro.Int:
		return (*avro.Reader).SkipInt
	case avro.Long:
		return (*avro.Reader).SkipLong
	case avro.Float:
		return (*avro.Reader).SkipFloat
	case avro.Double:
		return (*avro.Reader).SkipDouble
	case avro.String, avro.Bytes:
		return skipBytes
	case avro.Null:
		return func(*avro.Reader) {}
	}
	return nil
}

// skipBytes reads past a string or bytes value. hamba's SkipString and SkipBytes take a negative
// length for an empty value, where its ReadString and ReadBytes fail: a message that Decode
// refuses must not scan.
func skipBytes(r *avro.Reader) {
	if n := r.ReadLong(); n < 0 {
		r.ReportError("skip", fmt.Sprintf("invalid length %d", n))
	} else {
		r.SkipNBytes(int(n))
	}
}

// skipper returns a function that reads past a value of s: primitives and nullable primitives
// without allocating, anything else through hamba's generic reader.
func skipper(s avro.Schema) func(r *avro.Reader) {
	t, nullIdx, err := splitNullable(s)
	if err != nil {
		return func(r *avro.Reader) { skipValue(r, s, 0) }
	}
	skip := skipPrimitive(t.Type())
	if skip == nil {
		skip = func(r *avro.Reader) { skipValue(r, t, 0) }
	}
	single := singleUnion(s)
	if nullIdx < 0 && !single {
		return skip
	}
	return func(r *avro.Reader) {
		if present(r, nullIdx, single) {
			skip(r)
		}
	}
}
