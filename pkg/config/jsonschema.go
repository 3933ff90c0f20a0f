package config

import (
	"encoding/json"
	"reflect"
	"time"

	"github.com/invopop/jsonschema"
)

// JSONSchema returns a JSON Schema (draft 2020-12) of the pipeline file, for editors' YAML
// support: names, nesting, types and unknown keys, read from the same types the loader decodes
// into, so it cannot drift from them. `backflow schema` prints it.
//
// It checks less than Load does: no required settings, no allowed values, no cross-field rules,
// and a sink's `with` block is free-form (each connector checks its own). A ${VAR} reference is
// a string, so it is accepted where a string is and flagged where a number or a boolean is.
func JSONSchema() ([]byte, error) {
	r := &jsonschema.Reflector{
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: true, // nothing is required here: Load says what is missing, with its line
		DoNotReference:             true,
		Mapper:                     schemaOf,
	}
	s := r.Reflect(&Pipeline{})
	s.Title = "backflow pipeline"
	s.Description = "A backflow pipeline file (see the README). `backflow validate` checks everything this schema does not."
	return json.MarshalIndent(s, "", "  ")
}

// schemaOf maps the types whose YAML form differs from their Go kind.
func schemaOf(t reflect.Type) *jsonschema.Schema {
	if t == reflect.TypeFor[time.Duration]() {
		return &jsonschema.Schema{Type: "string", Description: `a Go duration such as "500ms", "10s" or "5m"`}
	}
	return nil
}
