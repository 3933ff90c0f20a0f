package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/backflow-dev/backflow/connectors"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/connspec"
)

// TestConnectorDocsCurrent: docs/connectors.md is what the connectors' declarations generate
// (make docs).
func TestConnectorDocsCurrent(t *testing.T) {
	got, err := os.ReadFile("../../docs/connectors.md")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != connectorDocs() {
		t.Error("docs/connectors.md is not current: run make docs")
	}
	for _, name := range []string{"postgres", "mysql", "redis", "http", "hubspot", "salesforce", "shopify", "kafka"} {
		if !strings.Contains(connectorDocs(), "\n## "+name+"\n") {
			t.Errorf("no section for connector %s", name)
		}
	}
	for _, s := range connectors.Specs() {
		if s.Doc == "" {
			t.Errorf("connector %s has no doc", s.Name)
		}
		checkFieldDocs(t, s.Name, s.Fields)
	}
}

// checkFieldDocs fails for a setting without a doc line.
func checkFieldDocs(t *testing.T, prefix string, fields []connspec.Field) {
	t.Helper()
	for _, f := range fields {
		if f.Doc == "" {
			t.Errorf("%s.%s has no doc", prefix, f.Name)
		}
		checkFieldDocs(t, prefix+"."+f.Name+"[]", f.Fields)
	}
}

// TestConnectorSchemas: the JSON Schema of `backflow schema` checks each sink's with block against
// its connector's settings: every example pipeline is valid, and a misspelt setting, a word for a
// number, a value outside the allowed ones and a missing required setting are not.
func TestConnectorSchemas(t *testing.T) {
	raw, err := config.JSONSchema(connectors.Specs()...)
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
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(yamlAsJSON(t, data)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	const sink = "sinks:\n  - name: s\n    topics: [t]\n    key: [email]\n"
	good := sink + "    connector: hubspot\n    with: {token: \"${HUBSPOT_TOKEN}\", object_type: contacts, requests_per_10s: \"${BUDGET}\"}\n"
	if err := sch.Validate(yamlAsJSON(t, []byte(good))); err != nil {
		t.Errorf("a valid hubspot sink: %v", err)
	}
	for name, with := range map[string]string{
		"misspelt setting":  "    connector: hubspot\n    with: {tokn: x, object_type: contacts}\n",
		"word for number":   "    connector: hubspot\n    with: {token: x, object_type: contacts, requests_per_10s: lots}\n",
		"not allowed":       "    connector: redis\n    with: {url: \"redis://h\", key: \"k:{email}\", mode: list}\n",
		"missing required":  "    connector: salesforce\n    with: {client_id: x, sobject: Lead}\n",
		"unknown connector": "    connector: ftp\n    with: {}\n",
	} {
		if err := sch.Validate(yamlAsJSON(t, []byte(sink+with))); err == nil {
			t.Errorf("%s: %q is valid against the schema", name, with)
		}
	}
}

var envRef = regexp.MustCompile(`\$\{[^}\n]*\}`)

// yamlAsJSON reads a pipeline file as the generic JSON value an editor's YAML support checks,
// its ${VAR} references left as strings.
func yamlAsJSON(t *testing.T, data []byte) any {
	t.Helper()
	var refs []string
	protected := envRef.ReplaceAllStringFunc(string(data), func(ref string) string {
		refs = append(refs, ref)
		return "__envref_" + strconv.Itoa(len(refs)-1) + "__"
	})
	var v any
	if err := yaml.Unmarshal([]byte(protected), &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i, ref := range refs {
		s = strings.ReplaceAll(s, "__envref_"+strconv.Itoa(i)+"__", strings.ReplaceAll(ref, `"`, `\"`))
	}
	out, err := jsonschema.UnmarshalJSON(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return out
}
