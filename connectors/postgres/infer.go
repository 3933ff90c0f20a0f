package postgres

import (
	"cmp"
	"encoding/json"
	"reflect"
	"slices"
	"time"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// newColumn is a column that auto_create adds.
type newColumn struct {
	name, typ string
}

// inferColumns returns a column for each upsert field of the batch for which known is false, in
// the order the fields first appear, typed from the source column of the same name when the
// record's value has that column's form, otherwise from the Go value. A field NULL in every
// record of the batch takes its source column's type, text when the table has no such column: a
// sink's first batch may well be a single row (one partition's) whose NULLs would otherwise make
// integer, boolean or timestamp columns text for good.
func inferColumns(records []sink.Record, key []string, known func(string) bool) []newColumn {
	var cols []newColumn
	var ifNull []string // by column: the type to use if no record has a value
	at := map[string]int{}
	note := func(name string, v any, r *sink.Record) {
		if known(name) {
			return
		}
		i, ok := at[name]
		if !ok {
			i = len(cols)
			at[name] = i
			cols = append(cols, newColumn{name: name})
			ifNull = append(ifNull, "")
		}
		switch {
		case cols[i].typ != "":
		case v != nil:
			cols[i].typ = inferType(name, v, r)
		case ifNull[i] == "":
			ifNull[i] = inferType(name, nil, r)
		}
	}
	for i := range records {
		r := &records[i]
		if r.Op != sink.OpUpsert {
			continue
		}
		for _, k := range key {
			v, ok := r.Fields[k]
			if !ok {
				v, ok = r.Key[k]
			}
			if ok {
				note(k, v, r)
			}
		}
		for _, name := range fieldNames(r) {
			note(name, r.Fields[name], r)
		}
	}
	for i := range cols {
		if cols[i].typ == "" {
			cols[i].typ = cmp.Or(ifNull[i], "text")
		}
	}
	return cols
}

// fieldNames lists a record's fields in FieldOrder, then any others in name order.
func fieldNames(r *sink.Record) []string {
	names := make([]string, 0, len(r.Fields))
	seen := make(map[string]bool, len(r.Fields))
	for _, n := range r.FieldOrder {
		if _, ok := r.Fields[n]; ok && !seen[n] {
			names = append(names, n)
			seen[n] = true
		}
	}
	if len(names) == len(r.Fields) {
		return names
	}
	var rest []string
	for n := range r.Fields {
		if !seen[n] {
			rest = append(rest, n)
		}
	}
	slices.Sort(rest)
	return append(names, rest...)
}

// inferType types field name by its value v and the source column of the same name; for a nil v,
// by that column only, "" when there is none.
func inferType(name string, v any, r *sink.Record) string {
	if r.Event != nil && r.Event.Table != nil {
		if col, ok := r.Event.Table.Column(name); ok {
			if typ := sourceType(col.Kind, col.Elem, col.PGType); typ != "" && fitsKind(v, col.Kind) {
				return typ
			}
		}
	}
	if v == nil {
		return ""
	}
	return valueType(v)
}

// sourceType is the column type for a source column's kind.
func sourceType(k, elem change.Kind, pgType string) string {
	switch k {
	case change.KindInt16:
		return "smallint"
	case change.KindInt32:
		return "integer"
	case change.KindInt64:
		return "bigint"
	case change.KindFloat32:
		return "real"
	case change.KindFloat64:
		return "double precision"
	case change.KindNumeric:
		return "numeric"
	case change.KindBool:
		return "boolean"
	case change.KindString, change.KindEnum:
		return "text"
	case change.KindBytes:
		return "bytea"
	case change.KindDate:
		return "date"
	case change.KindTime:
		if pgType == "timetz" {
			return "time with time zone"
		}
		return "time"
	case change.KindTimestamp:
		return "timestamp"
	case change.KindTimestampTZ:
		return "timestamptz"
	case change.KindInterval:
		return "interval"
	case change.KindUUID:
		return "uuid"
	case change.KindJSON:
		if pgType == "json" || pgType == "_json" {
			return "json"
		}
		return "jsonb"
	case change.KindArray:
		if elem == change.KindArray {
			return ""
		}
		if e := sourceType(elem, 0, pgType); e != "" {
			return e + "[]"
		}
	}
	return ""
}

// fitsKind reports whether v has the form package mapping gives a source column of kind k, that
// is whether the field is very likely that column passed through.
func fitsKind(v any, k change.Kind) bool {
	switch v.(type) {
	case nil:
		return true
	case int32, int64, int:
		return k == change.KindInt16 || k == change.KindInt32 || k == change.KindInt64
	case float32, float64:
		return k == change.KindFloat32 || k == change.KindFloat64
	case bool:
		return k == change.KindBool
	case string:
		switch k {
		case change.KindString, change.KindEnum, change.KindNumeric, change.KindInterval,
			change.KindUUID, change.KindJSON, change.KindTime:
			return true
		}
	case []byte:
		return k == change.KindBytes
	case time.Time:
		return k == change.KindDate || k == change.KindTimestamp || k == change.KindTimestampTZ
	case []any:
		return k == change.KindArray
	}
	return false
}

// valueType is the column type for a Go value computed by a mapping expression.
func valueType(v any) string {
	switch x := v.(type) {
	case bool:
		return "boolean"
	case int8, int16, int32, uint8, uint16:
		return "integer"
	case int, int64, uint32:
		return "bigint"
	case uint, uint64, json.Number:
		return "numeric"
	case float32:
		return "real"
	case float64:
		return "double precision"
	case string:
		return "text"
	case []byte:
		return "bytea"
	case time.Time:
		return "timestamptz"
	case time.Duration:
		return "interval"
	case []any:
		return listType(x)
	case map[string]any:
		return "jsonb"
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return ""
		}
		return valueType(rv.Elem().Interface())
	case reflect.Slice, reflect.Array:
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			return "bytea"
		}
		items := make([]any, rv.Len())
		for i := range items {
			items[i] = rv.Index(i).Interface()
		}
		return listType(items)
	case reflect.Map, reflect.Struct:
		return "jsonb"
	case reflect.String:
		return "text"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "bigint"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "numeric"
	case reflect.Float32, reflect.Float64:
		return "double precision"
	}
	return "text"
}

// listType types a list as an array of its elements' common type (nested lists as further
// dimensions), or as jsonb when the elements are objects or of different types.
func listType(items []any) string {
	elem := ""
	for _, it := range items {
		if it == nil {
			continue
		}
		t := valueType(it)
		if sub, ok := it.([]any); ok {
			t = listType(sub)
			if t == "jsonb" {
				return "jsonb"
			}
			t = t[:len(t)-2] // a further dimension of the same element type
		}
		switch {
		case t == "jsonb":
			return "jsonb"
		case elem == "":
			elem = t
		case elem != t:
			return "jsonb"
		}
	}
	if elem == "" {
		elem = "text"
	}
	return elem + "[]"
}
