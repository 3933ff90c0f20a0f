package connspec

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agnivade/levenshtein"
)

// Decode reads a sink's `with` block into settings type T, applying defaults. It returns every
// problem at once: unknown settings (with the closest known name), values of the wrong type,
// missing required settings, values outside their allowed values or below their minimum. Paths
// start with "with.". Values take the forms YAML and JSON decoders produce; numbers and booleans
// may also be strings, as an environment variable gives them.
func Decode[T any](with map[string]any) (T, Problems) {
	var out T
	var ps Problems
	v := reflect.ValueOf(&out).Elem()
	decodeStruct(with, v, fieldsOf(v.Type()), "with", &ps)
	return out, ps
}

func decodeStruct(m map[string]any, v reflect.Value, fields []Field, path string, ps *Problems) {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.Name
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(names, k) {
			ps.Add(Join(path, k), "%s", unknown(k, names))
		}
	}
	for _, f := range fields {
		dst := v.Field(f.index)
		raw := m[f.Name]
		switch {
		case raw != nil:
			decodeValue(raw, dst, f, Join(path, f.Name), ps)
		case f.Required:
			ps.Add(Join(path, f.Name), "%s", required(f))
		case f.Default != nil:
			dst.Set(reflect.ValueOf(f.Default))
		}
	}
}

// unknown says what is wrong with an unknown key: the known name it most likely misspells, or
// the list of known names.
func unknown(key string, names []string) string {
	best, bestDist := "", math.MaxInt
	for _, n := range names {
		if d := levenshtein.ComputeDistance(strings.ToLower(key), n); d < bestDist {
			best, bestDist = n, d
		}
	}
	if best != "" && bestDist <= max(2, len(key)/3) {
		return fmt.Sprintf("unknown setting; did you mean %s?", best)
	}
	return "unknown setting; expected one of " + strings.Join(names, ", ")
}

func required(f Field) string {
	msg := "required"
	if doc := strings.TrimSuffix(f.Doc, "."); doc != "" {
		if len(doc) > 1 && doc[1] >= 'a' && doc[1] <= 'z' { // "The token", not "HubSpot's"
			doc = strings.ToLower(doc[:1]) + doc[1:]
		}
		msg += ": " + doc
	}
	if f.Example != "" {
		msg += fmt.Sprintf(" (e.g. %s)", f.Example)
	}
	return msg
}

// decodeValue decodes raw, which is not nil, into v.
func decodeValue(raw any, v reflect.Value, f Field, path string, ps *Problems) {
	t := v.Type()
	switch {
	case t == durationType:
		decodeDuration(raw, v, f, path, ps)
	case t.Kind() == reflect.String:
		decodeString(raw, v, f, path, ps)
	case t.Kind() == reflect.Bool:
		decodeBool(raw, v, f, path, ps)
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		decodeInt(raw, v, f, path, ps)
	case t.Kind() == reflect.Float64:
		decodeFloat(raw, v, f, path, ps)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		decodeStrings(raw, v, f, path, ps)
	case t.Kind() == reflect.Slice:
		decodeObjects(raw, v, f, path, ps)
	case t.Kind() == reflect.Map:
		decodeMap(raw, v, f, path, ps)
	default:
		panic(fmt.Sprintf("connspec: unsupported setting type %s", t))
	}
}

// show prints a value for a message, unless the setting is a secret.
func show(raw any, f Field) string {
	if f.Secret {
		return "the value"
	}
	return fmt.Sprint(raw)
}

func decodeString(raw any, v reflect.Value, f Field, path string, ps *Problems) {
	s, ok := raw.(string)
	if b, isBool := raw.(bool); isBool && slices.Contains(f.Enum, strconv.FormatBool(b)) {
		s, ok = strconv.FormatBool(b), true // tls: true, where "true" is one of the values
	}
	switch {
	case !ok && f.Secret:
		ps.Add(path, "expected a string")
	case !ok:
		ps.Add(path, "expected a string, got %s (quote it)", show(raw, f))
	case s == "" && f.Required:
		ps.Add(path, "%s", required(f))
	case f.Enum != nil && !slices.Contains(f.Enum, s):
		ps.Add(path, "%s is not supported; expected one of %s", show(raw, f), strings.Join(f.Enum, ", "))
	default:
		v.SetString(s)
	}
}

func decodeBool(raw any, v reflect.Value, f Field, path string, ps *Problems) {
	switch b := raw.(type) {
	case bool:
		v.SetBool(b)
		return
	case string:
		if parsed, err := strconv.ParseBool(strings.TrimSpace(b)); err == nil {
			v.SetBool(parsed)
			return
		}
	}
	ps.Add(path, "expected true or false, got %s", show(raw, f))
}

