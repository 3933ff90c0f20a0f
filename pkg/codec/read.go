package codec

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"

	"github.com/backflow-dev/backflow/pkg/change"
)

// readFn reads one value. Errors go to the Reader (ReportError) and are checked once at the end.
type readFn func(r *avro.Reader) any

type propSchema interface{ Prop(string) any }

func prop(s avro.Schema, name string) any {
	if p, ok := s.(propSchema); ok {
		return p.Prop(name)
	}
	return nil
}

func propString(s avro.Schema, name string) string {
	v, _ := prop(s, name).(string)
	return v
}

func deref(s avro.Schema) avro.Schema {
	for {
		r, ok := s.(*avro.RefSchema)
		if !ok {
			return s
		}
		s = r.Schema()
	}
}

// splitNullable returns the non-null member of a ["null", T] or [T, "null"] union and the index of
// null, or s itself and -1.
func splitNullable(s avro.Schema) (avro.Schema, int, error) {
	s = deref(s)
	u, ok := s.(*avro.UnionSchema)
	if !ok {
		return s, -1, nil
	}
	types := u.Types()
	if len(types) == 1 {
		return deref(types[0]), -1, nil
	}
	if len(types) == 2 {
		if types[0].Type() == avro.Null {
			return deref(types[1]), 0, nil
		}
		if types[1].Type() == avro.Null {
			return deref(types[0]), 1, nil
		}
	}
	return nil, 0, fmt.Errorf("union %s is not a nullable union of one type", u.String())
}

// singleUnion reports whether s is a union of one member, whose values still carry the index.
func singleUnion(s avro.Schema) bool {
	u, ok := deref(s).(*avro.UnionSchema)
	return ok && len(u.Types()) == 1
}

// nullable wraps fn in the reading of a 2-member union whose null member is at nullIdx (or, with
// nullIdx -1 and a 1-member union, just the index).
func nullable(nullIdx int, single bool, fn readFn) readFn {
	if nullIdx < 0 {
		if !single {
			return fn
		}
		return func(r *avro.Reader) any {
			if idx := r.ReadLong(); idx != 0 {
				r.ReportError("decode", fmt.Sprintf("union index %d out of range", idx))
				return nil
			}
			return fn(r)
		}
	}
	nullI, typI := int64(nullIdx), int64(1-nullIdx)
	return func(r *avro.Reader) any {
		switch idx := r.ReadLong(); idx {
		case nullI:
			return nil
		case typI:
			return fn(r)
		default:
			r.ReportError("decode", fmt.Sprintf("union index %d out of range", idx))
			return nil
		}
	}
}

// compileNullable compiles a possibly-nullable type with inner compiling its non-null member.
func compileNullable(s avro.Schema, inner func(avro.Schema) (readFn, error)) (readFn, avro.Schema, bool, error) {
	t, nullIdx, err := splitNullable(s)
	if err != nil {
		return nil, nil, false, err
	}
	fn, err := inner(t)
	if err != nil {
		return nil, nil, false, err
	}
	single := singleUnion(s)
	return nullable(nullIdx, single, fn), t, nullIdx >= 0, nil
}

// baseReader reads an Avro primitive in its natural Go form.
func baseReader(t avro.Type) (readFn, bool) {
	switch t {
	case avro.Int:
		return func(r *avro.Reader) any { return r.ReadInt() }, true
	case avro.Long:
		return func(r *avro.Reader) any { return r.ReadLong() }, true
	case avro.Float:
		return func(r *avro.Reader) any { return r.ReadFloat() }, true
	case avro.Double:
		return func(r *avro.Reader) any { return r.ReadDouble() }, true
	case avro.Boolean:
		return func(r *avro.Reader) any { return r.ReadBool() }, true
	case avro.String:
		return func(r *avro.Reader) any { return r.ReadString() }, true
	case avro.Bytes:
		return func(r *avro.Reader) any {
			b := r.ReadBytes()
			return b[:len(b):len(b)] // the Reader hands out slices of a shared slab: stop appends
		}, true
	}
	return nil, false
}

// connectType is the Kafka Connect type an Avro primitive carries.
func connectType(s avro.Schema) string {
	if ct := propString(s, propConnectType); ct != "" {
		return ct
	}
	switch s.Type() {
	case avro.Int:
		return "int32"
	case avro.Long:
		return "int64"
	case avro.Float:
		return "float32"
	case avro.Double:
		return "float64"
	case avro.Boolean:
		return "boolean"
	case avro.String:
		return "string"
	case avro.Bytes:
		return "bytes"
	case avro.Record:
		return "struct"
	}
	return string(s.Type())
}

