package postgres

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// kind is how a target column wants its values written as text. Everything is sent as text and
// cast in SQL to the column's type; the kind only decides how a Go value is spelled.
type kind uint8

const (
	kText        kind = iota // text, varchar, uuid, enums, inet, …: the value's plain text form
	kBool                    // boolean
	kInt                     // int2, int4, int8, oid
	kFloat                   // float4, float8
	kNumeric                 // numeric
	kBytea                   // bytea: \x hex
	kJSON                    // json, jsonb: JSON text
	kDate                    // date
	kTimestamp               // timestamp without time zone
	kTimestamptz             // timestamp with time zone
	kTime                    // time without time zone
	kTimetz                  // time with time zone
	kInterval                // interval
	kArray                   // any array; elem says how elements are spelled
)

// colType is a target column's type as far as writing it is concerned.
type colType struct {
	kind kind
	elem *colType // element type of an array
	// cast is the SQL type the text is cast to (typmod left to the column's assignment, so that
	// varchar(n) overflows are errors rather than silent truncations); "" for text.
	cast string
	// name is the column's declared type for messages and probes, typmod included.
	name string
}

// baseKinds maps pg_catalog base type names to kinds; other types are kText.
var baseKinds = map[string]kind{
	"bool": kBool, "int2": kInt, "int4": kInt, "int8": kInt, "oid": kInt,
	"float4": kFloat, "float8": kFloat, "numeric": kNumeric, "bytea": kBytea,
	"json": kJSON, "jsonb": kJSON, "date": kDate, "timestamp": kTimestamp,
	"timestamptz": kTimestamptz, "time": kTime, "timetz": kTimetz, "interval": kInterval,
}

// textValue converts v to the PostgreSQL text input form for a column of type t. null reports
// SQL NULL. Errors name the offending Go type; the caller adds the column.
func textValue(v any, t *colType) (s string, null bool, err error) {
	switch x := v.(type) {
	case nil:
		return "", true, nil
	case string:
		if t.kind == kBytea {
			return hexBytes([]byte(x)), false, nil
		}
		return x, false, nil
	case []byte:
		if x == nil {
			return "", true, nil
		}
		return bytesText(x, t), false, nil
	case bool:
		return strconv.FormatBool(x), false, nil
	case int:
		return strconv.FormatInt(int64(x), 10), false, nil
	case int8:
		return strconv.FormatInt(int64(x), 10), false, nil
	case int16:
		return strconv.FormatInt(int64(x), 10), false, nil
	case int32:
		return strconv.FormatInt(int64(x), 10), false, nil
	case int64:
		return strconv.FormatInt(x, 10), false, nil
	case uint:
		return strconv.FormatUint(uint64(x), 10), false, nil
	case uint8:
		return strconv.FormatUint(uint64(x), 10), false, nil
	case uint16:
		return strconv.FormatUint(uint64(x), 10), false, nil
	case uint32:
		return strconv.FormatUint(uint64(x), 10), false, nil
	case uint64:
		return strconv.FormatUint(x, 10), false, nil
	case float32:
		return floatText(float64(x), 32), false, nil
	case float64:
		return floatText(x, 64), false, nil
	case time.Time:
		return timeText(x, t.kind), false, nil
	case time.Duration:
		if t.kind == kInterval {
			return strconv.FormatInt(x.Microseconds(), 10) + " microseconds", false, nil
		}
		return strconv.FormatInt(int64(x), 10), false, nil
	case json.Number:
		return string(x), false, nil
	case []any:
		if x == nil {
			return "", true, nil
		}
		if t.kind == kArray {
			var b strings.Builder
			if err := writeArray(&b, x, t.elem); err != nil {
				return "", false, err
			}
			return b.String(), false, nil
		}
		s, err := jsonText(x)
		return s, false, err
	case map[string]any:
		if x == nil {
			return "", true, nil
		}
		s, err := jsonText(x)
		return s, false, err
	}
	return reflectText(v, t)
}

// reflectText handles the values of named and less common types that mapping expressions may
// produce: pointers, typed slices and maps, named strings and numbers, Stringers.
func reflectText(v any, t *colType) (string, bool, error) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return "", true, nil
		}
		return textValue(rv.Elem().Interface(), t)
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return "", true, nil
		}
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			b := make([]byte, rv.Len())
			reflect.Copy(reflect.ValueOf(b), rv)
			return textValue(b, t)
		}
		items := make([]any, rv.Len())
		for i := range items {
			items[i] = rv.Index(i).Interface()
		}
		return textValue(items, t)
	case reflect.Map:
		if rv.IsNil() {
			return "", true, nil
		}
		s, err := jsonText(v)
		return s, false, err
	case reflect.String:
		return textValue(rv.String(), t)
	case reflect.Bool:
		return textValue(rv.Bool(), t)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return textValue(rv.Int(), t)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return textValue(rv.Uint(), t)
	case reflect.Float32, reflect.Float64:
		return textValue(rv.Float(), t)
	case reflect.Struct:
		if s, ok := v.(fmt.Stringer); ok {
			return s.String(), false, nil
		}
		s, err := jsonText(v)
		return s, false, err
	}
	if s, ok := v.(fmt.Stringer); ok {
		return s.String(), false, nil
	}
	return "", false, fmt.Errorf("unsupported value type %T", v)
}

