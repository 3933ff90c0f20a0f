package mysql

import (
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// convert turns a record value into what the driver sends for col. Numbers stay numbers, numeric
// text stays text (exact), bool is 1/0, time.Time is UTC shaped for the column's type, []byte is
// sent as is, and arrays, maps and other composites become JSON text (MySQL has no arrays).
func convert(col *column, v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return x, nil
	case int64, int32, int, int16, int8:
		if col.dataType == "json" {
			return fmt.Sprint(x), nil
		}
		return x, nil
	case uint64, uint32, uint, uint16, uint8:
		if col.dataType == "json" {
			return fmt.Sprint(x), nil
		}
		return x, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%v cannot be stored in MySQL", x)
		}
		if col.dataType == "json" {
			return strconv.FormatFloat(x, 'g', -1, 64), nil
		}
		return x, nil
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("%v cannot be stored in MySQL", x)
		}
		// Through its shortest text, so 0.1 stays 0.1 rather than 0.10000000149011612.
		s := strconv.FormatFloat(float64(x), 'g', -1, 32)
		if col.dataType == "json" {
			return s, nil
		}
		f, _ := strconv.ParseFloat(s, 64)
		return f, nil
	case bool:
		if col.dataType == "json" {
			return strconv.FormatBool(x), nil
		}
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	case []byte:
		if col.dataType == "json" {
			return string(x), nil // MySQL rejects JSON from binary-charset strings
		}
		return x, nil
	case time.Time:
		if inf, ok := sink.Infinity(x); ok {
			if isTextType(col.dataType) {
				return inf, nil
			}
			return nil, fmt.Errorf("%s (PostgreSQL's infinite date or timestamp) cannot be stored in a MySQL %s column", inf, col.dataType)
		}
		return convertTime(col, x), nil
	case time.Duration:
		return formatDuration(x), nil
	case json.Number:
		return string(x), nil
	case json.RawMessage:
		return string(x), nil
	case driver.Valuer:
		return x, nil
	case fmt.Stringer:
		if isComposite(v) {
			break
		}
		return x.String(), nil
	}
	if isComposite(v) {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("cannot encode %T as JSON: %v", v, err)
		}
		return string(b), nil
	}
	// Other scalar kinds (named string or number types from mapping expressions).
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String:
		return rv.String(), nil
	case reflect.Bool:
		return convert(col, rv.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return convert(col, rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return convert(col, rv.Uint())
	case reflect.Float32, reflect.Float64:
		return convert(col, rv.Float())
	}
	return nil, fmt.Errorf("unsupported value type %T", v)
}

func isComposite(v any) bool {
	switch reflect.ValueOf(v).Kind() {
	case reflect.Slice, reflect.Array, reflect.Map, reflect.Struct:
		return true
	case reflect.Pointer:
		rv := reflect.ValueOf(v)
		return !rv.IsNil() && isComposite(rv.Elem().Interface())
	}
	return false
}

// convertTime shapes t (in UTC) for the column's type.
func convertTime(col *column, t time.Time) any {
	t = t.UTC()
	switch col.dataType {
	case "date":
		return t.Format("2006-01-02")
	case "time":
		return t.Format("15:04:05.999999")
	case "year":
		return int64(t.Year())
	case "datetime", "timestamp":
		return t
	}
	if isTextType(col.dataType) {
		return t.Format(time.RFC3339Nano)
	}
	return t
}

// isTextType reports whether a column of this type takes a time as its text.
func isTextType(dataType string) bool {
	switch dataType {
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json":
		return true
	}
	return false
}

// formatDuration writes d as a MySQL TIME value: [-]HHH:MM:SS.ffffff.
func formatDuration(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	h := d / time.Hour
	d -= h * time.Hour
	m := d / time.Minute
	d -= m * time.Minute
	s := d / time.Second
	d -= s * time.Second
	return fmt.Sprintf("%s%02d:%02d:%02d.%06d", sign, h, m, s, d/time.Microsecond)
}

// describe renders a value for an error message (the DLQ reason), bounded in length.
func describe(v any) string {
	const max = 120
	var s string
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		if len(x) > max {
			x = truncateUTF8(x, max) + "…"
		}
		return strconv.Quote(x)
	case []byte:
		if len(x) > max/2 {
			return "0x" + hex.EncodeToString(x[:max/2]) + "…"
		}
		return "0x" + hex.EncodeToString(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	default:
		s = fmt.Sprintf("%v", v)
	}
	if len(s) > max {
		s = truncateUTF8(s, max) + "…"
	}
	return s
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// wireSize estimates the bytes a converted value takes in a statement.
func wireSize(v any) int {
	switch x := v.(type) {
	case nil:
		return 1
	case string:
		return len(x) + 9
	case []byte:
		return 2*len(x) + 9 // escaped when interpolated
	case time.Time:
		return 28
	}
	return 24
}
