package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretFromFile(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "pw")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := `source:
  postgres: {url: "postgres://u:${file:` + secret + `}@localhost/db", tables: [public.t]}
kafka:
  sasl: {mechanism: SCRAM-SHA-512, username: u, password: "${file:` + secret + `}"}
`
	p, err := Parse([]byte(doc), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Source.Postgres.URL != "postgres://u:s3cret@localhost/db" || p.Kafka.SASL.Password != "s3cret" {
		t.Errorf("secret files not read: url %q, sasl %q", p.Source.Postgres.URL, p.Kafka.SASL.Password)
	}
	_, err = Parse([]byte(strings.ReplaceAll(doc, secret, filepath.Join(dir, "missing"))), "p.yaml")
	if err == nil || !strings.Contains(err.Error(), "source.postgres.url") || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing secret file should be an error naming the path: %v", err)
	}
}
