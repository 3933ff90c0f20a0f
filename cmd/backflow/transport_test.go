package main

import (
	"strings"
	"testing"
)

// TestPlaintextConnectionsWarnButPass checks that validate prints each insecure connection with
// its file, line and path and still succeeds, and that the run commands log the same warnings.
func TestPlaintextConnectionsWarnButPass(t *testing.T) {
	bin := buildBinary(t)
	path := writeConfig(t, `source:
  postgres:
    url: postgres://u:secretpw@db.internal/wh
    tables: [public.t]
kafka:
  brokers: [kafka.internal:9092]
  sasl: {mechanism: PLAIN, username: u, password: kafkapw}
sinks:
  - name: hook
    from: [public.t]
    connector: http
    with: {url: "http://hooks.example.com/in"}
    key: [id]
`)
	env := []string{"PGSSLMODE=", "PGHOST="}
	out, code := runBinary(t, bin, env, "validate", "-c", path)
	if code != 0 {
		t.Fatalf("validate exit %d; warnings must not fail it:\n%s", code, out)
	}
	for _, want := range []string{
		path + ":3: source.postgres.url: no sslmode for db.internal",
		path + ":7: kafka.sasl.mechanism: SASL PLAIN without kafka.tls",
		path + ":12: sinks[0].with.url: http:// to hooks.example.com",
		"pipeline is valid",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	out, _ = runBinary(t, bin, env, "sink", "-c", path, "--name", "no-such-sink")
	for _, want := range []string{`"path": "source.postgres.url"`, `"path": "kafka.sasl.mechanism"`, `"path": "sinks[0].with.url"`} {
		if !strings.Contains(strings.ReplaceAll(out, `":"`, `": "`), want) {
			t.Errorf("sink's log lacks the warning at %s:\n%s", want, out)
		}
	}
	for _, secret := range []string{"secretpw", "kafkapw"} {
		if strings.Contains(out, secret) {
			t.Errorf("a password reached the output:\n%s", out)
		}
	}
}
