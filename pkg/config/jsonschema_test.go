package config

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// TestJSONSchemaAcceptsTheExamples: every example pipeline (and the quickstart's) is valid
// against the schema, and a misspelt key, a list where a mapping belongs and a word where a
// number belongs are not.
func TestJSONSchemaAcceptsTheExamples(t *testing.T) {
	raw, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("pipeline.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("pipeline.json")
	if err != nil {
		t.Fatalf("the schema does not compile: %v", err)
	}
	files, _ := filepath.Glob("../../examples/*.yaml")
	files = append(files, "../../examples/quickstart/pipeline.yaml")
	if len(files) < 5 {
		t.Fatalf("only %d examples found", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(asJSON(t, data)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	streaming := "source: {postgres: {url: postgres://h/db, tables: [public.t], streaming: off, spill_dir: /var/tmp}}\n"
	if err := sch.Validate(asJSON(t, []byte(streaming))); err != nil {
		t.Errorf("streaming settings: %v", err)
	}
	for name, bad := range map[string]string{
		"misspelt key":       "kafka: {brokers: [h:9092], topic_prefx: wh}\n",
		"list for a mapping": "kafka: [h:9092]\n",
		"word for a number":  "kafka: {brokers: [h:9092], topics: {partitions: many}}\n",
		"list for a word":    "source: {postgres: {streaming: [on]}}\n",
	} {
		if err := sch.Validate(asJSON(t, []byte(bad))); err == nil {
			t.Errorf("%s: %q is valid against the schema", name, bad)
		}
	}
}

// asJSON reads a pipeline file as the generic JSON value an editor's YAML support checks, its
// ${VAR} references left as strings.
func asJSON(t *testing.T, data []byte) any {
	t.Helper()
	protected, env := protectEnvRefs(data)
	var v any
	if err := yaml.Unmarshal(protected, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := range env.refs { // back to the text as written
		s = strings.ReplaceAll(s, env.prefix+strconv.Itoa(i)+"__", "${"+strings.ReplaceAll(env.refs[i], `"`, `\"`)+"}")
	}
	out, err := jsonschema.UnmarshalJSON(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return out
}
