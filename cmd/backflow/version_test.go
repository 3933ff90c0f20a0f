package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/backflow-dev/backflow/pkg/buildinfo"
)

// TestVersion: `backflow version` and `backflow --version` print the same line, naming the
// version, the commit and the Go version of the build, and exit 0.
func TestVersion(t *testing.T) {
	bin := buildBinary(t)
	var lines []string
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, code := runBinary(t, bin, nil, args...)
		if code != 0 {
			t.Fatalf("backflow %s: exit %d\n%s", args[0], code, out)
		}
		lines = append(lines, strings.TrimSpace(out))
	}
	if lines[0] != lines[1] {
		t.Fatalf("version %q, --version %q", lines[0], lines[1])
	}
	// The test binary and backflow are built by the same toolchain.
	if want := buildinfo.Read().GoVersion; !strings.HasPrefix(lines[0], "backflow ") || !strings.Contains(lines[0], "commit ") || !strings.Contains(lines[0], want) {
		t.Fatalf("version line %q lacks the name, the commit or %s", lines[0], want)
	}
}

// TestSchemaCommand: `backflow schema` prints the pipeline file's JSON Schema.
func TestSchemaCommand(t *testing.T) {
	out, code := runBinary(t, buildBinary(t), nil, "schema")
	var s struct {
		Schema     string         `json:"$schema"`
		Properties map[string]any `json:"properties"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil || s.Properties["sinks"] == nil || s.Properties["kafka"] == nil {
		t.Fatalf("backflow schema: exit %d, not a schema of the pipeline file:\n%.500s", code, out)
	}
}