// withConv applies c to what fn reads.
func withConv(fn readFn, c conv) readFn {
	if c == nil {
		return fn
	}
	return func(r *avro.Reader) any {
		v := fn(r)
		if v == nil || r.Error != nil {
			return nil
		}
		out, err := c(v)
		if err != nil {
			r.ReportError("decode", err.Error())
			return nil
		}
		return out
	}
}

// compileScalar compiles a non-array, non-null column or element type, returning its kind.
// Our own schemas say the kind in "backflow.kind"; others (Debezium's) are mapped by their
// connect.name.
//
// ph is the unavailable-value placeholder that Debezium's values may hold instead of a TOASTed
// value (nil: none); backflow's own schemas never carry it.
func compileScalar(t avro.Schema, ph *placeholder) (readFn, change.Kind, error) {
	if ks := propString(t, propKind); ks != "" {
		k, ok := change.ParseKind(ks)
		if !ok || k == change.KindArray {
			return nil, 0, fmt.Errorf("unknown %s %q", propKind, ks)
		}
		want, _, _ := avroTypeOf(k)
		if t.Type() != want {
			return nil, 0, fmt.Errorf("%s %q needs Avro type %s, schema has %s", propKind, ks, want, t.Type())
		}
		fn, _ := baseReader(want)
		return fn, k, nil
	}
	switch t.Type() {
	case avro.Enum:
		return func(r *avro.Reader) any { return r.ReadNext(t) }, change.KindEnum, nil
	case avro.Record:
		if propString(t, propConnectName) != "io.debezium.data.VariableScaleDecimal" {
			return nil, 0, fmt.Errorf("unsupported record type %s", t.(*avro.RecordSchema).FullName())
		}
		return withConv(recordReader(t.(*avro.RecordSchema)), variableScaleDecimal), change.KindNumeric, nil
	}
	fn, ok := baseReader(t.Type())
	if !ok {
		return nil, 0, fmt.Errorf("unsupported Avro type %s", t.Type())
	}
	params, _ := prop(t, propConnectPars).(map[string]any)
	name := propString(t, propConnectName)
	if ls, ok := t.(avro.LogicalTypeSchema); ok && t.Type() == avro.Bytes && ls.Logical() != nil {
		if d, ok := ls.Logical().(*avro.DecimalLogicalSchema); ok { // Avro's own decimal
			name, params = "org.apache.kafka.connect.data.Decimal", map[string]any{"scale": float64(d.Scale())}
		}
	}
	k, c, err := semantic(connectType(t), name, params)
	if err != nil {
		return nil, 0, err
	}
	if ph != nil && (t.Type() == avro.String || t.Type() == avro.Bytes) {
		return withPlaceholder(fn, c, ph), k, nil
	}
	return withConv(fn, c), k, nil
}

// arrayReader reads an array of items into []any.
func arrayReader(item readFn) readFn {
	return func(r *avro.Reader) any {
		out := []any{}
		eachItem(r, false, func() { out = append(out, item(r)) })
		return out
	}
}

// compileColumn compiles a field of a Value or Key record into its Column and reader.
func compileColumn(f *avro.Field, ph *placeholder) (change.Column, readFn, error) {
	var col change.Column
	fn, typ, _, err := compileNullable(f.Type(), func(t avro.Schema) (readFn, error) {
		if t.Type() != avro.Array {
			fn, k, err := compileScalar(t, ph)
			col.Kind = k
			return fn, err
		}
		col.Kind = change.KindArray
		items := t.(*avro.ArraySchema).Items()
		item, _, _, err := compileNullable(items, func(it avro.Schema) (readFn, error) {
			if it.Type() == avro.Array {
				return nil, errors.New("array of arrays is not supported")
			}
			fn, k, err := compileScalar(it, ph)
			col.Elem = k
			return fn, err
		})
		if err != nil {
			return nil, fmt.Errorf("array items: %w", err)
		}
		return arrayReader(item), nil
	})
	if err != nil {
		return col, nil, fmt.Errorf("field %q: %w", f.Name(), err)
	}
	col.Name = f.Name()
	if n, ok := f.Prop(propPGName).(string); ok && n != "" {
		col.Name = n
	}
	col.PGType = propString(typ, propPGType)
	if col.PGType == "" {
		if params, ok := prop(typ, propConnectPars).(map[string]any); ok {
			col.PGType, _ = params["__debezium.source.column.type"].(string)
			col.PGType = strings.ToLower(col.PGType)
		}
	}
	if oid, ok := prop(typ, propPGOID).(float64); ok && oid >= 0 && oid <= 1<<32-1 {
		col.TypeOID = uint32(oid)
	}
	col.Key, _ = prop(typ, propKey).(bool)
	return col, fn, nil
}

