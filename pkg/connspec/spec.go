// Package connspec describes the settings of a target connector (a sink's `with` block) once, in
// struct tags, and derives from that one declaration everything that needs them: decoding a
// `with` block into the connector's typed settings, the problems of a bad block (all of them,
// each with its path), the reference documentation and the JSON Schema.
//
// A connector declares its settings as a struct whose fields carry tags:
//
//	type settings struct {
//		URL     string        `with:"url,required,secret" doc:"The webhook's URL." example:"https://example.com/hook"`
//		Mode    string        `with:"mode" default:"hash" enum:"hash,json" doc:"How rows are stored."`
//		Timeout time.Duration `with:"timeout" default:"10s" doc:"Per request."`
//		Batch   int           `with:"max_batch" default:"500" min:"1" doc:"Records per request."`
//	}
//
// with names the setting, then optional flags: required, secret (never quoted in messages, marked
// write-only in the schema). default is written as in the file; enum lists the allowed values;
// min is the least number allowed. Supported field types: string, bool, int kinds, float64,
// time.Duration (a Go duration string, always positive), []string (also one comma-separated
// string, as an environment variable gives it), map[string]string, and []T of a tagged struct T
// (a list of objects). Durations must be positive.
//
// The package imports nothing of backflow: the config loader and the sink runtime both use it.
package connspec

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Spec is the declaration of one connector's settings.
type Spec struct {
	Name   string  // the connector's name, as a sink's `connector` field gives it
	Doc    string  // one paragraph: what the connector writes to, and how
	Fields []Field // in declaration order
}

// Field is one setting of a `with` block, or of an object in a list setting.
type Field struct {
	Name     string
	Type     string // a type name for people: string, boolean, integer, number, duration, list of strings, map of strings, list of objects
	Doc      string
	Example  string // as written in the file
	Required bool
	Secret   bool
	Default  any      // the decoded default; nil when none
	Enum     []string // the allowed values; nil when any
	Min      *float64 // the least number allowed (nanoseconds for a duration); nil when any
	Fields   []Field  // the settings of each object of a list of objects

	index int // the struct field it decodes into
}

var durationType = reflect.TypeFor[time.Duration]()

// Of returns the spec of settings type T (a struct with `with` tags). It panics on a malformed
// tag: that is a mistake in the connector, which its tests catch.
func Of[T any](name, doc string) Spec {
	return Spec{Name: name, Doc: doc, Fields: fieldsOf(reflect.TypeFor[T]())}
}

func fieldsOf(t reflect.Type) []Field {
	if t.Kind() != reflect.Struct {
		panic(fmt.Sprintf("connspec: %s is not a struct", t))
	}
	var out []Field
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("with")
		if !ok {
			continue
		}
		out = append(out, fieldOf(sf, tag, i))
	}
	return out
}

func fieldOf(sf reflect.StructField, tag string, i int) Field {
	name, flags, _ := strings.Cut(tag, ",")
	f := Field{Name: name, Doc: sf.Tag.Get("doc"), Example: sf.Tag.Get("example"), index: i}
	for _, flag := range strings.Split(flags, ",") {
		switch flag {
		case "":
		case "required":
			f.Required = true
		case "secret":
			f.Secret = true
		default:
			panic(fmt.Sprintf("connspec: field %s: unknown flag %q", sf.Name, flag))
		}
	}
	f.Type = typeName(sf.Type)
	if e := sf.Tag.Get("enum"); e != "" {
		f.Enum = strings.Split(e, ",")
	}
	if m := sf.Tag.Get("min"); m != "" {
		v, err := strconv.ParseFloat(m, 64)
		if sf.Type == durationType {
			var d time.Duration
			d, err = time.ParseDuration(m)
			v = float64(d)
		}
		if err != nil {
			panic(fmt.Sprintf("connspec: field %s: min %q: %v", sf.Name, m, err))
		}
		f.Min = &v
	}
	if sf.Type.Kind() == reflect.Slice && sf.Type.Elem().Kind() == reflect.Struct {
		f.Fields = fieldsOf(sf.Type.Elem())
	}
	if d, ok := sf.Tag.Lookup("default"); ok {
		v := reflect.New(sf.Type).Elem()
		var ps Problems
		decodeValue(d, v, f, f.Name, &ps)
		if len(ps) > 0 {
			panic(fmt.Sprintf("connspec: field %s: default: %v", sf.Name, ps))
		}
		f.Default = v.Interface()
	}
	return f
}

func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "integer"
	case t.Kind() == reflect.Float64:
		return "number"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return "list of strings"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return "list of objects"
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.String:
		return "map of strings"
	}
	panic(fmt.Sprintf("connspec: unsupported setting type %s", t))
}

// Field returns the setting called name, and whether there is one.
func (s Spec) Field(name string) (Field, bool) {
	for _, f := range s.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// DefaultText returns the field's default as written in a file ("" when it has none).
func (f Field) DefaultText() string {
	switch d := f.Default.(type) {
	case nil:
		return ""
	case time.Duration:
		return d.String()
	case []string:
		return strings.Join(d, ",")
	}
	return fmt.Sprint(f.Default)
}

// MinText returns the field's minimum as written in a file ("" when it has none).
func (f Field) MinText() string {
	switch {
	case f.Min == nil:
		return ""
	case f.Type == "duration":
		return time.Duration(*f.Min).String()
	}
	return strconv.FormatFloat(*f.Min, 'g', -1, 64)
}
