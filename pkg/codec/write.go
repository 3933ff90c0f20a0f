package codec

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/hamba/avro/v2"

	"github.com/backflow-dev/backflow/pkg/change"
)

// colPlan is what encoding needs to know about one column.
type colPlan struct {
	name     string // PostgreSQL name: the Row key
	kind     change.Kind
	elem     change.Kind
	nullable bool   // written as ["null", T]
	jsonName []byte // `"name":`
}

func newColPlan(c *change.Column, nullable bool) colPlan {
	jn := appendJSONString(nil, c.Name)
	return colPlan{name: c.Name, kind: c.Kind, elem: c.Elem, nullable: nullable, jsonName: append(jn, ':')}
}

// goForms names the Go type of a kind's values (see package change) by their AvroForm.
var goForms = map[string]string{"int": "int32", "long": "int64", "float": "float32", "double": "float64",
	"boolean": "bool", "bytes": "[]byte", "array": "[]any", "string": "string"}

// goForm names the Go type a kind's values have.
func goForm(k change.Kind) string { return goForms[AvroForm(k)] }

func typeError(k change.Kind, v any) error {
	return fmt.Errorf("want %s, got %T", goForm(k), v)
}

// toInt64 accepts any Go integer type.
func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int32:
		return int64(x), true
	case int:
		return int64(x), true
	case int16:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), true
		}
	case uint:
		if uint64(x) <= math.MaxInt64 {
			return int64(x), true
		}
	}
	return 0, false
}

func toInt32(k change.Kind, v any) (int32, error) {
	if x, ok := v.(int32); ok {
		return x, nil
	}
	i, ok := toInt64(v)
	if !ok {
		return 0, typeError(k, v)
	}
	if i < math.MinInt32 || i > math.MaxInt32 {
		return 0, fmt.Errorf("%d (%T) overflows int32", i, v)
	}
	return int32(i), nil
}

func toInt64Kind(k change.Kind, v any) (int64, error) {
	if i, ok := toInt64(v); ok {
		return i, nil
	}
	return 0, typeError(k, v)
}

func toFloat64(k change.Kind, v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	}
	return 0, typeError(k, v)
}

// toText accepts the text kinds' values: string, or bytes holding the text.
func toText(k change.Kind, v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	case json.RawMessage:
		return string(x), nil
	}
	return "", typeError(k, v)
}

// writeScalar writes a non-array value of kind k.
func writeScalar(w *avro.Writer, k change.Kind, v any) error {
	switch k {
	case change.KindInt16, change.KindInt32, change.KindDate:
		i, err := toInt32(k, v)
		if err != nil {
			return err
		}
		w.WriteInt(i)
	case change.KindInt64, change.KindTime, change.KindTimestamp:
		i, err := toInt64Kind(k, v)
		if err != nil {
			return err
		}
		w.WriteLong(i)
	case change.KindFloat32:
		if f, ok := v.(float32); ok {
			w.WriteFloat(f)
			return nil
		}
		f, err := toFloat64(k, v)
		if err != nil {
			return err
		}
		w.WriteFloat(float32(f))
	case change.KindFloat64:
		f, err := toFloat64(k, v)
		if err != nil {
			return err
		}
		w.WriteDouble(f)
	case change.KindBool:
		b, ok := v.(bool)
		if !ok {
			return typeError(k, v)
		}
		w.WriteBool(b)
	case change.KindBytes:
		switch x := v.(type) {
		case []byte:
			w.WriteBytes(x)
		case string:
			w.WriteString(x)
		default:
			return typeError(k, v)
		}
	default:
		if s, ok := v.(string); ok {
			w.WriteString(s)
			return nil
		}
		s, err := toText(k, v)
		if err != nil {
			return err
		}
		w.WriteString(s)
	}
	return nil
}