// rowPlan reads a Value or Key record into a Row.
type rowPlan struct {
	table        *change.Table
	cols         []readFn // one per table column, in field order
	placeholders bool     // values may be unavailable{} (see resolveUnavailable)
}

func (p *rowPlan) read(r *avro.Reader) change.Row {
	row := make(change.Row, len(p.cols))
	for i, fn := range p.cols {
		row[p.table.Columns[i].Name] = fn(r)
	}
	return row
}

// compileRow compiles a Value or Key record; the table's schema and name come from the record's
// pg.schema and pg.table properties, or else from the last two parts of its namespace, as in
// Debezium's "<prefix>.<schema>.<table>".
func compileRow(rec *avro.RecordSchema, ph *placeholder) (*rowPlan, error) {
	t := &change.Table{Schema: propString(rec, propPGSchema), Name: propString(rec, propPGTable)}
	foreign := t.Schema == "" && t.Name == ""
	if !foreign {
		ph = nil // backflow's own records list unchanged TOAST instead
	}
	if foreign {
		parts := strings.Split(rec.Namespace(), ".")
		if len(parts) >= 2 {
			t.Schema, t.Name = parts[len(parts)-2], parts[len(parts)-1]
		}
	}
	p := &rowPlan{table: t, placeholders: ph != nil}
	seen := make(map[string]bool, len(rec.Fields()))
	for _, f := range rec.Fields() {
		col, fn, err := compileColumn(f, ph)
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", rec.FullName(), err)
		}
		if seen[col.Name] {
			return nil, fmt.Errorf("record %s: two fields for column %q", rec.FullName(), col.Name)
		}
		seen[col.Name] = true
		t.Columns = append(t.Columns, col)
		p.cols = append(p.cols, fn)
	}
	return p, nil
}

// envPlan reads an Envelope into an Event.
type envPlan struct {
	table        *change.Table
	placeholders bool // rows may hold unavailable{} values
	steps        []func(r *avro.Reader, ev *change.Event)
}

func (p *envPlan) read(r *avro.Reader) *change.Event {
	ev := &change.Event{Table: p.table}
	for _, s := range p.steps {
		s(r, ev)
	}
	return ev
}

// compileAny compiles a reader for any schema: primitives typed, enums as their symbol, nullable
// unions unwrapped. Values of other types (records, arrays, maps, fixed, wider unions) are
// skipped and read as nil: every caller wants a string or an integer, or nothing at all, and
// hamba's generic reader would trust the message's block counts (see skipValue).
func compileAny(s avro.Schema) readFn {
	if fn, _, _, err := compileNullable(s, func(t avro.Schema) (readFn, error) {
		if fn, ok := baseReader(t.Type()); ok {
			return fn, nil
		}
		if t.Type() == avro.Enum {
			return func(r *avro.Reader) any { return r.ReadNext(t) }, nil
		}
		return func(r *avro.Reader) any { skipValue(r, t, 0); return nil }, nil
	}); err == nil {
		return fn
	}
	return func(r *avro.Reader) any { skipValue(r, s, 0); return nil }
}

// recordReader reads a record of primitive fields (Debezium's VariableScaleDecimal) into a map,
// as hamba's generic reader would, but with the limits of compileAny.
func recordReader(rec *avro.RecordSchema) readFn {
	names := make([]string, len(rec.Fields()))
	fns := make([]readFn, len(rec.Fields()))
	for i, f := range rec.Fields() {
		names[i], fns[i] = f.Name(), compileAny(f.Type())
	}
	return func(r *avro.Reader) any {
		m := make(map[string]any, len(fns))
		for i, fn := range fns {
			m[names[i]] = fn(r)
		}
		return m
	}
}