func decodeInt(raw any, v reflect.Value, f Field, path string, ps *Problems) {
	n, ok := intOf(raw)
	switch {
	case !ok || v.OverflowInt(n):
		ps.Add(path, "%s is not an integer", show(raw, f))
	case f.Min != nil && *f.Min == 1 && n < 1:
		ps.Add(path, "%d is not a positive integer", n)
	case f.Min != nil && float64(n) < *f.Min:
		ps.Add(path, "%d is not allowed; expected at least %s", n, f.MinText())
	default:
		v.SetInt(n)
	}
}

// intOf accepts the integer forms decoders produce: int kinds, a whole float, a numeric string.
func intOf(raw any) (int64, bool) {
	switch n := raw.(type) {
	case int:
		return int64(n), true
	case int64:
		return n, true
	case uint64:
		return int64(n), n <= math.MaxInt64
	case float64:
		return int64(n), n == math.Trunc(n) && math.Abs(n) < 1<<53
	case string:
		i, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
		return i, err == nil
	}
	rv := reflect.ValueOf(raw)
	if rv.CanInt() {
		return rv.Int(), true
	}
	if rv.CanUint() && rv.Uint() <= math.MaxInt64 {
		return int64(rv.Uint()), true
	}
	return 0, false
}

func decodeFloat(raw any, v reflect.Value, f Field, path string, ps *Problems) {
	x, ok := raw.(float64)
	if s, isString := raw.(string); isString {
		var err error
		x, err = strconv.ParseFloat(strings.TrimSpace(s), 64)
		ok = err == nil
	} else if n, isInt := intOf(raw); !ok && isInt {
		x, ok = float64(n), true
	}
	if !ok || math.IsNaN(x) || math.IsInf(x, 0) {
		ps.Add(path, "%s is not a number", show(raw, f))
		return
	}
	if f.Min != nil && x < *f.Min {
		ps.Add(path, "%v is not allowed; expected at least %s", x, f.MinText())
		return
	}
	v.SetFloat(x)
}

func decodeDuration(raw any, v reflect.Value, f Field, path string, ps *Problems) {
	d, ok := raw.(time.Duration)
	if s, isString := raw.(string); isString {
		var err error
		d, err = time.ParseDuration(strings.TrimSpace(s))
		ok = err == nil
	}
	_, isString := raw.(string)
	switch {
	case !ok && isString:
		ps.Add(path, `expected a duration such as "10s", "500ms" or "1m30s", got %s`, show(raw, f))
	case !ok:
		ps.Add(path, `%s is not a duration; expected text such as "10s"`, show(raw, f))
	case f.Min != nil && float64(d) < *f.Min:
		ps.Add(path, "%s is too short; expected at least %s", d, f.MinText())
	case d <= 0:
		ps.Add(path, "%s must be positive", d)
	default:
		v.SetInt(int64(d))
	}
}

// decodeStrings reads a list of non-empty strings, or one comma-separated string.
func decodeStrings(raw any, v reflect.Value, f Field, path string, ps *Problems) {
	var items []any
	switch l := raw.(type) {
	case string:
		for _, s := range strings.Split(l, ",") {
			items = append(items, strings.TrimSpace(s))
		}
	case []any:
		items = l
	case []string:
		for _, s := range l {
			items = append(items, s)
		}
	default:
		ps.Add(path, "expected a list of strings")
		return
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, ok := it.(string)
		switch {
		case !ok:
			ps.Add(Index(path, i), "expected a string, got %s (quote it)", show(it, f))
		case strings.TrimSpace(s) == "":
			ps.Add(path, "empty entry (item %d)", i)
		default:
			out = append(out, strings.TrimSpace(s))
		}
	}
	if len(items) == 0 {
		ps.Add(path, "empty list; expected at least one entry")
	}
	v.Set(reflect.ValueOf(out))
}

func decodeMap(raw any, v reflect.Value, f Field, path string, ps *Problems) {
	m, ok := toMap(raw)
	if !ok {
		ps.Add(path, "expected a map of names to strings, got %T", raw)
		return
	}
	out := reflect.MakeMapWithSize(v.Type(), len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		s, isString := m[k].(string)
		if !isString {
			ps.Add(Join(path, k), "expected a string, got %s (quote it)", show(m[k], f))
			continue
		}
		out.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(s))
	}
	v.Set(out)
}

func decodeObjects(raw any, v reflect.Value, f Field, path string, ps *Problems) {
	list, ok := raw.([]any)
	if !ok {
		ps.Add(path, "expected a list of mappings")
		return
	}
	out := reflect.MakeSlice(v.Type(), len(list), len(list))
	for i, it := range list {
		m, isMap := toMap(it)
		if !isMap {
			ps.Add(Index(path, i), "expected a mapping")
			continue
		}
		decodeStruct(m, out.Index(i), f.Fields, Index(path, i), ps)
	}
	v.Set(out)
}

func toMap(raw any) (map[string]any, bool) {
	switch m := raw.(type) {
	case map[string]any:
		return m, true
	case map[string]string:
		out := make(map[string]any, len(m))
		for k, s := range m {
			out[k] = s
		}
		return out, true
	}
	return nil, false
}