// forEachElem calls fn for each element of an array value: []any, or any other slice.
func forEachElem(v any, fn func(i int, e any) error) (int, error) {
	if a, ok := v.([]any); ok {
		for i, e := range a {
			if err := fn(i, e); err != nil {
				return 0, err
			}
		}
		return len(a), nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return 0, fmt.Errorf("want []any, got %T", v)
	}
	n := rv.Len()
	for i := range n {
		if err := fn(i, rv.Index(i).Interface()); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func arrayLen(v any) (int, error) {
	if a, ok := v.([]any); ok {
		return len(a), nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return 0, fmt.Errorf("want []any, got %T", v)
	}
	return rv.Len(), nil
}

// writeValue writes the (non-nil) value of column c.
func writeValue(w *avro.Writer, c *colPlan, v any) error {
	if c.kind != change.KindArray {
		return writeScalar(w, c.kind, v)
	}
	n, err := arrayLen(v)
	if err != nil {
		return err
	}
	if n > 0 {
		w.WriteLong(int64(n))
		_, err = forEachElem(v, func(i int, e any) error {
			if e == nil {
				w.WriteLong(0)
				return nil
			}
			w.WriteLong(1)
			if err := writeScalar(w, c.elem, e); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	w.WriteLong(0)
	return nil
}

// writeRow writes the Value or Key record of a row.
func writeRow(w *avro.Writer, cols []colPlan, row change.Row) error {
	return writeFields(w, cols, mapRow(row))
}

// rowValues gives the writers a row's value of the i-th of the columns they write.
type rowValues interface {
	value(i int, c *colPlan) any
}

// mapRow is a change.Row: values by column name.
type mapRow change.Row

func (r mapRow) value(_ int, c *colPlan) any { return r[c.name] }

// posRow is values in the table's column order (RowEncoder); at maps the i-th column written to
// its position there, nil when they are the same.
type posRow struct {
	vals []any
	at   []int
}

func (r posRow) value(i int, _ *colPlan) any {
	if r.at != nil {
		return r.vals[r.at[i]]
	}
	return r.vals[i]
}

// writeFields writes the fields of cols from row: the record of writeRow, from either form of
// a row (a type parameter rather than an interface value: nothing is allocated per row).
func writeFields[R rowValues](w *avro.Writer, cols []colPlan, row R) error {
	for i := range cols {
		c := &cols[i]
		v := row.value(i, c)
		if c.nullable {
			if v == nil {
				w.WriteLong(0)
				continue
			}
			w.WriteLong(1)
		} else if v == nil {
			return fmt.Errorf("key column %q is NULL", c.name)
		}
		if err := writeValue(w, c, v); err != nil {
			return fmt.Errorf("column %q (%s): %w", c.name, c.kind, err)
		}
	}
	return nil
}

// checkRow reports columns of row the table does not have.
func checkRow(t *change.Table, cols []colPlan, row change.Row) error {
	if len(row) <= len(cols) {
		return nil
	}
	for name := range row {
		if _, ok := t.Column(name); !ok {
			return fmt.Errorf("row has column %q that table %s does not have", name, t.QualifiedName())
		}
	}
	return nil
}

// sourceFields are the values written to the source block.
func sourceFields(s *change.Source, prefix string) (connector, name, snapshot string) {
	connector, name, snapshot = s.Connector, prefix, s.Snapshot
	if connector == "" {
		connector = connectorName
	}
	if name == "" {
		name = s.Name
	}
	if snapshot == "" {
		snapshot = "false"
	}
	return connector, name, snapshot
}

// writeSource writes the source record without its commit fields (ts_ms, then txId and lsn), whose
// places it marks in cuts.
func writeSource(w *avro.Writer, s *change.Source, prefix string, cuts *[numCuts]int) {
	connector, name, snapshot := sourceFields(s, prefix)
	w.WriteString(sourceVersion)
	w.WriteString(connector)
	w.WriteString(name)
	cuts[cutSourceTs] = w.Buffered()
	w.WriteString(snapshot)
	w.WriteString(s.DB)
	w.WriteString(s.Schema)
	w.WriteString(s.Table)
	cuts[cutTxLSN] = w.Buffered()
}

// writeEnvelope writes the Envelope record of ev without its commit fields, marking their places
// in cuts (Template).
func writeEnvelope(w *avro.Writer, p *tablePlan, ev *change.Event, prefix string, cuts *[numCuts]int) error {
	for _, side := range [2]struct {
		name string
		row  change.Row
	}{{"before", ev.Before}, {"after", ev.After}} {
		if side.row == nil {
			w.WriteLong(0)
			continue
		}
		w.WriteLong(1)
		if err := writeRow(w, p.cols, side.row); err != nil {
			return fmt.Errorf("%s: %w", side.name, err)
		}
		if err := checkRow(p.table, p.cols, side.row); err != nil {
			return fmt.Errorf("%s: %w", side.name, err)
		}
	}
	writeEnvelopeTail(w, ev, prefix, cuts)
	return nil
}

// writeEnvelopeTail writes the fields of ev's Envelope after its rows (writeEnvelope).
func writeEnvelopeTail(w *avro.Writer, ev *change.Event, prefix string, cuts *[numCuts]int) {
	writeSource(w, &ev.Source, prefix, cuts)
	w.WriteString(string(ev.Op))
	cuts[cutTsMs] = w.Buffered()
	if n := len(ev.UnchangedToast); n > 0 {
		w.WriteLong(int64(n))
		for _, c := range ev.UnchangedToast {
			w.WriteString(c)
		}
	}
	w.WriteLong(0)
}

// Writers are pooled; their buffers are copied out so callers own what Encode returns.
var writerPool = sync.Pool{New: func() any { return avro.NewWriter(nil, 1024) }}

const maxPooledBuf = 1 << 20

func getWriter() *avro.Writer {
	w := writerPool.Get().(*avro.Writer)
	w.Reset(nil)
	return w
}

func putWriter(w *avro.Writer) {
	if cap(w.Buffer()) <= maxPooledBuf {
		writerPool.Put(w)
	}
}

func detach(b []byte) []byte {
	out := make([]byte, len(b))
	copy(out, b)
	return out
}

// JSON.

var jsonBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as encoding/json
// does; unlike encoding/json, '<', '>' and '&' are not escaped.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// NonFiniteJSON is how the JSON form of events spells a float JSON cannot express: "NaN",
// "Infinity" or "-Infinity"; ok is false for a finite f.
func NonFiniteJSON(f float64) (word string, ok bool) {
	switch {
	case math.IsNaN(f):
		return "NaN", true
	case math.IsInf(f, 1):
		return "Infinity", true
	case math.IsInf(f, -1):
		return "-Infinity", true
	}
	return "", false
}

// appendJSONFloat writes a float so that it always reads back as a float: with a '.' or an
// exponent. NaN and infinities, which JSON cannot express, are written as strings
// (NonFiniteJSON).
func appendJSONFloat(b []byte, f float64, bits int) []byte {
	if word, ok := NonFiniteJSON(f); ok {
		return strconv.AppendQuote(b, word)
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'g', -1, bits)
	for _, c := range b[start:] {
		if c == '.' || c == 'e' {
			return b
		}
	}
	return append(b, '.', '0')
}

func appendJSONScalar(b []byte, k change.Kind, v any) ([]byte, error) {
	switch k {
	case change.KindInt16, change.KindInt32, change.KindDate:
		i, err := toInt32(k, v)
		if err != nil {
			return b, err
		}
		return strconv.AppendInt(b, int64(i), 10), nil
	case change.KindInt64, change.KindTime, change.KindTimestamp:
		i, err := toInt64Kind(k, v)
		if err != nil {
			return b, err
		}
		return strconv.AppendInt(b, i, 10), nil
	case change.KindFloat32:
		if f, ok := v.(float32); ok {
			return appendJSONFloat(b, float64(f), 32), nil
		}
		f, err := toFloat64(k, v)
		if err != nil {
			return b, err
		}
		return appendJSONFloat(b, float64(float32(f)), 32), nil
	case change.KindFloat64:
		f, err := toFloat64(k, v)
		if err != nil {
			return b, err
		}
		return appendJSONFloat(b, f, 64), nil
	case change.KindBool:
		x, ok := v.(bool)
		if !ok {
			return b, typeError(k, v)
		}
		return strconv.AppendBool(b, x), nil
	case change.KindBytes:
		var raw []byte
		switch x := v.(type) {
		case []byte:
			raw = x
		case string:
			raw = []byte(x)
		default:
			return b, typeError(k, v)
		}
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, raw)
		return append(b, '"'), nil
	}
	s, err := toText(k, v)
	if err != nil {
		return b, err
	}
	return appendJSONString(b, s), nil
}

func appendJSONValue(b []byte, c *colPlan, v any) ([]byte, error) {
	if v == nil {
		return append(b, "null"...), nil
	}
	if c.kind != change.KindArray {
		return appendJSONScalar(b, c.kind, v)
	}
	b = append(b, '[')
	_, err := forEachElem(v, func(i int, e any) error {
		if i > 0 {
			b = append(b, ',')
		}
		if e == nil {
			b = append(b, "null"...)
			return nil
		}
		var err error
		if b, err = appendJSONScalar(b, c.elem, e); err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
		return nil
	})
	if err != nil {
		return b, err
	}
	return append(b, ']'), nil
}

// appendJSONRow writes a row as an object with the columns in table order.
func appendJSONRow(b []byte, cols []colPlan, row change.Row, key bool) ([]byte, error) {
	if row == nil {
		return append(b, "null"...), nil
	}
	b = append(b, '{')
	for i := range cols {
		c := &cols[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, c.jsonName...)
		v := row[c.name]
		if v == nil && key {
			return b, fmt.Errorf("key column %q is NULL", c.name)
		}
		var err error
		if b, err = appendJSONValue(b, c, v); err != nil {
			return b, fmt.Errorf("column %q (%s): %w", c.name, c.kind, err)
		}
	}
	return append(b, '}'), nil
}

func appendJSONOptLong(b []byte, v int64) []byte {
	if v == 0 {
		return append(b, "null"...)
	}
	return strconv.AppendInt(b, v, 10)
}

// appendJSONEnvelope appends ev's value without its commit fields, marking their places in cuts
// (Template).
func appendJSONEnvelope(b []byte, p *tablePlan, ev *change.Event, prefix string, cuts *[numCuts]int) ([]byte, error) {
	var err error
	b = append(b, `{"before":`...)
	if b, err = appendJSONRow(b, p.cols, ev.Before, false); err != nil {
		return b, fmt.Errorf("before: %w", err)
	}
	if err = checkRow(p.table, p.cols, ev.Before); err != nil {
		return b, fmt.Errorf("before: %w", err)
	}
	b = append(b, `,"after":`...)
	if b, err = appendJSONRow(b, p.cols, ev.After, false); err != nil {
		return b, fmt.Errorf("after: %w", err)
	}
	if err = checkRow(p.table, p.cols, ev.After); err != nil {
		return b, fmt.Errorf("after: %w", err)
	}
	b = appendJSONSource(b, &ev.Source, prefix, cuts)
	b = append(b, `,"op":`...)
	b = appendJSONString(b, string(ev.Op))
	b = append(b, `,"ts_ms":`...)
	cuts[cutTsMs] = len(b)
	b = append(b, `,"unchanged_toast":[`...)
	for i, c := range ev.UnchangedToast {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, c)
	}
	return append(b, "]}"...), nil
}

// appendJSONSource appends the envelope's source member, leading comma included, without its
// commit fields (the values of ts_ms, txId and lsn), whose places it marks in cuts.
func appendJSONSource(b []byte, s *change.Source, prefix string, cuts *[numCuts]int) []byte {
	connector, name, snapshot := sourceFields(s, prefix)
	b = append(b, `,"source":{"version":`...)
	b = appendJSONString(b, sourceVersion)
	b = append(b, `,"connector":`...)
	b = appendJSONString(b, connector)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, name)
	b = append(b, `,"ts_ms":`...)
	cuts[cutSourceTs] = len(b)
	b = append(b, `,"snapshot":`...)
	b = appendJSONString(b, snapshot)
	b = append(b, `,"db":`...)
	b = appendJSONString(b, s.DB)
	b = append(b, `,"schema":`...)
	b = appendJSONString(b, s.Schema)
	b = append(b, `,"table":`...)
	b = appendJSONString(b, s.Table)
	b = append(b, `,"txId":`...)
	cuts[cutTxLSN] = len(b)
	return append(b, '}')
}
