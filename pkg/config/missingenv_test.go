package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMissingEnvAsWarnings: read for validation, a value whose variable is unset is a warning
// with its path and line, not an error, and its absence is not reported as a second problem;
// real mistakes are still errors; read to run, it is an error.
func TestMissingEnvAsWarnings(t *testing.T) {
	os.Unsetenv("BF_NOT_SET")
	path := filepath.Join(t.TempDir(), "pipeline.yaml")
	src := `source:
  postgres:
    url: ${BF_NOT_SET}
    tables: [public.t]
kafka:
  brokers: [localhost:9092]
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := LoadFile(path, MissingEnvAsWarnings())
	if err != nil {
		t.Fatalf("with MissingEnvAsWarnings: %v", err)
	}
	var found bool
	for _, w := range f.Warnings {
		if w.Path == "source.postgres.url" && w.Line == 3 && strings.Contains(w.Message, "BF_NOT_SET not set") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no warning for source.postgres.url on line 3: %v", f.Warnings)
	}
	if _, err := LoadFile(path); err == nil || !strings.Contains(err.Error(), "BF_NOT_SET") {
		t.Fatalf("without the option: %v, want the unset variable named", err)
	}

	bad := strings.Replace(src, "tables: [public.t]", "tables: [public.t]\n    snapshot: sometimes", 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(path, MissingEnvAsWarnings()); err == nil || !strings.Contains(err.Error(), "snapshot") {
		t.Fatalf("a real mistake beside an unset variable: %v, want it reported", err)
	}
}