// skipValue reads past a value of s. Unlike hamba's generic reader, which reads as many items
// as a block header claims even once the input has run out, it stops at the first error, skips
// items that take no bytes without looping over them, and refuses values nested deeper than
// maxDepth (a recursive schema would otherwise let each byte of input cost a stack frame).
func skipValue(r *avro.Reader, s avro.Schema, depth int) {
	if depth > maxDepth {
		r.ReportError("skip", fmt.Sprintf("values nested deeper than %d", maxDepth))
		return
	}
	if skip := skipPrimitive(s.Type()); skip != nil {
		skip(r)
		return
	}
	switch t := deref(s).(type) {
	case *avro.RecordSchema:
		for _, f := range t.Fields() {
			if r.Error != nil {
				return
			}
			skipValue(r, f.Type(), depth+1)
		}
	case *avro.EnumSchema:
		r.SkipInt()
	case *avro.FixedSchema:
		r.SkipNBytes(t.Size())
	case *avro.UnionSchema:
		types := t.Types()
		if idx := r.ReadLong(); idx < 0 || idx >= int64(len(types)) {
			r.ReportError("skip", fmt.Sprintf("union index %d out of range", idx))
		} else {
			skipValue(r, types[idx], depth+1)
		}
	case *avro.ArraySchema:
		eachItem(r, takesNoBytes(t.Items(), 0), func() { skipValue(r, t.Items(), depth+1) })
	case *avro.MapSchema:
		eachItem(r, false, func() { skipBytes(r); skipValue(r, t.Values(), depth+1) })
	default:
		r.ReportError("skip", fmt.Sprintf("unexpected schema type %s", s.Type()))
	}
}

// eachItem reads the blocks of an array or map, calling item to read each item, until the end
// block or the first error: block counts come from the message, and a count the message does not
// hold ends at its end. When the items take no bytes (empty) there is nothing to read however
// many a block claims.
func eachItem(r *avro.Reader, empty bool, item func()) {
	for r.Error == nil {
		n, _ := r.ReadBlockHeader()
		switch {
		case n == 0:
			return
		case n < 0:
			r.ReportError("decode", fmt.Sprintf("invalid block count %d", n))
			return
		case empty:
			continue
		}
		for i := int64(0); i < n && r.Error == nil; i++ {
			item()
		}
	}
}

// takesNoBytes reports whether every value of s is written in zero bytes: null, and records of
// such fields.
func takesNoBytes(s avro.Schema, depth int) bool {
	switch t := deref(s).(type) {
	case *avro.NullSchema:
		return true
	case *avro.FixedSchema:
		return t.Size() == 0
	case *avro.RecordSchema:
		if depth > maxDepth {
			return false
		}
		for _, f := range t.Fields() {
			if !takesNoBytes(f.Type(), depth+1) {
				return false
			}
		}
		return true
	}
	return false
}

func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		if x {
			return "true"
		}
		return "false"
	}
	return ""
}

func asInt64(v any) int64 {
	i, _ := toInt64(v)
	return i
}

// compileSource compiles the source record: the fields change.Source has are read by name,
// others are skipped. String and long fields are read without boxing them in an any: the source
// block is on every record.
func compileSource(s avro.Schema) (func(r *avro.Reader, src *change.Source), error) {
	rec, ok := deref(s).(*avro.RecordSchema)
	if !ok {
		return nil, fmt.Errorf("source is %s, want a record", s.Type())
	}
	steps := make([]func(r *avro.Reader, src *change.Source), 0, len(rec.Fields()))
	for _, f := range rec.Fields() {
		steps = append(steps, compileSourceField(f))
	}
	return func(r *avro.Reader, src *change.Source) {
		for _, step := range steps {
			step(r, src)
		}
	}, nil
}

// sourceStrings and sourceLongs are the change.Source fields by their name in the source record.
var (
	sourceStrings = map[string]func(*change.Source) *string{
		"connector": func(s *change.Source) *string { return &s.Connector },
		"name":      func(s *change.Source) *string { return &s.Name },
		"db":        func(s *change.Source) *string { return &s.DB },
		"schema":    func(s *change.Source) *string { return &s.Schema },
		"table":     func(s *change.Source) *string { return &s.Table },
		"snapshot":  func(s *change.Source) *string { return &s.Snapshot },
	}
	sourceLongs = map[string]func(*change.Source) *int64{
		"txId":  func(s *change.Source) *int64 { return &s.TxID },
		"lsn":   func(s *change.Source) *int64 { return &s.LSN },
		"ts_ms": func(s *change.Source) *int64 { return &s.TsMs },
	}
)

