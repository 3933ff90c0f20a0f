package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateWithoutSecrets: `backflow validate` checks a file whose secrets are not in the
// environment (exit 0, a warning naming the variable and the line); --strict makes that an error
// (exit 2), as it is for the commands that run the pipeline.
func TestValidateWithoutSecrets(t *testing.T) {
	bin := buildBinary(t)
	path := filepath.Join(t.TempDir(), "pipeline.yaml")
	src := "kafka: {brokers: [localhost:9092]}\nsinks:\n  - name: s1\n    topics: [t1]\n    connector: postgres\n" +
		"    with: {url: \"${BF_TEST_UNSET_URL}\", table: t}\n    key: [id]\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Unsetenv("BF_TEST_UNSET_URL")
	var env []string
	out, code := runBinary(t, bin, env, "validate", "-c", path)
	if code != 0 || !strings.Contains(out, "warning: "+path+":6: sinks[0].with.url: BF_TEST_UNSET_URL not set") {
		t.Fatalf("validate without the variable: exit %d\n%s", code, out)
	}
	out, code = runBinary(t, bin, env, "validate", "--strict", "-c", path)
	if code != 2 || !strings.Contains(out, "BF_TEST_UNSET_URL is not set") {
		t.Fatalf("validate --strict without the variable: exit %d\n%s", code, out)
	}
	out, code = runBinary(t, bin, env, "sink", "-c", path)
	if code != 2 || !strings.Contains(out, "BF_TEST_UNSET_URL is not set") {
		t.Fatalf("sink without the variable: exit %d\n%s", code, out)
	}
}
