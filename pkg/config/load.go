package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Load reads, expands, defaults and validates the pipeline file at path. Configuration
// mistakes are returned as a *ValidationError listing every problem with its line.
func Load(path string, opts ...LoadOpt) (*Pipeline, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pipeline file: %w", err)
	}
	return Parse(data, path, opts...)
}

// LoadOpt changes how LoadFile reads a pipeline file.
type LoadOpt func(*collector)

// MissingEnvAsWarnings reads a value that refers to an unset environment variable as absent and
// reports it among the file's warnings instead of failing: `backflow validate` checks a file
// without the production secrets. Nothing can run from such a Pipeline.
func MissingEnvAsWarnings() LoadOpt { return func(c *collector) { c.lenientEnv = true } }

// Parse reads a pipeline from YAML. file names the data in error messages only; it is not read.
//
// Before decoding, ${VAR} and ${VAR:-default} in values are replaced from the environment (the
// default applies when VAR is unset or empty; "$$" stands for a literal "$"). Unknown fields,
// values of the wrong type, unset variables and every rule of Validate are reported together
// in one *ValidationError. A field left out gets its default; a count or duration written as
// 0 where 0 is not allowed is an error rather than a silent default (heartbeat_interval: 0
// disables heartbeats). On success the returned Pipeline has its defaults applied.
func Parse(data []byte, file string, opts ...LoadOpt) (*Pipeline, error) {
	p, _, err := parse(data, file, opts...)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// parse is Parse, also returning the collector that knows the line of every path.
func parse(data []byte, file string, opts ...LoadOpt) (*Pipeline, *collector, error) {
	protected, env := protectEnvRefs(data)
	c := newCollector(file)
	for _, o := range opts {
		o(c)
	}
	body, err := parseDocument(protected)
	if err != nil {
		return nil, nil, yamlError(c, err)
	}
	p := &Pipeline{}
	if body != nil {
		w := &walker{env: env, c: c}
		w.walk(body, reflect.TypeFor[Pipeline](), "", nil)
		if err := decodeNode(c, body, p); err != nil {
			return nil, nil, err
		}
	}
	checkExplicitZeros(p, c)
	p.ApplyDefaults()
	p.validate(c)
	if err := c.err(); err != nil {
		return p, c, err // as far as it decoded, for checks that report beside these (LoadFileChecked)
	}
	return p, c, nil
}

// decodeNode decodes the walked tree into p. The YAML library panics on some malformed trees
// (a tag over a value the walker nulled, found by FuzzParse): that is a bad file, reported as one
// (with the problems the walker found, which usually explain it) rather than as a crash.
func decodeNode(c *collector, body ast.Node, p *Pipeline) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if err = c.err(); err == nil {
				err = &ValidationError{File: c.file, Errors: []FieldError{{Message: fmt.Sprintf("invalid YAML: the file cannot be decoded (%v)", r)}}}
			}
		}
	}()
	if err := yaml.NodeToValue(body, p, yaml.AllowDuplicateMapKey()); err != nil {
		return yamlError(c, err)
	}
	return nil
}

// parseDocument parses data and returns the body of its only document (nil when empty).
func parseDocument(data []byte) (ast.Node, error) {
	f, err := parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey()) // the walker reports duplicates with their path
	if err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	var body ast.Node
	for _, doc := range f.Docs {
		if doc.Body == nil {
			continue
		}
		if body != nil {
			return nil, &yaml.SyntaxError{Message: "expected a single YAML document", Token: doc.Body.GetToken()}
		}
		body = doc.Body
	}
	return body, nil
}

// yamlError turns a YAML parse or decode error into a *ValidationError with its line, keeping
// the problems found before it.
func yamlError(c *collector, err error) error {
	var ye yaml.Error
	if !errors.As(err, &ye) {
		return fmt.Errorf("%s: %w", c.file, err)
	}
	if len(c.errs) > 0 {
		return c.err() // the decode error is a consequence of a problem already reported
	}
	fe := FieldError{Message: "invalid YAML: " + ye.GetMessage()}
	if tk := ye.GetToken(); tk != nil && tk.Position != nil {
		fe.Line = tk.Position.Line
	}
	return &ValidationError{File: c.file, Errors: []FieldError{fe}}
}