// compileSourceField reads one field of the source record into src (or skips it).
func compileSourceField(f *avro.Field) func(r *avro.Reader, src *change.Source) {
	str, long := sourceStrings[f.Name()], sourceLongs[f.Name()]
	if t, nullIdx, err := splitNullable(f.Type()); err == nil {
		single := singleUnion(f.Type())
		switch {
		case t.Type() == avro.String && propString(t, propKind) == "":
			return func(r *avro.Reader, src *change.Source) {
				if present(r, nullIdx, single) {
					if v := r.ReadString(); str != nil {
						*str(src) = v
					}
				}
			}
		case t.Type() == avro.Long && long != nil:
			return func(r *avro.Reader, src *change.Source) {
				if present(r, nullIdx, single) {
					*long(src) = r.ReadLong()
				}
			}
		}
	}
	read := compileAny(f.Type())
	return func(r *avro.Reader, src *change.Source) {
		v := read(r)
		switch {
		case str != nil:
			*str(src) = asString(v)
		case long != nil:
			*long(src) = asInt64(v)
		}
	}
}

// present reads the union index of a value compiled by splitNullable (see nullable) and reports
// whether a value follows.
func present(r *avro.Reader, nullIdx int, single bool) bool {
	if nullIdx < 0 && !single {
		return true
	}
	idx := r.ReadLong()
	switch {
	case single && idx == 0, !single && idx == int64(1-nullIdx):
		return true
	case !single && idx == int64(nullIdx):
		return false
	}
	r.ReportError("decode", fmt.Sprintf("union index %d out of range", idx))
	return false
}

// compileEnvelope compiles a writer schema of the Envelope shape: before, after, source, op,
// ts_ms and unchanged_toast, in any order; other fields are skipped.
func compileEnvelope(s avro.Schema, ph *placeholder) (*envPlan, error) {
	rec, ok := deref(s).(*avro.RecordSchema)
	if !ok {
		return nil, fmt.Errorf("value schema is %s, want an Envelope record", s.Type())
	}
	p := &envPlan{}
	var rows *rowPlan
	var rowsName string
	rowSide := func(f *avro.Field) (readFn, error) {
		fn, _, _, err := compileNullable(f.Type(), func(t avro.Schema) (readFn, error) {
			vrec, ok := t.(*avro.RecordSchema)
			if !ok {
				return nil, fmt.Errorf("%s is %s, want a record", f.Name(), t.Type())
			}
			if rows == nil {
				rp, err := compileRow(vrec, ph)
				if err != nil {
					return nil, err
				}
				rows, rowsName = rp, vrec.FullName()
			} else if vrec.FullName() != rowsName {
				return nil, fmt.Errorf("before is %s but after is %s", rowsName, vrec.FullName())
			}
			rp := rows
			return func(r *avro.Reader) any { return rp.read(r) }, nil
		})
		return fn, err
	}
	for _, f := range rec.Fields() {
		var step func(r *avro.Reader, ev *change.Event)
		switch f.Name() {
		case "before", "after":
			fn, err := rowSide(f)
			if err != nil {
				return nil, fmt.Errorf("envelope %s: %w", rec.FullName(), err)
			}
			if f.Name() == "before" {
				step = func(r *avro.Reader, ev *change.Event) {
					if v := fn(r); v != nil {
						ev.Before = v.(change.Row)
					}
				}
			} else {
				step = func(r *avro.Reader, ev *change.Event) {
					if v := fn(r); v != nil {
						ev.After = v.(change.Row)
					}
				}
			}
		case "source":
			src, err := compileSource(f.Type())
			if err != nil {
				return nil, fmt.Errorf("envelope %s: %w", rec.FullName(), err)
			}
			step = func(r *avro.Reader, ev *change.Event) { src(r, &ev.Source) }
		case "op":
			fn := compileAny(f.Type())
			step = func(r *avro.Reader, ev *change.Event) { ev.Op = change.Op(asString(fn(r))) }
		case "ts_ms":
			fn := compileAny(f.Type())
			step = func(r *avro.Reader, ev *change.Event) { ev.TsMs = asInt64(fn(r)) }
		case "unchanged_toast":
			fn, _, _, err := compileNullable(f.Type(), func(t avro.Schema) (readFn, error) {
				a, ok := t.(*avro.ArraySchema)
				if !ok || deref(a.Items()).Type() != avro.String {
					return nil, fmt.Errorf("unchanged_toast is %s, want an array of strings", t.Type())
				}
				return func(r *avro.Reader) any {
					var cols []string
					eachItem(r, false, func() { cols = append(cols, r.ReadString()) })
					return cols
				}, nil
			})
			if err != nil {
				return nil, fmt.Errorf("envelope %s: %w", rec.FullName(), err)
			}
			step = func(r *avro.Reader, ev *change.Event) {
				if v, ok := fn(r).([]string); ok {
					ev.UnchangedToast = v
				}
			}
		default:
			fn := compileAny(f.Type())
			step = func(r *avro.Reader, _ *change.Event) { fn(r) }
		}
		p.steps = append(p.steps, step)
	}
	if rows == nil {
		return nil, fmt.Errorf("envelope %s has neither before nor after: %s", rec.FullName(), flatRowHint)
	}
	p.table, p.placeholders = rows.table, rows.placeholders
	return p, nil
}

