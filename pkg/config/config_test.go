package config

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/connspec"
)

// base is a valid pipeline. Validation cases edit one line of it, so the expected line numbers
// below refer to this layout.
const base = `source:
  postgres:
    url: postgres://app:secret@db:5432/wh
    slot: backflow
    publication: backflow
    tables: [public.inventory, analytics.lead_scores, crm.*]
    snapshot: initial
    keys: {public.inventory: [sku]}
kafka:
  brokers: [localhost:9092]
  topic_prefix: wh
  format: avro
  topics: {partitions: 6, replication_factor: 3, cleanup_policy: compact}
sinks:
  - name: storefront-stock
    from: [public.inventory]
    connector: postgres
    with: {url: "postgres://s:pw@store/db", table: public.stock}
    key: [sku]
    on_delete: delete
    batch: {max_records: 1000, max_wait: 50ms}
    rate_limit: 500/s
  - name: crm-scores
    topics: [wh.analytics.lead_scores]
    connector: hubspot
    with: {token: abc}
    key: [email]
`

// edit replaces old (which must occur exactly once) by new in base.
func edit(t *testing.T, old, new string) string {
	t.Helper()
	if n := strings.Count(base, old); n != 1 {
		t.Fatalf("edit: %q occurs %d times in base", old, n)
	}
	return strings.Replace(base, old, new, 1)
}

