package mapping

import (
	"fmt"
	"strconv"
	"time"

	"github.com/backflow-dev/backflow/pkg/change"
)

const (
	usPerSecond = int64(1_000_000)
	usPerMinute = 60 * usPerSecond
	usPerHour   = 60 * usPerMinute
	secsPerDay  = int64(24 * 60 * 60)
)

// Values converts a row in wire forms (see package change) to plain Go values (see the Record doc
// in package sink) and returns a new map; a nil row gives a nil map:
//
//	date         time.Time, midnight UTC of that day
//	timestamp    time.Time in UTC, the wall clock as stored
//	timestamptz  time.Time in UTC
//	time         string "15:04:05.000000" (up to "24:00:00.000000")
//	array        []any, elements converted by the element kind
//
// Every other kind keeps its wire form: int16 and int32 stay int32, numeric stays its exact
// decimal text, interval its ISO 8601 text, json its text, and so on. A value that is not in the
// form its kind expects, and a column the table does not describe, are copied unchanged.
func Values(t *change.Table, row change.Row) map[string]any {
	if row == nil {
		return nil
	}
	out := make(map[string]any, len(row))
	if t != nil {
		for _, c := range t.Columns {
			if v, ok := row[c.Name]; ok {
				out[c.Name] = plain(c.Kind, c.Elem, v)
			}
		}
	}
	if len(out) < len(row) {
		for name, v := range row {
			if _, ok := out[name]; !ok {
				out[name] = v
			}
		}
	}
	return out
}

// toPlain converts a row in wire forms to plain values like Values, but in place: the mapping
// owns the events it is given, and a copy per record costs as much as the conversion.
// Converting a plain value again leaves it as it is.
func toPlain(t *change.Table, row change.Row) map[string]any {
	if row == nil || t == nil {
		return row
	}
	for _, c := range t.Columns {
		switch c.Kind {
		case change.KindDate, change.KindTimestamp, change.KindTimestampTZ, change.KindTime, change.KindArray:
			if v, ok := row[c.Name]; ok {
				row[c.Name] = plain(c.Kind, c.Elem, v)
			}
		}
	}
	return row
}

// plain converts one wire value of kind k (elem for arrays) to its plain Go value.
func plain(k, elem change.Kind, v any) any {
	if v == nil {
		return nil
	}
	switch k {
	case change.KindDate:
		if d, ok := toInt64(v); ok {
			return time.Unix(d*secsPerDay, 0).UTC()
		}
	case change.KindTimestamp:
		if us, ok := toInt64(v); ok {
			return time.UnixMicro(us).UTC()
		}
	case change.KindTimestampTZ:
		if s, ok := v.(string); ok {
			if ts, err := time.Parse(time.RFC3339Nano, s); err == nil {
				return ts.UTC()
			}
		}
	case change.KindTime:
		if us, ok := toInt64(v); ok {
			return timeOfDay(us)
		}
	case change.KindArray:
		return mapArray(v, func(e any) any { return plain(elem, 0, e) })
	}
	return v
}

// mapArray applies f to every element of an array value, descending into nested arrays
// (multi-dimensional PostgreSQL arrays). A value that is not a []any is returned unchanged.
func mapArray(v any, f func(any) any) any {
	arr, ok := v.([]any)
	if !ok {
		return v
	}
	out := make([]any, len(arr))
	for i, e := range arr {
		if _, nested := e.([]any); nested {
			out[i] = mapArray(e, f)
		} else {
			out[i] = f(e)
		}
	}
	return out
}

// timeOfDay formats microseconds since midnight as "15:04:05.000000".
func timeOfDay(us int64) string {
	h, us := us/usPerHour, us%usPerHour
	m, us := us/usPerMinute, us%usPerMinute
	s, us := us/usPerSecond, us%usPerSecond
	return fmt.Sprintf("%02d:%02d:%02d.%06d", h, m, s, us)
}

// toInt64 reads an integer of any Go integer type.
func toInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int32:
		return int64(n), true
	case int64:
		return n, true
	case int:
		return int64(n), true
	case int16:
		return int64(n), true
	case uint32:
		return int64(n), true
	}
	return 0, false
}

// envValues returns the row as expressions see it: numeric columns (and numeric arrays) as
// exact decimals (numeric), converting only the columns in only unless it is nil. It returns
// the row itself when the table has no numeric column.
func envValues(t *change.Table, row map[string]any, only map[string]bool) map[string]any {
	if row == nil || t == nil || !hasNumeric(t, only) {
		return row
	}
	out := make(map[string]any, len(row))
	for name, v := range row {
		out[name] = v
	}
	for _, c := range t.Columns {
		v, ok := row[c.Name]
		switch {
		case !ok || v == nil || only != nil && !only[c.Name]:
		case c.Kind == change.KindNumeric:
			out[c.Name] = numericValue(v)
		case c.Kind == change.KindArray && c.Elem == change.KindNumeric:
			out[c.Name] = mapArray(v, numericValue)
		}
	}
	return out
}

// hasNumeric reports whether t has a numeric column (or numeric array) in only, nil for all.
func hasNumeric(t *change.Table, only map[string]bool) bool {
	for _, c := range t.Columns {
		if (c.Kind == change.KindNumeric || c.Kind == change.KindArray && c.Elem == change.KindNumeric) && (only == nil || only[c.Name]) {
			return true
		}
	}
	return false
}

// numericFloat converts a numeric's decimal text ("12.340", "NaN", "Infinity") to float64; a
// value that is not such a text is returned unchanged.
func numericFloat(v any) any {
	s, ok := v.(string)
	if !ok {
		return v
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return v
	}
	return f
}
