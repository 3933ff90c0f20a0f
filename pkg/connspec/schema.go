package connspec

import (
	"encoding/json"
	"strconv"

	"github.com/invopop/jsonschema"
)

// JSONSchema returns the schema of a `with` block of the connector: known settings only, their
// types, allowed values, defaults and examples, required settings; secrets are write-only.
func (s Spec) JSONSchema() *jsonschema.Schema {
	return objectSchema(s.Doc, s.Fields)
}

func objectSchema(doc string, fields []Field) *jsonschema.Schema {
	out := &jsonschema.Schema{
		Type:                 "object",
		Description:          doc,
		Properties:           jsonschema.NewProperties(),
		AdditionalProperties: jsonschema.FalseSchema,
	}
	for _, f := range fields {
		out.Properties.Set(f.Name, fieldSchema(f))
		if f.Required {
			out.Required = append(out.Required, f.Name)
		}
	}
	return out
}

func fieldSchema(f Field) *jsonschema.Schema {
	var s *jsonschema.Schema
	switch f.Type {
	case "string", "duration":
		s = &jsonschema.Schema{Type: "string"}
	case "boolean", "integer", "number":
		// or one ${VAR} reference, which the loader reads as the value it holds
		s = &jsonschema.Schema{AnyOf: []*jsonschema.Schema{{Type: f.Type}, {Type: "string", Pattern: `^\$\{[^}]+\}$`}}}
	case "list of strings":
		// an environment variable gives a list as one comma-separated string
		s = &jsonschema.Schema{OneOf: []*jsonschema.Schema{
			{Type: "array", Items: &jsonschema.Schema{Type: "string"}}, {Type: "string"}}}
	case "map of strings":
		s = &jsonschema.Schema{Type: "object", AdditionalProperties: &jsonschema.Schema{Type: "string"}}
	case "list of objects":
		s = &jsonschema.Schema{Type: "array", Items: objectSchema("", f.Fields)}
	}
	s.Description = describe(f)
	s.Default = f.Default
	if f.Type == "duration" && f.Default != nil {
		s.Default = f.DefaultText()
	}
	for _, e := range f.Enum {
		s.Enum = append(s.Enum, e)
		if b, err := strconv.ParseBool(e); err == nil && (e == "true" || e == "false") {
			s.Enum = append(s.Enum, b) // YAML reads an unquoted true as a boolean
			s.Type = ""
		}
	}
	if f.Min != nil && f.Type != "duration" {
		s.Minimum = jsonNumber(*f.Min)
	}
	if f.Example != "" {
		s.Examples = []any{exampleValue(f)}
	}
	s.WriteOnly = f.Secret
	return s
}

func jsonNumber(v float64) json.Number { return json.Number(strconv.FormatFloat(v, 'g', -1, 64)) }

// exampleValue is the example as a JSON value of the field's type, when it reads as one.
func exampleValue(f Field) any {
	switch f.Type {
	case "integer":
		if n, err := strconv.ParseInt(f.Example, 10, 64); err == nil {
			return n
		}
	case "number":
		if x, err := strconv.ParseFloat(f.Example, 64); err == nil {
			return x
		}
	case "boolean":
		if b, err := strconv.ParseBool(f.Example); err == nil {
			return b
		}
	}
	return f.Example
}
