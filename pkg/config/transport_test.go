package config

import (
	"strings"
	"testing"
)

// transportPipeline is a valid pipeline whose connections are the test's to choose.
const transportPipeline = `source:
  postgres:
    url: %SOURCE%
    tables: [public.t]
kafka:
  brokers: [%BROKER%]
%KAFKA%sinks:
  - name: target
    from: [public.t]
    connector: %CONNECTOR%
    with: %WITH%
    key: [id]
`

func transportConfig(source, broker, kafka, connector, with string) string {
	return strings.NewReplacer("%SOURCE%", source, "%BROKER%", broker, "%KAFKA%", kafka,
		"%CONNECTOR%", connector, "%WITH%", with).Replace(transportPipeline)
}

func TestTransportWarnings(t *testing.T) {
	t.Setenv("PGSSLMODE", "")
	t.Setenv("PGHOST", "")
	const (
		safeSource = "postgres://u:p@db.internal/wh?sslmode=verify-full"
		safeWith   = `{url: "postgres://u:p@store/db?sslmode=require", table: public.t}`
	)
	cases := []struct {
		name                  string
		source, broker, kafka string
		connector, with       string
		path                  string // "" for no warning
		line                  int
		words                 []string
	}{
		{name: "all verified", source: safeSource, broker: "kafka:9093", connector: "postgres", with: safeWith},
		{name: "source without sslmode", source: "postgres://u:p@db.internal/wh", broker: "kafka:9093", connector: "postgres", with: safeWith,
			path: "source.postgres.url", line: 3, words: []string{"db.internal", "sslmode"}},
		{name: "source sslmode=prefer", source: "postgres://u:p@db.internal/wh?sslmode=prefer", broker: "kafka:9093", connector: "postgres", with: safeWith,
			path: "source.postgres.url", line: 3, words: []string{"sslmode=prefer"}},
		{name: "source key=value disable", source: "'host=db.internal user=u sslmode=disable'", broker: "kafka:9093", connector: "postgres", with: safeWith,
			path: "source.postgres.url", line: 3, words: []string{"sslmode=disable"}},
		{name: "source on loopback", source: "postgres://u:p@127.0.0.1:5432/wh?sslmode=disable", broker: "kafka:9093", connector: "postgres", with: safeWith},
		{name: "source on a socket", source: "'host=/var/run/postgresql dbname=wh'", broker: "kafka:9093", connector: "postgres", with: safeWith},
		{name: "sink postgres allow", source: safeSource, broker: "kafka:9093", connector: "postgres", with: `{url: "postgres://u:p@store/db?sslmode=allow", table: public.t}`,
			path: "sinks[0].with.url", line: 11, words: []string{"sslmode=allow", "store"}},
		{name: "sasl plain without tls", source: safeSource, broker: "kafka:9092", kafka: "  sasl: {mechanism: PLAIN, username: u, password: p}\n",
			connector: "postgres", with: safeWith, path: "kafka.sasl.mechanism", line: 7, words: []string{"PLAIN", "kafka.tls"}},
		{name: "sasl plain with tls", source: safeSource, broker: "kafka:9093", kafka: "  sasl: {mechanism: PLAIN, username: u, password: p}\n  tls: {insecure_skip_verify: false}\n",
			connector: "postgres", with: safeWith},
		{name: "sasl plain to a local broker", source: safeSource, broker: "localhost:9092", kafka: "  sasl: {mechanism: PLAIN, username: u, password: p}\n",
			connector: "postgres", with: safeWith},
		{name: "kafka insecure_skip_verify", source: safeSource, broker: "kafka:9093", kafka: "  tls:\n    insecure_skip_verify: true\n",
			connector: "postgres", with: safeWith, path: "kafka.tls.insecure_skip_verify", line: 8, words: []string{"not verified"}},
		{name: "schema registry over http", source: safeSource, broker: "kafka:9093", kafka: "  schema_registry: {url: \"http://registry:8081\"}\n",
			connector: "postgres", with: safeWith, path: "kafka.schema_registry.url", line: 7, words: []string{"http://", "registry"}},
		{name: "webhook over http", source: safeSource, broker: "kafka:9093", connector: "http", with: `{url: "http://hooks.example.com/in"}`,
			path: "sinks[0].with.url", line: 11, words: []string{"hooks.example.com", "https://"}},
		{name: "webhook over https", source: safeSource, broker: "kafka:9093", connector: "http", with: `{url: "https://hooks.example.com/in"}`},
		{name: "webhook on loopback", source: safeSource, broker: "kafka:9093", connector: "http", with: `{url: "http://[::1]:8080/in"}`},
		{name: "salesforce login over http", source: safeSource, broker: "kafka:9093", connector: "salesforce",
			with: `{login_url: "http://login.example.com", client_id: i, client_secret: s, sobject: Lead, external_id_field: X__c}`,
			path: "sinks[0].with.login_url", line: 11, words: []string{"login.example.com"}},
		{name: "mysql without tls", source: safeSource, broker: "kafka:9093", connector: "mysql", with: `{dsn: "u:p@tcp(mysql.internal:3306)/db", table: t}`,
			path: "sinks[0].with.dsn", line: 11, words: []string{"mysql.internal", "tls=true"}},
		{name: "mysql skip-verify", source: safeSource, broker: "kafka:9093", connector: "mysql", with: `{dsn: "u:p@tcp(mysql.internal:3306)/db?tls=skip-verify", table: t}`,
			path: "sinks[0].with.dsn", line: 11, words: []string{"skip-verify"}},
		{name: "mysql tls in the dsn", source: safeSource, broker: "kafka:9093", connector: "mysql", with: `{dsn: "u:p@tcp(mysql.internal:3306)/db?tls=true", table: t}`},
		{name: "mysql with.tls", source: safeSource, broker: "kafka:9093", connector: "mysql", with: `{dsn: "u:p@tcp(mysql.internal:3306)/db", table: t, tls: true}`},
		{name: "mysql on loopback", source: safeSource, broker: "kafka:9093", connector: "mysql", with: `{dsn: "root@tcp(127.0.0.1:3306)/db", table: t}`},
		{name: "redis plaintext", source: safeSource, broker: "kafka:9093", connector: "redis", with: `{url: "redis://:pw@cache.internal:6379/0", key: "s:{id}"}`,
			path: "sinks[0].with.url", line: 11, words: []string{"cache.internal", "rediss://"}},
		{name: "rediss", source: safeSource, broker: "kafka:9093", connector: "redis", with: `{url: "rediss://:pw@cache.internal:6380/0", key: "s:{id}"}`},
		{name: "redis on loopback", source: safeSource, broker: "kafka:9093", connector: "redis", with: `{url: "redis://localhost:6379/0", key: "s:{id}"}`},
		{name: "insecure_skip_verify in with", source: safeSource, broker: "kafka:9093", connector: "http",
			with: `{url: "https://hooks.example.com/in", tls: {insecure_skip_verify: true}}`,
			path: "sinks[0].with.tls.insecure_skip_verify", line: 11, words: []string{"not verified"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			yaml := transportConfig(tc.source, tc.broker, tc.kafka, tc.connector, tc.with)
			p, ws, err := ParseWithWarnings([]byte(yaml), "p.yaml")
			if err != nil {
				t.Fatalf("%v\n%s", err, yaml)
			}
			if tc.path == "" {
				if len(ws) != 0 {
					t.Fatalf("warnings %v, want none", ws)
				}
				return
			}
			if len(ws) != 1 || ws[0].Path != tc.path || ws[0].Line != tc.line {
				t.Fatalf("warnings %v; want one at %s, line %d", ws, tc.path, tc.line)
			}
			for _, w := range tc.words {
				if !strings.Contains(ws[0].Message, w) {
					t.Errorf("%q lacks %q", ws[0].Message, w)
				}
			}
			if s := ws[0].String(); !strings.HasPrefix(s, "p.yaml:") || strings.Contains(s, ":p@") || strings.Contains(s, ":pw@") {
				t.Errorf("warning %q: want file:line first, and no credentials", s)
			}
			if got := p.TransportWarnings(); len(got) != 1 || got[0].Path != tc.path {
				t.Errorf("TransportWarnings() = %v", got)
			}
		})
	}
}

func TestTransportWarningsFollowPGSSLMODE(t *testing.T) {
	t.Setenv("PGSSLMODE", "verify-full")
	p := &Pipeline{Source: Source{Postgres: Postgres{URL: "postgres://u:p@db.internal/wh"}}}
	if ws := p.TransportWarnings(); len(ws) != 0 {
		t.Fatalf("PGSSLMODE=verify-full: warnings %v", ws)
	}
	t.Setenv("PGSSLMODE", "prefer")
	if ws := p.TransportWarnings(); len(ws) != 1 {
		t.Fatalf("PGSSLMODE=prefer: warnings %v, want one", ws)
	}
}