func bytesText(b []byte, t *colType) string {
	switch t.kind {
	case kText:
		if utf8.Valid(b) && bytes.IndexByte(b, 0) < 0 {
			return string(b)
		}
	case kJSON:
		if json.Valid(b) {
			return string(b)
		}
	}
	return hexBytes(b)
}

// hexBytes is bytea's hex input form.
func hexBytes(b []byte) string {
	out := make([]byte, 2+hex.EncodedLen(len(b)))
	out[0], out[1] = '\\', 'x'
	hex.Encode(out[2:], b)
	return string(out)
}

// floatText spells integral values without an exponent, so that 1e6 computed by an expression
// still goes into an integer column, and other values in the shortest exact form.
func floatText(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == math.Trunc(f) && math.Abs(f) < 1e21:
		return strconv.FormatFloat(f, 'f', -1, bits)
	}
	return strconv.FormatFloat(f, 'g', -1, bits)
}

// timeText spells t for a column of kind k. Timestamps with zone are written as RFC 3339 in UTC
// with microseconds; timestamps without zone, dates and times of day are t's UTC wall clock, as
// package sink's Record documents them.
func timeText(t time.Time, k kind) string {
	t = t.UTC()
	if inf, ok := infinity(t, k); ok {
		return inf
	}
	switch k {
	case kDate:
		return datePart(t) + era(t)
	case kTimestamp:
		return datePart(t) + t.Format(" 15:04:05.000000") + era(t)
	case kTime:
		return t.Format("15:04:05.000000")
	case kTimetz:
		return t.Format("15:04:05.000000Z07:00")
	case kJSON:
		return `"` + rfc3339(t) + `"`
	}
	return rfc3339(t)
}

// infinity spells the instants that stand for PostgreSQL's infinite dates and timestamps
// (sink.Infinity) as infinity, for a date or timestamp column, which is what the source row
// held: spelled out, a date would be a year the column refuses and a timestamp a finite one it
// would keep.
func infinity(t time.Time, k kind) (string, bool) {
	if k != kDate && k != kTimestamp && k != kTimestamptz {
		return "", false
	}
	return sink.Infinity(t)
}

func rfc3339(t time.Time) string {
	if y := t.Year(); y >= 1 && y <= 9999 {
		return t.Format("2006-01-02T15:04:05.000000Z07:00")
	}
	return datePart(t) + t.Format(" 15:04:05.000000+00") + era(t)
}

// datePart is YYYY-MM-DD with PostgreSQL's year numbering (Go's year 0 is 1 BC); era gives the
// BC suffix that goes at the end of the value.
func datePart(t time.Time) string {
	y := t.Year()
	if y <= 0 {
		y = 1 - y
	}
	ys := strconv.Itoa(y)
	if len(ys) < 4 {
		ys = strings.Repeat("0", 4-len(ys)) + ys
	}
	return ys + t.Format("-01-02")
}

func era(t time.Time) string {
	if t.Year() <= 0 {
		return " BC"
	}
	return ""
}

// writeArray writes an array literal: every element double-quoted (so commas, braces, quotes,
// backslashes, spaces and the word NULL survive), NULL for nil, nested []any as dimensions.
func writeArray(b *strings.Builder, items []any, elem *colType) error {
	b.WriteByte('{')
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		if sub, ok := nestedArray(it, elem); ok {
			if err := writeArray(b, sub, elem); err != nil {
				return err
			}
			continue
		}
		s, null, err := textValue(it, elem)
		if err != nil {
			return fmt.Errorf("array element %d: %w", i, err)
		}
		if null {
			b.WriteString("NULL")
			continue
		}
		b.WriteByte('"')
		for j := 0; j < len(s); j++ {
			if c := s[j]; c == '"' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return nil
}

// nestedArray reports whether an array element is itself a list (a further dimension) rather
// than a value: lists inside json arrays are values.
func nestedArray(v any, elem *colType) ([]any, bool) {
	if elem.kind == kJSON || v == nil {
		return nil, false
	}
	if l, ok := v.([]any); ok {
		return l, true
	}
	rv := reflect.ValueOf(v)
	if (rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array) && rv.Type().Elem().Kind() != reflect.Uint8 {
		items := make([]any, rv.Len())
		for i := range items {
			items[i] = rv.Index(i).Interface()
		}
		return items, true
	}
	return nil, false
}

// jsonText encodes maps, lists and structs computed by expressions, without HTML escaping so
// that json (not only jsonb) columns keep '<', '>' and '&' as they are.
func jsonText(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("encode %T as JSON: %w", v, err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}