// compiledSchema caches what was compiled from one writer schema, for use as a value, a key or
// both.
type compiledSchema struct {
	schema avro.Schema
	ph     *placeholder // the decoder's unavailable-value placeholder

	envOnce sync.Once
	env     *envPlan
	envErr  error

	keyOnce sync.Once
	key     *rowPlan
	keyErr  error

	scanOnce sync.Once
	scanned  *scanPlan // nil when the envelope cannot be scanned (see ScanCreated)
}

func (c *compiledSchema) envelope() (*envPlan, error) {
	c.envOnce.Do(func() { c.env, c.envErr = compileEnvelope(c.schema, c.ph) })
	return c.env, c.envErr
}

// record compiles the schema as a record of columns: a key, or a bare row (what names the role
// in the error of a schema that is no record).
func (c *compiledSchema) record(what string) (*rowPlan, error) {
	c.keyOnce.Do(func() {
		rec, ok := deref(c.schema).(*avro.RecordSchema)
		if !ok {
			c.keyErr = fmt.Errorf("%s schema is %s, want a record", what, c.schema.Type())
			return
		}
		c.key, c.keyErr = compileRow(rec, c.ph)
	})
	return c.key, c.keyErr
}

// Readers are pooled by the size of the body they read. hamba allocates a string or bytes value
// at the length the message claims before reading it, so a reader for a body of n bytes refuses
// values longer than the next power of two above n, which the body cannot hold: a 10-byte message
// claiming a 200 MiB string fails without allocating it. The largest class raises hamba's 1 MiB
// limit to maxValueBytes: a column may hold more (Kafka's own message size limit is the real
// bound). Decoded strings and bytes do not alias the input or the pool.
const (
	minReaderBits = 10 // the smallest class refuses values over 1 KiB
	maxReaderBits = 28 // maxValueBytes
	maxValueBytes = 1 << maxReaderBits

	// maxDepth bounds the nesting of the values skipped through recursive schemas: each level
	// costs a byte of input but a stack frame of Go.
	maxDepth = 64
)

var readerClasses = func() (cs [maxReaderBits - minReaderBits + 1]*sync.Pool) {
	for i := range cs {
		api := avro.Config{MaxByteSliceSize: 1 << (minReaderBits + i)}.Freeze()
		cs[i] = &sync.Pool{New: func() any { return avro.NewReader(nil, 0, avro.WithReaderConfig(api)) }}
	}
	return cs
}()

// readerFor returns a pooled Reader of body's size class, reset to body; give it back with
// putReader.
func readerFor(body []byte) *avro.Reader {
	r := readerClasses[readerClass(len(body))].Get().(*avro.Reader)
	r.Reset(body)
	r.Error = nil
	return r
}

func putReader(r *avro.Reader, size int) {
	r.Reset(nil)
	r.Error = nil
	readerClasses[readerClass(size)].Put(r)
}

// readerClass is the index of the class whose limit, 1<<(minReaderBits+class), is above n.
func readerClass(n int) int {
	return min(max(bits.Len(uint(n)), minReaderBits), maxReaderBits) - minReaderBits
}

// decodeBody reads body with fn and reports the Reader's error.
func decodeBody[T any](body []byte, fn func(r *avro.Reader) T) (T, error) {
	r := readerFor(body)
	v := fn(r)
	err := r.Error
	if err == nil {
		if r.Peek(); r.Error == nil {
			err = errors.New("trailing bytes after the record")
		}
	}
	putReader(r, len(body))
	return v, err
}