func mustParse(t *testing.T, src string) *Pipeline {
	t.Helper()
	p, err := Parse([]byte(src), "pipeline.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

// knownConnectors stands for the registry's list (package connectors, which imports this one):
// names only, no settings checks.
func knownConnectors() LoadOpt {
	var list []Connector
	for _, name := range []string{"postgres", "mysql", "redis", "http", "hubspot", "salesforce", "shopify", "kafka"} {
		list = append(list, Connector{Spec: connspec.Spec{Name: name}})
	}
	return WithConnectors(list)
}

func parseErrors(t *testing.T, src string) []FieldError {
	t.Helper()
	p, err := Parse([]byte(src), "pipeline.yaml", knownConnectors())
	if err == nil {
		t.Fatalf("Parse succeeded, want errors; got %+v", p)
	}
	if p != nil {
		t.Errorf("Parse returned a pipeline with an error")
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
	}
	if ve.File != "pipeline.yaml" {
		t.Errorf("File = %q", ve.File)
	}
	return ve.Errors
}

func TestBaseIsValid(t *testing.T) {
	p := mustParse(t, base)
	if len(p.Sinks) != 2 {
		t.Fatalf("sinks = %d", len(p.Sinks))
	}
}

// The example of DESIGN.md, with ${VAR} inside a flow mapping, parses as written.
func TestParseDesignExample(t *testing.T) {
	t.Setenv("WAREHOUSE_URL", "postgres://user:pass@host:5432/warehouse")
	t.Setenv("STOREFRONT_URL", "postgres://shop:pw@store:5432/shop")
	src := `source:
  postgres:
    url: ${WAREHOUSE_URL}            # postgres://user:pass@host:5432/warehouse
    slot: backflow                   # created when absent
    publication: backflow            # created when absent, for the tables below
    tables: [public.inventory, analytics.lead_scores]
    snapshot: initial                # initial | never
kafka:
  brokers: [localhost:9092]          # leave out for the embedded broker (quickstart, tests)
  topic_prefix: wh                   # topics: wh.public.inventory, …
  format: avro                       # avro | json
  schema_registry: {url: http://localhost:8081}   # optional
  topics: {partitions: 6, replication_factor: 3}
sinks:
  - name: storefront-stock           # also its consumer group and its DLQ topic prefix
    from: [public.inventory]         # tables (topics derived) or topics: [...]
    connector: postgres              # postgres | mysql | redis | http | hubspot | salesforce | shopify
    with: {url: ${STOREFRONT_URL}, table: public.stock}
    key: [sku, warehouse]            # the target's identity fields
    map:                             # target field: expression over key, after, before, op, source
      sku: after.sku
      warehouse: after.warehouse
      available: after.qty - after.reserved
      price_cents: int(after.price * 100)
    filter: after.active             # optional; records it rejects are skipped, counted
    on_delete: delete                # delete | ignore | soft_delete (with: soft_delete_column)
    batch: {max_records: 1000, max_wait: 50ms}
    rate_limit: 500/s                # optional
`
	p := mustParse(t, src)
	want := &Pipeline{
		Source: Source{Postgres: Postgres{
			URL:                 "postgres://user:pass@host:5432/warehouse",
			Slot:                "backflow",
			Publication:         "backflow",
			Tables:              []string{"public.inventory", "analytics.lead_scores"},
			Snapshot:            "initial",
			SnapshotChunk:       10000,
			SnapshotParallelism: DefaultSnapshotParallelism(),
			StatusInterval:      10 * time.Second,
			HeartbeatInterval:   ptr(30 * time.Second),
			MaxInFlight:         20000, SignalTable: "public.backflow_signal",
			OnSlotLoss: "resync", OnColumnChange: "resnapshot", StatementTimeout: 5 * time.Minute, Streaming: "auto",
		}},
		Kafka: Kafka{
			Brokers:      []string{"localhost:9092"},
			EmbeddedPort: 9092, SessionTimeout: 10 * time.Second,
			TopicPrefix: "wh",
			Format:      "avro",
			Registry:    SchemaRegistry{URL: "http://localhost:8081"},
			Topics:      Topics{Partitions: 6, ReplicationFactor: 3, CleanupPolicy: "compact", MaxMessageBytes: 8 << 20},
		},
		Sinks: []Sink{{
			Name:      "storefront-stock",
			From:      []string{"public.inventory"},
			Connector: "postgres",
			With:      map[string]any{"url": "postgres://shop:pw@store:5432/shop", "table": "public.stock"},
			Key:       []string{"sku", "warehouse"},
			Map: map[string]string{
				"sku":         "after.sku",
				"warehouse":   "after.warehouse",
				"available":   "after.qty - after.reserved",
				"price_cents": "int(after.price * 100)",
			},
			Filter:   "after.active",
			OnDelete: "delete", OnTruncate: "truncate", OnFilterOut: "delete", Envelope: "debezium", Concurrency: 4,
			Batch:     Batch{MaxRecords: 1000, MaxWait: 50 * time.Millisecond},
			RateLimit: "500/s",
			Retry:     Retry{MaxAttempts: 10, MaxElapsed: 10 * time.Minute}, StallAfter: 5 * time.Minute,
		}},
		DataDir: ".backflow",
		Log:     Log{Format: "json", Level: "info"},
	}
	normalize(p)
	normalize(want)
	if !reflect.DeepEqual(p, want) {
		t.Errorf("parsed\n%+v\nwant\n%+v", p, want)
	}
	if got := p.TopicFor("public.inventory"); got != "wh.public.inventory" {
		t.Errorf("TopicFor = %q", got)
	}
}

// normalize makes empty and nil collections compare equal.
func normalize(p *Pipeline) {
	if len(p.Source.Postgres.Keys) == 0 {
		p.Source.Postgres.Keys = nil
	}
	for i := range p.Sinks {
		if len(p.Sinks[i].Topics) == 0 {
			p.Sinks[i].Topics = nil
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestDefaults(t *testing.T) {
	p := mustParse(t, `
source:
  postgres:
    url: postgres://localhost/wh
    tables: [public.t]
sinks:
  - name: s
    from: [public.t]
    connector: redis
    key: [id]
`)
	pg, k, s := p.Source.Postgres, p.Kafka, p.Sinks[0]
	tests := []struct {
		name      string
		got, want any
	}{
		{"slot", pg.Slot, "backflow"},
		{"publication", pg.Publication, "backflow"},
		{"snapshot", pg.Snapshot, "initial"},
		{"snapshot_chunk", pg.SnapshotChunk, 10000},
		{"snapshot_parallelism", pg.SnapshotParallelism, min(runtime.NumCPU(), 4)},
		{"status_interval", pg.StatusInterval, 10 * time.Second},
		{"heartbeat_interval", *pg.HeartbeatInterval, 30 * time.Second},
		{"max_in_flight", pg.MaxInFlight, 20000},
		{"streaming", pg.Streaming, "auto"},
		{"spill_dir (OS temp dir)", pg.SpillDir, ""},
		{"brokers", len(k.Brokers), 0},
		{"topic_prefix", k.TopicPrefix, "backflow"},
		{"format (no registry)", k.Format, "avro-confluent"},
		{"embedded_port", k.EmbeddedPort, 9092},
		{"partitions", k.Topics.Partitions, int32(6)},
		{"replication_factor", k.Topics.ReplicationFactor, int16(1)},
		{"cleanup_policy", k.Topics.CleanupPolicy, "compact"},
		{"max_message_bytes", k.Topics.MaxMessageBytes, 8 << 20},
		{"data_dir", p.DataDir, ".backflow"},
		{"log.format", p.Log.Format, "json"},
		{"log.level", p.Log.Level, "info"},
		{"http.listen (off)", p.HTTP.Listen, ""},
		{"on_delete", s.OnDelete, "delete"},
		{"on_filter_out", s.OnFilterOut, "delete"},
		{"envelope", s.Envelope, "debezium"},
		{"batch.max_records", s.Batch.MaxRecords, 1000},
		{"batch.max_wait", s.Batch.MaxWait, 50 * time.Millisecond},
		{"retry.max_attempts", s.Retry.MaxAttempts, 10},
		{"retry.max_elapsed", s.Retry.MaxElapsed, 10 * time.Minute},
		{"stall_after", s.StallAfter, 5 * time.Minute},
		{"topic", p.TopicFor("public.t"), "backflow.public.t"},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %v (%T), want %v (%T)", tt.name, tt.got, tt.got, tt.want, tt.want)
		}
	}
}

func TestExplicitValuesOverrideDefaults(t *testing.T) {
	p := mustParse(t, edit(t, "    snapshot: initial\n", `    snapshot: never
    snapshot_chunk: 500
    snapshot_parallelism: 3
    status_interval: 2s
    heartbeat_interval: 1m30s
    max_in_flight: 7
`))
	pg := p.Source.Postgres
	if pg.Snapshot != "never" || pg.SnapshotChunk != 500 || pg.SnapshotParallelism != 3 || pg.StatusInterval != 2*time.Second ||
		*pg.HeartbeatInterval != 90*time.Second || pg.MaxInFlight != 7 {
		t.Errorf("postgres = %+v (heartbeat %v)", pg, *pg.HeartbeatInterval)
	}
}

func TestHeartbeatInterval(t *testing.T) {
	tests := []struct {
		line string
		want time.Duration
	}{
		{"", 30 * time.Second},
		{"    heartbeat_interval:\n", 30 * time.Second},
		{"    heartbeat_interval: 0\n", 0},
		{"    heartbeat_interval: 0s\n", 0},
		{"    heartbeat_interval: 5s\n", 5 * time.Second},
	}
	for _, tt := range tests {
		p := mustParse(t, edit(t, "    snapshot: initial\n", "    snapshot: initial\n"+tt.line))
		if got := p.Source.Postgres.HeartbeatInterval; got == nil || *got != tt.want {
			t.Errorf("%q: heartbeat = %v, want %v", tt.line, got, tt.want)
		}
	}
}

func TestEnvExpansion(t *testing.T) {
	t.Setenv("BF_URL", "postgres://u:p@envhost/db")
	t.Setenv("BF_EMPTY", "")
	t.Setenv("BF_PARTS", "12")
	t.Setenv("BF_SKIP", "true")
	t.Setenv("BF_PREFIX", "env")
	t.Setenv("BF_DOLLAR", "a$$b")
	os.Unsetenv("BF_UNSET") // t.Setenv above guarantees a clean environment only for its own names
	tests := []struct {
		name     string
		old, new string
		check    func(*Pipeline) any
		want     any
	}{
		{"plain", "url: postgres://app:secret@db:5432/wh", "url: ${BF_URL}",
			func(p *Pipeline) any { return p.Source.Postgres.URL }, "postgres://u:p@envhost/db"},
		{"default when unset", "url: postgres://app:secret@db:5432/wh", "url: ${BF_UNSET:-postgres://d/db}",
			func(p *Pipeline) any { return p.Source.Postgres.URL }, "postgres://d/db"},
		{"default when empty", "topic_prefix: wh", "topic_prefix: ${BF_EMPTY:-dflt}",
			func(p *Pipeline) any { return p.Kafka.TopicPrefix }, "dflt"},
		{"set beats default", "topic_prefix: wh", "topic_prefix: ${BF_PREFIX:-dflt}",
			func(p *Pipeline) any { return p.Kafka.TopicPrefix }, "env"},
		{"inside a string", "topic_prefix: wh", "topic_prefix: x-${BF_PREFIX}-y",
			func(p *Pipeline) any { return p.Kafka.TopicPrefix }, "x-env-y"},
		{"in a flow mapping", `with: {token: abc}`, `with: {token: ${BF_PREFIX}, other: ${BF_UNSET:-d, e}}`,
			func(p *Pipeline) any { return p.Sinks[1].With }, map[string]any{"token": "env", "other": "d, e"}},
		{"quoted", `table: public.stock}`, `table: "${BF_PREFIX}"}`,
			func(p *Pipeline) any { return p.Sinks[0].With["table"] }, "env"},
		{"dollar escape", `table: public.stock}`, `table: "p$$w$${BF_URL}"}`,
			func(p *Pipeline) any { return p.Sinks[0].With["table"] }, "p$w${BF_URL}"},
		{"value not re-expanded", `table: public.stock}`, `table: "${BF_DOLLAR}"}`,
			func(p *Pipeline) any { return p.Sinks[0].With["table"] }, "a$$b"},
		{"integer field", "partitions: 6", "partitions: ${BF_PARTS}",
			func(p *Pipeline) any { return p.Kafka.Topics.Partitions }, int32(12)},
		{"duration field", "max_wait: 50ms", "max_wait: ${BF_UNSET:-2s}",
			func(p *Pipeline) any { return p.Sinks[0].Batch.MaxWait }, 2 * time.Second},
		{"bool field", "  format: avro\n", "  format: avro\n  tls: {insecure_skip_verify: ${BF_SKIP}}\n",
			func(p *Pipeline) any { return p.Kafka.TLS.InsecureSkipVerify }, true},
		{"list item", "key: [email]", "key: [${BF_PREFIX}]",
			func(p *Pipeline) any { return p.Sinks[1].Key }, []string{"env"}},
		{"comment ignored", "  format: avro\n", "  format: avro # ${BF_UNSET}\n",
			func(p *Pipeline) any { return p.Kafka.Format }, "avro"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, edit(t, tt.old, tt.new))
			if got := tt.check(p); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestEnvExpansionErrors(t *testing.T) {
	os.Unsetenv("BF_MISSING")
	os.Unsetenv("BF_MISSING2")
	tests := []struct {
		name     string
		old, new string
		path     string
		line     int
		contains []string
	}{
		{"unset", "url: postgres://app:secret@db:5432/wh", "url: ${BF_MISSING}",
			"source.postgres.url", 3, []string{"BF_MISSING is not set"}},
		{"unset in flow mapping", `with: {token: abc}`, `with: {token: "${BF_MISSING}"}`,
			"sinks[1].with.token", 26, []string{"BF_MISSING"}},
		{"two unset", "topic_prefix: wh", "topic_prefix: ${BF_MISSING}${BF_MISSING2}",
			"kafka.topic_prefix", 11, []string{"BF_MISSING, BF_MISSING2 are not set"}},
		{"list item", "key: [sku]", "key: [${BF_MISSING}]",
			"sinks[0].key[0]", 19, []string{"BF_MISSING"}},
		{"bad name", "topic_prefix: wh", "topic_prefix: ${1X}",
			"kafka.topic_prefix", 11, []string{"malformed", "${1X}"}},
		{"unterminated", "topic_prefix: wh", "topic_prefix: a${X",
			"kafka.topic_prefix", 11, []string{"malformed", `"$$"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseErrors(t, edit(t, tt.old, tt.new))
			// Exactly one problem: the empty value must not also be reported as "required".
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(errs), errs)
			}
			assertError(t, errs[0], tt.path, tt.line, tt.contains...)
		})
	}
}

func assertError(t *testing.T, e FieldError, path string, line int, contains ...string) {
	t.Helper()
	if e.Path != path || e.Line != line {
		t.Errorf("error at %s line %d, want %s line %d: %s", e.Path, e.Line, path, line, e.Message)
	}
	for _, c := range contains {
		if !strings.Contains(e.Message, c) {
			t.Errorf("message %q does not contain %q", e.Message, c)
		}
	}
}

func TestValidationRules(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	const fmtLine = "  format: avro\n"
	tests := []struct {
		name     string
		old, new string
		path     string
		line     int
		contains []string
	}{
		// source.postgres
		{"url missing", "    url: postgres://app:secret@db:5432/wh\n", "",
			"source.postgres.url", 2, []string{"required", "postgres://"}},
		{"url empty", "url: postgres://app:secret@db:5432/wh", "url:",
			"source.postgres.url", 3, []string{"required"}},
		{"url scheme", "url: postgres://app:secret@db:5432/wh", "url: mysql://app@db/wh",
			"source.postgres.url", 3, []string{`unsupported scheme "mysql"`, "postgresql://"}},
		{"url unparsable", "url: postgres://app:secret@db:5432/wh", "url: postgres://app:se/cret@db/wh",
			"source.postgres.url", 3, []string{"percent-encode"}},
		{"url not a dsn", "url: postgres://app:secret@db:5432/wh", "url: localhost",
			"source.postgres.url", 3, []string{"key=value DSN"}},
		{"dsn unterminated quote", "url: postgres://app:secret@db:5432/wh", "url: host=db password='abc",
			"source.postgres.url", 3, []string{"unterminated"}},
		{"tables empty", "tables: [public.inventory, analytics.lead_scores, crm.*]", "tables: []",
			"source.postgres.tables", 6, []string{"required", "schema.table"}},
		{"table without schema", "tables: [public.inventory, analytics.lead_scores, crm.*]", "tables: [public.inventory, lead_scores, crm.*]",
			"source.postgres.tables[1]", 6, []string{`invalid table "lead_scores"`, `"schema.*"`}},
		{"duplicate table", "tables: [public.inventory, analytics.lead_scores, crm.*]", "tables: [public.inventory, analytics.lead_scores, public.inventory, crm.*]",
			"source.postgres.tables[2]", 6, []string{"duplicate"}},
		{"snapshot", "snapshot: initial", "snapshot: always",
			"source.postgres.snapshot", 7, []string{`"always"`, "initial, never"}},
		{"slot upper case", "slot: backflow", "slot: Backflow",
			"source.postgres.slot", 4, []string{"lower-case"}},
		{"slot dash", "slot: backflow", "slot: back-flow",
			"source.postgres.slot", 4, []string{"underscores"}},
		{"publication", "publication: backflow", "publication: 9pub",
			"source.postgres.publication", 5, []string{"identifier"}},
		{"keys unknown table", "keys: {public.inventory: [sku]}", "keys: {public.other: [sku]}",
			"source.postgres.keys[\"public.other\"]", 8, []string{"not in source.postgres.tables"}},
		{"keys wildcard", "keys: {public.inventory: [sku]}", "keys: {crm.*: [id]}",
			"source.postgres.keys[\"crm.*\"]", 8, []string{`expected "schema.table"`}},
		{"keys covered by schema.*", "keys: {public.inventory: [sku]}", "keys: {crm.contacts: []}",
			"source.postgres.keys[\"crm.contacts\"]", 8, []string{"at least one key column"}},
		{"streaming", "    snapshot: initial\n", "    snapshot: initial\n    streaming: maybe\n",
			"source.postgres.streaming", 8, []string{`"maybe"`, "auto, on, off"}},
		{"on_column_change", "    snapshot: initial\n", "    snapshot: initial\n    on_column_change: ignore\n",
			"source.postgres.on_column_change", 8, []string{`"ignore"`, "resnapshot, warn"}},
		{"snapshot_chunk negative", "    snapshot: initial\n", "    snapshot: initial\n    snapshot_chunk: -1\n",
			"source.postgres.snapshot_chunk", 8, []string{"at least 1"}},
		{"snapshot_parallelism zero", "    snapshot: initial\n", "    snapshot: initial\n    snapshot_parallelism: 0\n",
			"source.postgres.snapshot_parallelism", 8, []string{"at least 1"}},
		{"snapshot_parallelism negative", "    snapshot: initial\n", "    snapshot: initial\n    snapshot_parallelism: -2\n",
			"source.postgres.snapshot_parallelism", 8, []string{"at least 1"}},
		{"heartbeat negative", "    snapshot: initial\n", "    snapshot: initial\n    heartbeat_interval: -1s\n",
			"source.postgres.heartbeat_interval", 8, []string{"negative"}},
		{"signal table without schema", "    snapshot: initial\n", "    snapshot: initial\n    signal_table: backflow_signal\n",
			"source.postgres.signal_table", 8, []string{`invalid table "backflow_signal"`, `expected "schema.table"`}},
		{"signal table wildcard", "    snapshot: initial\n", "    snapshot: initial\n    signal_table: ops.*\n",
			"source.postgres.signal_table", 8, []string{`invalid table "ops.*"`}},
		// kafka
		{"format", "format: avro", "format: protobuf",
			"kafka.format", 12, []string{`unknown format "protobuf"`, "avro, json"}},
		{"debezium placeholder hex", fmtLine, fmtLine + "  debezium: {unavailable_value_placeholder: \"hex:0g\"}\n",
			"kafka.debezium.unavailable_value_placeholder", 13, []string{`invalid "hex:0g"`}},
		{"broker", "brokers: [localhost:9092]", "brokers: [localhost:9092, kafka]",
			"kafka.brokers[1]", 10, []string{"host:port"}},
		{"topic prefix", "topic_prefix: wh", "topic_prefix: w h",
			"kafka.topic_prefix", 11, []string{"invalid topic prefix"}},
		{"partitions negative", "partitions: 6", "partitions: -2",
			"kafka.topics.partitions", 13, []string{"at least 1"}},
		{"partitions explicit zero", "partitions: 6", "partitions: 0",
			"kafka.topics.partitions", 13, []string{"at least 1"}},
		{"session timeout negative", "topic_prefix: wh", "topic_prefix: wh\n  session_timeout: -1s",
			"kafka.session_timeout", 12, []string{"positive duration"}},
		{"session timeout explicit zero", "topic_prefix: wh", "topic_prefix: wh\n  session_timeout: 0s",
			"kafka.session_timeout", 12, []string{"positive duration"}},
		{"statement timeout explicit zero", "    snapshot: initial\n", "    snapshot: initial\n    statement_timeout: 0s\n",
			"source.postgres.statement_timeout", 8, []string{"positive duration"}},
		{"replication factor", "replication_factor: 3", "replication_factor: -3",
			"kafka.topics.replication_factor", 13, []string{"-1"}},
		{"cleanup policy", "cleanup_policy: compact", "cleanup_policy: forever",
			"kafka.topics.cleanup_policy", 13, []string{"compact, delete, compact,delete"}},
		{"embedded port", "topic_prefix: wh", "embedded_port: 70000",
			"kafka.embedded_port", 11, []string{"65535"}},
		{"registry url", fmtLine, fmtLine + "  schema_registry: {url: localhost:8081}\n",
			"kafka.schema_registry.url", 13, []string{"http://"}},
		{"sasl mechanism", fmtLine, fmtLine + "  sasl: {mechanism: GSSAPI, username: u, password: p}\n",
			"kafka.sasl.mechanism", 13, []string{"PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"}},
		{"sasl username", fmtLine, fmtLine + "  sasl: {mechanism: PLAIN, password: p}\n",
			"kafka.sasl.username", 13, []string{"required"}},
		{"sasl password", fmtLine, fmtLine + "  sasl:\n    mechanism: SCRAM-SHA-512\n    username: u\n",
			"kafka.sasl.password", 13, []string{"required"}},
		{"tls missing file", fmtLine, fmtLine + "  tls:\n    ca_file: " + ca + "\n    cert_file: " + missing + "\n    key_file: " + ca + "\n",
			"kafka.tls.cert_file", 15, []string{"does not exist", "missing.pem"}},
		{"tls key without cert", fmtLine, fmtLine + "  tls:\n    key_file: " + ca + "\n",
			"kafka.tls.cert_file", 13, []string{"required with kafka.tls.key_file"}},
		{"tls directory", fmtLine, fmtLine + "  tls: {ca_file: " + dir + "}\n",
			"kafka.tls.ca_file", 13, []string{"directory"}},
		// sinks
		{"sink name missing", "  - name: crm-scores\n    topics:", "  - topics:",
			"sinks[1].name", 23, []string{"required"}},
		{"sink name invalid", "name: crm-scores", "name: crm scores",
			"sinks[1].name", 23, []string{`invalid sink name "crm scores"`}},
		{"sink name duplicate", "name: crm-scores", "name: storefront-stock",
			"sinks[1].name", 23, []string{"duplicate", "sinks[0]"}},
		{"from and topics", "    from: [public.inventory]\n", "    from: [public.inventory]\n    topics: [x]\n",
			"sinks[0].topics", 17, []string{"not both"}},
		{"neither from nor topics", "    topics: [wh.analytics.lead_scores]\n", "",
			"sinks[1].from", 23, []string{"required"}},
		{"empty from", "from: [public.inventory]", "from: []",
			"sinks[0].from", 16, []string{"required"}},
		{"from not captured", "from: [public.inventory]", "from: [public.inventory, public.orders]",
			"sinks[0].from[1]", 16, []string{`"public.orders" is not captured`, "public.inventory, analytics.lead_scores, crm.*"}},
		{"from invalid", "from: [public.inventory]", "from: [inventory]",
			"sinks[0].from[0]", 16, []string{`invalid table "inventory"`}},
		{"bad topic", "topics: [wh.analytics.lead_scores]", "topics: [\"a/b\"]",
			"sinks[1].topics[0]", 24, []string{"invalid topic"}},
		{"connector", "connector: postgres", "connector: pg",
			"sinks[0].connector", 17, []string{`unknown connector "pg"; expected one of postgres, mysql, redis, http, hubspot, salesforce, shopify, kafka`}},
		{"connector missing", "    connector: hubspot\n", "",
			"sinks[1].connector", 23, []string{"required", "hubspot"}},
		{"key missing", "    key: [email]\n", "",
			"sinks[1].key", 23, []string{"required"}},
		{"key empty", "key: [email]", "key: []",
			"sinks[1].key", 27, []string{"required"}},
		{"on_delete", "on_delete: delete", "on_delete: purge",
			"sinks[0].on_delete", 20, []string{"delete, ignore, soft_delete"}},
		{"on_filter_out", "on_delete: delete", "on_delete: delete\n    on_filter_out: skip",
			"sinks[0].on_filter_out", 21, []string{"delete, ignore"}},
		{"envelope", "on_delete: delete", "on_delete: delete\n    envelope: flat",
			"sinks[0].envelope", 21, []string{`unknown envelope "flat"`, "debezium, none"}},
		{"envelope none with from", "on_delete: delete", "on_delete: delete\n    envelope: none",
			"sinks[0].from", 16, []string{"envelope: none", "list them in topics"}},
		{"soft delete without column", "on_delete: delete", "on_delete: soft_delete",
			"sinks[0].with.soft_delete_column", 18, []string{"required when on_delete is soft_delete"}},
		{"rate unit", "rate_limit: 500/s", "rate_limit: 500/d",
			"sinks[0].rate_limit", 22, []string{`invalid rate "500/d"`, "N/s, N/m or N/h"}},
		{"rate zero", "rate_limit: 500/s", "rate_limit: 0/m",
			"sinks[0].rate_limit", 22, []string{"N > 0"}},
		{"batch records negative", "max_records: 1000", "max_records: -5",
			"sinks[0].batch.max_records", 21, []string{"at least 1"}},
		{"batch records explicit zero", "max_records: 1000", "max_records: 0",
			"sinks[0].batch.max_records", 21, []string{"at least 1"}},
		{"batch wait negative", "max_wait: 50ms", "max_wait: -1s",
			"sinks[0].batch.max_wait", 21, []string{"positive duration"}},
		{"batch wait explicit zero", "max_wait: 50ms", "max_wait: 0s",
			"sinks[0].batch.max_wait", 21, []string{"positive duration"}},
		{"retry attempts explicit zero", "max_wait: 50ms}\n", "max_wait: 50ms}\n    retry: {max_attempts: 0}\n",
			"sinks[0].retry.max_attempts", 22, []string{"at least 1"}},
		{"retry elapsed negative", "max_wait: 50ms}\n", "max_wait: 50ms}\n    retry: {max_elapsed: -1m}\n",
			"sinks[0].retry.max_elapsed", 22, []string{"positive duration"}},
		{"stall_after negative", "max_wait: 50ms}\n", "max_wait: 50ms}\n    stall_after: -1m\n",
			"sinks[0].stall_after", 22, []string{"positive duration"}},
		{"stall_after explicit zero", "max_wait: 50ms}\n", "max_wait: 50ms}\n    stall_after: 0s\n",
			"sinks[0].stall_after", 22, []string{"positive duration"}},
		{"concurrency explicit zero", "max_wait: 50ms}\n", "max_wait: 50ms}\n    concurrency: 0\n",
			"sinks[0].concurrency", 22, []string{"at least 1"}},
		// log
		{"log format", "sinks:\n", "log: {format: xml}\nsinks:\n",
			"log.format", 14, []string{"json, console"}},
		{"log level", "sinks:\n", "log:\n  level: verbose\nsinks:\n",
			"log.level", 15, []string{"debug, info, warn, error"}},
		// http
		{"http listen without port", "sinks:\n", "http: {listen: \"9464\"}\nsinks:\n",
			"http.listen", 14, []string{`invalid listen address "9464"`, ":9464"}},
		{"http listen port range", "sinks:\n", "http:\n  listen: \"0.0.0.0:99999\"\nsinks:\n",
			"http.listen", 15, []string{"host:port"}},
		{"http token with a space", "sinks:\n", "http: {listen: \":9464\", token: \"a b\"}\nsinks:\n",
			"http.token", 14, []string{"Authorization header"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseErrors(t, edit(t, tt.old, tt.new))
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(errs), errs)
			}
			assertError(t, errs[0], tt.path, tt.line, tt.contains...)
		})
	}
}

func TestValidValues(t *testing.T) {
	dir := t.TempDir()
	pem := filepath.Join(dir, "c.pem")
	if err := os.WriteFile(pem, []byte("pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	const fmtLine = "  format: avro\n"
	tests := []struct {
		name     string
		old, new string
	}{
		{"postgresql scheme", "url: postgres://app:secret@db:5432/wh", "url: postgresql://app@db/wh?sslmode=require"},
		{"dsn", "url: postgres://app:secret@db:5432/wh", "url: host=db port=5432 user=app password='s e\\'c' dbname=wh"},
		{"json format", "format: avro", "format: json"},
		{"debezium-json format", "format: avro", "format: debezium-json"},
		{"debezium placeholder", fmtLine, fmtLine + "  debezium: {unavailable_value_placeholder: \"hex:00ff\"}\n"},
		{"snapshot never", "snapshot: initial", "snapshot: never"},
		{"delete policy", "cleanup_policy: compact", "cleanup_policy: \"compact,delete\""},
		{"broker default replication", "replication_factor: 3", "replication_factor: -1"},
		{"embedded broker", "  brokers: [localhost:9092]\n", ""},
		{"from schema wildcard", "from: [public.inventory]", "from: [public.inventory, crm.contacts]"},
		{"keys via wildcard", "keys: {public.inventory: [sku]}", "keys: {crm.contacts: [id, email]}"},
		{"soft delete", "    with: {url: \"postgres://s:pw@store/db\", table: public.stock}\n    key: [sku]\n    on_delete: delete\n",
			"    with: {url: \"postgres://s:pw@store/db\", soft_delete_column: deleted_at}\n    key: [sku]\n    on_delete: soft_delete\n"},
		{"rates", "rate_limit: 500/s", "rate_limit: 0.5/m"},
		{"sasl", fmtLine, fmtLine + "  sasl: {mechanism: SCRAM-SHA-256, username: u, password: p}\n"},
		{"tls", fmtLine, fmtLine + "  tls: {ca_file: " + pem + ", cert_file: " + pem + ", key_file: " + pem + "}\n"},
		{"registry", fmtLine, fmtLine + "  schema_registry: {url: https://u:p@sr:8081, username: u, password: p}\n"},
		{"no sinks", base[strings.Index(base, "sinks:\n"):], ""},
		{"http listen any host", "sinks:\n", "http: {listen: \":9464\"}\nsinks:\n"},
		{"http listen loopback", "sinks:\n", "http: {listen: \"127.0.0.1:9464\"}\nsinks:\n"},
		{"http token", "sinks:\n", "http: {listen: \":9464\", token: \"s3cret-token\"}\nsinks:\n"},
		{"http listen ipv6", "sinks:\n", "http: {listen: \"[::1]:9464\"}\nsinks:\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustParse(t, edit(t, tt.old, tt.new))
		})
	}
}

func TestUnknownFields(t *testing.T) {
	tests := []struct {
		name     string
		old, new string
		path     string
		line     int
		contains []string
	}{
		{"sink typo", "connector: postgres", "conector: postgres",
			"sinks[0].conector", 17, []string{"unknown field", `did you mean "connector"`}},
		{"top level", "sinks:\n", "sink_defaults: {}\nsinks:\n",
			"sink_defaults", 14, []string{"unknown field"}},
		{"duplicate key", "    key: [sku]\n", "    key: [sku]\n    connector: mysql\n",
			"sinks[0].connector", 20, []string{"duplicate key; first given on line 17"}},
		{"nested flow", "partitions: 6", "partition: 6",
			"kafka.topics.partition", 13, []string{`did you mean "partitions"`}},
		{"no suggestion lists fields", "  topic_prefix: wh\n", "  zzzzzzzz: 1\n",
			"kafka.zzzzzzzz", 11, []string{"expected one of brokers, embedded_port, topic_prefix"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseErrors(t, edit(t, tt.old, tt.new))
			found := false
			for _, e := range errs {
				if e.Path == tt.path {
					found = true
					assertError(t, e, tt.path, tt.line, tt.contains...)
				}
			}
			if !found {
				t.Errorf("no error for %s in %v", tt.path, errs)
			}
		})
	}
}

func TestTypeErrors(t *testing.T) {
	tests := []struct {
		name     string
		old, new string
		path     string
		line     int
		contains string
	}{
		{"integer", "partitions: 6", "partitions: many", "kafka.topics.partitions", 13, "expected an integer"},
		{"int16 overflow", "replication_factor: 3", "replication_factor: 70000", "kafka.topics.replication_factor", 13, "expected an integer"},
		{"integer with a fraction", "partitions: 6", "partitions: 6.5", "kafka.topics.partitions", 13, "expected an integer"},
		{"integer as a float", "partitions: 6", "partitions: 6.0", "kafka.topics.partitions", 13, "expected an integer"},
		{"duration without unit", "max_wait: 50ms", "max_wait: 50", "sinks[0].batch.max_wait", 21, "duration"},
		{"duration text", "max_wait: 50ms", "max_wait: soon", "sinks[0].batch.max_wait", 21, "duration"},
		{"list expected", "tables: [public.inventory, analytics.lead_scores, crm.*]", "tables: public.inventory", "source.postgres.tables", 6, "expected a list"},
		{"mapping expected", "    with: {token: abc}\n", "    with: [token]\n", "sinks[1].with", 26, "expected a mapping"},
		{"string expected", "connector: hubspot", "connector: {name: hubspot}", "sinks[1].connector", 25, "expected a string"},
		{"bool", "  format: avro\n", "  format: avro\n  tls: {insecure_skip_verify: maybe}\n", "kafka.tls.insecure_skip_verify", 13, "true or false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseErrors(t, edit(t, tt.old, tt.new))
			// The bad value is reported once, not again as missing or out of range.
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(errs), errs)
			}
			assertError(t, errs[0], tt.path, tt.line, tt.contains)
		})
	}
}

// A string field keeps the text as written even when YAML would read it as a number.
func TestStringFieldsKeepText(t *testing.T) {
	p := mustParse(t, edit(t, "key: [email]", "key: [007, 0x1F, true]"))
	if want := []string{"007", "0x1F", "true"}; !reflect.DeepEqual(p.Sinks[1].Key, want) {
		t.Errorf("key = %q, want %q", p.Sinks[1].Key, want)
	}
}

func TestAnchorsAliasesAndMergeKeys(t *testing.T) {
	src := edit(t, "batch: {max_records: 1000, max_wait: 50ms}", "batch: &b {max_records: 10, max_wait: 1s}") +
		"    batch: *b\n" +
		"  - &common\n    name: third\n    from: [crm.contacts]\n    connector: http\n    key: [id]\n    batch: *b\n" +
		"  - <<: *common\n    name: fourth\n"
	p := mustParse(t, src)
	if len(p.Sinks) != 4 || p.Sinks[3].Name != "fourth" || p.Sinks[3].Connector != "http" {
		t.Fatalf("sinks = %+v", p.Sinks)
	}
	for i, s := range p.Sinks {
		if s.Batch.MaxRecords != 10 || s.Batch.MaxWait != time.Second {
			t.Errorf("sinks[%d].batch = %+v", i, s.Batch)
		}
	}
}

func TestManyErrorsAtOnce(t *testing.T) {
	os.Unsetenv("BF_NOPE")
	src := `source:
  postgres:
    url: ${BF_NOPE}
    slot: Bad-Slot
    tables: [public.orders, nodot]
kafka:
  format: xml
  topics: {partitions: 0}
sinks:
  - name: a
    from: [public.orders]
    conector: postgres
    key: [id]
    rate_limit: fast
  - name: a
    topics: [t]
    connector: pg
    key: [id]
`
	errs := parseErrors(t, src)
	want := []struct {
		path string
		line int
	}{
		{"source.postgres.url", 3},
		{"source.postgres.slot", 4},
		{"source.postgres.tables[1]", 5},
		{"kafka.format", 7},
		{"kafka.topics.partitions", 8},
		{"sinks[0].connector", 10}, // missing: reported at the sink
		{"sinks[0].conector", 12},
		{"sinks[0].rate_limit", 14},
		{"sinks[1].name", 15},
		{"sinks[1].connector", 17},
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), (&ValidationError{Errors: errs}).Error())
	}
	got := map[string]int{}
	for i, e := range errs {
		got[e.Path] = e.Line
		if i > 0 && errs[i-1].Line > e.Line {
			t.Errorf("errors not in line order: %v before %v", errs[i-1], e)
		}
	}
	for _, w := range want {
		if line, ok := got[w.path]; !ok || line != w.line {
			t.Errorf("%s: got line %d (reported %v), want %d", w.path, line, ok, w.line)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	_, err := Parse([]byte(edit(t, "connector: postgres", "connector: pg")+"log: {level: loud}\n"), "pipeline.yaml", knownConnectors())
	want := `pipeline.yaml:17: sinks[0].connector: unknown connector "pg"; expected one of postgres, mysql, redis, http, hubspot, salesforce, shopify, kafka
pipeline.yaml:28: log.level: unknown log level "loud"; expected one of debug, info, warn, error`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
}

func TestSyntaxError(t *testing.T) {
	errs := parseErrors(t, "source:\n  postgres:\n    tables: [a.b\nkafka: {\n")
	if len(errs) != 1 || errs[0].Line == 0 || !strings.Contains(errs[0].Message, "invalid YAML") {
		t.Errorf("errors = %+v", errs)
	}
	errs = parseErrors(t, base+"---\nsource: {}\n")
	if len(errs) != 1 || errs[0].Line != 29 || !strings.Contains(errs[0].Message, "single YAML document") {
		t.Errorf("errors = %+v", errs)
	}
}

func TestEmptyFile(t *testing.T) {
	errs := parseErrors(t, "# nothing\n")
	paths := map[string]bool{}
	for _, e := range errs {
		paths[e.Path] = true
	}
	if !paths["source.postgres.url"] || !paths["source.postgres.tables"] || len(errs) != 2 {
		t.Errorf("errors = %+v", errs)
	}
}

// Validation messages must not leak the password of a bad URL.
func TestErrorsDoNotLeakPasswords(t *testing.T) {
	for _, url := range []string{"postgres://app:top/secret@db/wh", "mysql://app:topsecret@db/wh", "host=db password=topsecret x"} {
		_, err := Parse([]byte(edit(t, "url: postgres://app:secret@db:5432/wh", "url: \""+url+"\"")), "p.yaml")
		if err == nil {
			t.Fatalf("%s: no error", url)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(path, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path)
	if err != nil || p.Kafka.TopicPrefix != "wh" {
		t.Fatalf("Load = %+v, %v", p, err)
	}
	if err := os.WriteFile(path, []byte(edit(t, "format: avro", "format: xml")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.HasPrefix(err.Error(), path+":12: kafka.format:") {
		t.Errorf("Load error = %v", err)
	}
	_, err = Load(filepath.Join(t.TempDir(), "absent.yaml"))
	var ve *ValidationError
	if !errors.Is(err, fs.ErrNotExist) || errors.As(err, &ve) {
		t.Errorf("Load(absent) = %v", err)
	}
}

func TestValidateProgrammatic(t *testing.T) {
	p := &Pipeline{
		Source: Source{Postgres: Postgres{URL: "postgres://localhost/wh", Tables: []string{"public.t"}}},
		Sinks:  []Sink{{Name: "s", From: []string{"public.t"}, Connector: "http", Key: []string{"id"}}},
	}
	p.ApplyDefaults()
	if err := p.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	p.Sinks[0].Connector = "ftp"
	p.Kafka.Format = "xml"
	err := p.Validate(knownConnectors())
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Errors) != 2 {
		t.Fatalf("Validate = %v", err)
	}
	if got := ve.Errors[0].Error(); got != `kafka.format: unknown format "xml"; expected one of avro, json, debezium-json, avro-confluent` {
		t.Errorf("first error = %q", got)
	}
	if ve.Errors[1].Path != "sinks[0].connector" || ve.Errors[1].Line != 0 {
		t.Errorf("second error = %+v", ve.Errors[1])
	}
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"500/s", 500, true},
		{"30/m", 0.5, true},
		{"7200/h", 2, true},
		{"0.5/s", 0.5, true},
		{" 10 / s ", 10, true},
		{"0/s", 0, false},
		{"-1/s", 0, false},
		{"500", 0, false},
		{"500/d", 0, false},
		{"/s", 0, false},
		{"x/s", 0, false},
		{"NaN/s", 0, false},
		{"Inf/s", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseRate(tt.in)
		if (err == nil) != tt.ok || math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("ParseRate(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestTopicFor(t *testing.T) {
	p := &Pipeline{Kafka: Kafka{TopicPrefix: "wh"}}
	if got := p.TopicFor("analytics.lead_scores"); got != "wh.analytics.lead_scores" {
		t.Errorf("TopicFor = %q", got)
	}
	if got := (&Pipeline{}).TopicFor("public.t"); got != "backflow.public.t" {
		t.Errorf("TopicFor without prefix = %q", got)
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://u:secret@h/db", "postgres://u:xxxxx@h/db"},
		{"postgresql://u:secret@h:5432/db?sslmode=require", "postgresql://u:xxxxx@h:5432/db?sslmode=require"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"postgres://h/db", "postgres://h/db"},
		{"redis://:secret@h:6379/0", "redis://:xxxxx@h:6379/0"},
		{"postgres://h/db?user=u&password=secret&sslmode=disable", "postgres://h/db?user=u&password=xxxxx&sslmode=disable"},
		{"https://api.example.com/hook?token=secret", "https://api.example.com/hook?token=xxxxx"},
		{"postgres://u:se/cr#et@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://u:p@ss@h/db", "postgres://u:xxxxx@h/db"},
		{"host=h user=u password=secret dbname=d", "host=h user=u password=xxxxx dbname=d"},
		{"host=h password = 'se cret' dbname=d", "host=h password = xxxxx dbname=d"},
		{"host=h sslpassword=secret", "host=h sslpassword=xxxxx"},
		{"host=h dbname=d", "host=h dbname=d"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedacted(t *testing.T) {
	p := mustParse(t, edit(t, "  format: avro\n", `  format: avro
  schema_registry: {url: "https://sr:srpass@registry:8081", username: sr, password: srpass}
  sasl: {mechanism: PLAIN, username: k, password: kpass}
`))
	p.Sinks[0].With["auth"] = map[string]any{"header": "Bearer tok"}
	p.Sinks[0].With["nested"] = map[string]any{"api_key": "k123", "endpoints": []any{"https://a:apw@x"}}
	p.Sinks[0].With["private_key"] = 12345
	p.HTTP.Token = "listener-token"
	r := p.Redacted()

	checks := []struct {
		name      string
		got, want any
	}{
		{"source url", r.Source.Postgres.URL, "postgres://app:xxxxx@db:5432/wh"},
		{"registry url", r.Kafka.Registry.URL, "https://sr:xxxxx@registry:8081"},
		{"registry user", r.Kafka.Registry.Username, "sr"},
		{"registry password", r.Kafka.Registry.Password, Mask},
		{"sasl password", r.Kafka.SASL.Password, Mask},
		{"sasl user", r.Kafka.SASL.Username, "k"},
		{"with url", r.Sinks[0].With["url"], "postgres://s:xxxxx@store/db"},
		{"with table", r.Sinks[0].With["table"], "public.stock"},
		{"with auth", r.Sinks[0].With["auth"], Mask},
		{"with nested key", r.Sinks[0].With["nested"].(map[string]any)["api_key"], Mask},
		{"with nested url list", r.Sinks[0].With["nested"].(map[string]any)["endpoints"], []any{"https://a:xxxxx@x"}},
		{"with non-string secret", r.Sinks[0].With["private_key"], Mask},
		{"with token", r.Sinks[1].With["token"], Mask},
		{"http token", r.HTTP.Token, Mask},
		{"not secret", r.Sinks[0].Name, "storefront-stock"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
	// The original is untouched, and the copy shares nothing mutable with it.
	if p.Source.Postgres.URL != "postgres://app:secret@db:5432/wh" || p.Kafka.SASL.Password != "kpass" ||
		p.Sinks[1].With["token"] != "abc" || p.Sinks[0].With["nested"].(map[string]any)["api_key"] != "k123" {
		t.Errorf("original modified: %+v", p)
	}
	r.Source.Postgres.Tables[0] = "changed"
	r.Sinks[0].Key[0] = "changed"
	r.Sinks[0].Map = map[string]string{}
	*r.Source.Postgres.HeartbeatInterval = time.Hour
	r.Source.Postgres.Keys["public.inventory"][0] = "changed"
	r.Kafka.SASL.Username = "changed"
	if p.Source.Postgres.Tables[0] == "changed" || p.Sinks[0].Key[0] == "changed" ||
		*p.Source.Postgres.HeartbeatInterval == time.Hour || p.Source.Postgres.Keys["public.inventory"][0] == "changed" ||
		p.Kafka.SASL.Username == "changed" {
		t.Error("Redacted shares memory with the original")
	}
}
