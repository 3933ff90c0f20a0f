package config

import (
	"encoding/json"
	"reflect"
	"time"

	"github.com/invopop/jsonschema"

	"github.com/backflow-dev/backflow/pkg/connspec"
)

// JSONSchema returns a JSON Schema (draft 2020-12) of the pipeline file, for editors' YAML
// support: names, nesting, types and unknown keys, read from the same types the loader decodes
// into, so it cannot drift from them. `backflow schema` prints it.
//
// A sink's `with` block is checked against the schema of its connector, for each connector given
// (the binary's registry): known settings, their types, allowed values, required settings.
// Outside `with` it checks less than Load does: no required settings, no allowed values, no
// cross-field rules. A ${VAR} reference is a string, so it is accepted where a string is and
// flagged where a number or a boolean is (except in `with`, where it stands for any value).
func JSONSchema(connectors ...connspec.Spec) ([]byte, error) {
	r := &jsonschema.Reflector{
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: true, // nothing is required here: Load says what is missing, with its line
		DoNotReference:             true,
		Mapper:                     schemaOf,
	}
	s := r.Reflect(&Pipeline{})
	if len(connectors) > 0 {
		addConnectorSchemas(s, connectors)
	}
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

// addConnectorSchemas restricts each sink's `connector` to the known names and checks its `with`
// block against that connector's schema (if connector is X then with is X's settings).
func addConnectorSchemas(s *jsonschema.Schema, connectors []connspec.Spec) {
	sinks, ok := s.Properties.Get("sinks")
	if !ok || sinks.Items == nil {
		return
	}
	item := sinks.Items
	if conn, ok := item.Properties.Get("connector"); ok {
		for _, c := range connectors {
			conn.Enum = append(conn.Enum, c.Name)
		}
	}
	for _, c := range connectors {
		when := &jsonschema.Schema{Properties: jsonschema.NewProperties(), Required: []string{"connector"}}
		when.Properties.Set("connector", &jsonschema.Schema{Const: c.Name})
		then := &jsonschema.Schema{Properties: jsonschema.NewProperties()}
		then.Properties.Set("with", c.JSONSchema())
		item.AllOf = append(item.AllOf, &jsonschema.Schema{If: when, Then: then})
	}
}
