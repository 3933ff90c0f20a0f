// Package config reads and validates the pipeline file: an optional source, one Kafka, any number
// of sinks. A file without a source is a sink-only pipeline: its sinks read topics someone else
// writes (another backflow deployment, Debezium) and name them with topics: [...].
package config

import "time"

// Pipeline is the whole pipeline file.
type Pipeline struct {
	// Source is the warehouse capture reads. Optional: see HasSource.
	Source Source `yaml:"source"`
	Kafka  Kafka  `yaml:"kafka"`
	Sinks  []Sink `yaml:"sinks"`
	// Models are queries of the warehouse whose results are diffed into change events, next to
	// the captured tables. They need a source.
	Models []Model `yaml:"models"`
	// DataDir holds local state: the embedded broker's log. Default ".backflow".
	DataDir string `yaml:"data_dir"`
	// ModelsStateDir holds each model's last result (sorted keys and row hashes), the state the
	// next run is diffed against. Losing it costs a rebuild from the model's topic, never a
	// change. Default "<data_dir>/models".
	ModelsStateDir string `yaml:"models_state_dir"`
	// Log selects the log format: "json" (production, default) or "console".
	Log Log `yaml:"log"`
	// HTTP configures the listener for metrics, health, status and the status page.
	HTTP HTTP `yaml:"http"`
}

// HTTP configures the observability listener: /metrics, /healthz, /readyz, /status.json and
// the status page at /.
type HTTP struct {
	// Listen is the host:port to serve on, e.g. ":9464" (all interfaces) or "127.0.0.1:9464".
	// Default "": no listener.
	Listen string `yaml:"listen"`
	// Token, when set, is required by every route but /healthz and /readyz, as
	// "Authorization: Bearer <token>" (or as the password of Basic credentials, for browsers).
	// Give it from the environment (${VAR} or ${file:PATH}); it is never logged.
	Token string `yaml:"token"`
}

// Log configures logging.
type Log struct {
	Format string `yaml:"format"` // json | console
	Level  string `yaml:"level"`  // debug | info | warn | error
}

// Source is the warehouse side.
type Source struct {
	Postgres Postgres `yaml:"postgres"`
}

// Postgres configures capture from one PostgreSQL database.
type Postgres struct {
	URL         string `yaml:"url"`         // postgres://user:pass@host:5432/db?sslmode=…
	Slot        string `yaml:"slot"`        // replication slot, created when absent; default "backflow"
	Publication string `yaml:"publication"` // publication, created when absent; default "backflow"
	// Tables lists "schema.table" entries; "schema.*" means every table of the schema.
	Tables   []string `yaml:"tables"`
	Snapshot string   `yaml:"snapshot"` // initial (default) | never
	// Keys gives an explicit key for tables without a primary key: "schema.table": [col, …].
	Keys map[string][]string `yaml:"keys"`
	// SnapshotChunk is the number of rows read per snapshot chunk (about that many for a table
	// read by pages: a chunk is sized in pages from the rows a page held so far), fewer for wide
	// rows: a chunk holds about 32 MiB of records. Default 10000.
	SnapshotChunk int `yaml:"snapshot_chunk"`
	// SnapshotParallelism is how many connections read the initial snapshot at once, each a
	// table or a range (of pages or keys) of a large table. Default min(CPUs, 4).
	SnapshotParallelism int `yaml:"snapshot_parallelism"`
	// StatusInterval is how often a standby status update is sent. Default 10s.
	StatusInterval time.Duration `yaml:"status_interval"`
	// HeartbeatInterval is how often an idle capture writes a heartbeat message through the WAL so
	// the slot advances even when the captured tables are idle. Default 30s; 0 disables.
	HeartbeatInterval *time.Duration `yaml:"heartbeat_interval"`
	// SignalTable receives re-snapshot requests (`backflow snapshot` writes there, so can you).
	// Created when absent and added to the publication. Default "public.backflow_signal".
	SignalTable string `yaml:"signal_table"`
	// SignalTableShared lets capture take signals from a signal table that roles other than its
	// owner (and the capture role) may write: PUBLIC or other roles granted INSERT or UPDATE.
	// Default false: such a table turns re-snapshot signals off, since a signal makes capture
	// read a table of its choice into Kafka.
	SignalTableShared bool `yaml:"signal_table_shared"`
	// MaxInFlight caps records produced but not yet acknowledged by Kafka (backpressure), and so
	// capture's memory. Default 20000: more bought no throughput in the capture bench, and cost a
	// large transaction's commit 60 MB of peak RSS (RESULT bigtx).
	MaxInFlight int `yaml:"max_in_flight"`
	// OnSlotLoss says what capture does when the replication slot it was reading is gone or
	// invalidated: resync (default: a new slot and a full refresh of every table, deletes
	// included, so the targets end up equal to the tables) or fail (exit 1 naming the slot and the
	// last confirmed position, and change nothing).
	OnSlotLoss string `yaml:"on_slot_loss"`
	// OnColumnChange says what capture does when a captured table gains a column or a column
	// changes type (ALTER TABLE ADD COLUMN, ALTER COLUMN TYPE … USING): PostgreSQL fills or
	// rewrites every row without a change in the log, so targets would hold the rows as before.
	// resnapshot (default) re-reads the table into its topic; warn only says so, naming the
	// columns and the command that re-reads it.
	OnColumnChange string `yaml:"on_column_change"`
	// StatementTimeout bounds every query capture runs on its regular connections (catalog,
	// snapshot chunks, watermarks). Default 5m; it is not applied to the replication stream.
	StatementTimeout time.Duration `yaml:"statement_timeout"`
	// Streaming says whether capture receives large transactions while they are written
	// (pgoutput protocol 2, PostgreSQL 14 and later), keeping them on local disk until they
	// commit, rather than all at once at their commit: auto (default: when the server supports
	// it) | on (refuse to start on older servers) | off.
	Streaming string `yaml:"streaming"`
	// SpillDir holds the streamed transactions not committed yet, one file per transaction.
	// Default: the OS temp directory.
	SpillDir string `yaml:"spill_dir"`
}

// Kafka configures the broker connection, topics and encoding.
type Kafka struct {
	// Brokers are seed brokers; empty starts the embedded broker.
	Brokers []string `yaml:"brokers"`
	// EmbeddedPort is the embedded broker's loopback port. Default 9092.
	EmbeddedPort int            `yaml:"embedded_port"`
	TopicPrefix  string         `yaml:"topic_prefix"` // default "backflow"
	Format       string         `yaml:"format"`       // avro (default) | avro-confluent | json | debezium-json
	Registry     SchemaRegistry `yaml:"schema_registry"`
	Topics       Topics         `yaml:"topics"`
	// SessionTimeout is how long a sink worker may be silent before its consumer group gives its
	// partitions to the others (a crashed worker is noticed after this). Default 10s.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// SinkPrefix is put, as written, in front of every name a sink owns on the cluster: its
	// consumer group, the groups of its replays and its dead-letter topic ("prod." makes
	// sink s use group prod.s and topic prod.s.dlq). It lets prefixed ACLs cover a deployment,
	// and several environments share one cluster. Default "": the sink's name alone.
	SinkPrefix string `yaml:"sink_prefix"`
	TLS        *TLS   `yaml:"tls"`
	SASL       *SASL  `yaml:"sasl"`
	// Debezium configures how sinks read topics written by Debezium.
	Debezium Debezium `yaml:"debezium"`
}

// Debezium configures the reading of Debezium's topics.
type Debezium struct {
	// UnavailableValuePlaceholder is the connector's unavailable.value.placeholder, the value it
	// writes for unchanged TOASTed columns; such columns are left untouched in the target. Default
	// "__debezium_unavailable_value"; "hex:<digits>" gives octets, as in Debezium.
	UnavailableValuePlaceholder string `yaml:"unavailable_value_placeholder"`
}

// SchemaRegistry points at a Confluent-compatible schema registry.
type SchemaRegistry struct {
	URL      string `yaml:"url"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// Topics configures how change topics are created.
type Topics struct {
	Partitions        int32  `yaml:"partitions"`         // default 6
	ReplicationFactor int16  `yaml:"replication_factor"` // default 1 (-1: broker default)
	CleanupPolicy     string `yaml:"cleanup_policy"`     // compact (default) | delete | "compact,delete"
	// MaxMessageBytes is the topics' max.message.bytes: the largest record batch a topic takes,
	// after compression. Default 8 MiB (Kafka's own default is 1 MiB, too small for wide rows);
	// a row that does not fit even compressed goes to the capture dead-letter topic.
	MaxMessageBytes int `yaml:"max_message_bytes"`
}

// TLS configures TLS to the brokers.
type TLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// SASL configures SASL authentication to the brokers.
type SASL struct {
	Mechanism string `yaml:"mechanism"` // PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// Sink is one sink: a consumer group applying some topics to one target.
type Sink struct {
	Name   string   `yaml:"name"`
	From   []string `yaml:"from"`   // tables; topics derived from the prefix
	Topics []string `yaml:"topics"` // explicit topics instead of From
	// SchemaTopics are the topics holding the Avro schemas of the topics read, when they were
	// written by another prefix or deployment. Default: [<topic_prefix>._schemas].
	SchemaTopics []string `yaml:"schema_topics"`
	// Envelope says what the topics' values are: debezium (default) change events in Debezium's
	// envelope, as capture, models and Debezium write them; none bare rows, as Debezium's
	// ExtractNewRecordState transform or a JDBC source connector writes them, where a value is
	// the row's new state and a tombstone deletes its key's row (see docs/events.md).
	Envelope  string            `yaml:"envelope"`
	Connector string            `yaml:"connector"`
	With      map[string]any    `yaml:"with"`
	Key       []string          `yaml:"key"`
	Map       map[string]string `yaml:"map"`
	Filter    string            `yaml:"filter"`
	OnDelete  string            `yaml:"on_delete"` // delete (default) | ignore | soft_delete
	// OnTruncate says what a source TRUNCATE does to the target: truncate (default) | ignore.
	OnTruncate string `yaml:"on_truncate"`
	// OnFilterOut says what an update (or a re-snapshot's read) that a filter of rows (one
	// reading only after, key and table) rejects does to the target: delete (default) removes
	// the row, as a delete of the source row would (through on_delete), since the row may have
	// passed the filter before; ignore skips it, leaving the target's row as it was.
	OnFilterOut string `yaml:"on_filter_out"`
	// VersionColumn, when set, receives the source LSN of each change; targets that support it
	// (postgres) apply an upsert only when it is not older than the row: last write wins, so a
	// replay beside the live sink never moves a key backwards.
	VersionColumn string `yaml:"version_column"`
	// Concurrency is how many partitions are applied at once. Default 4.
	Concurrency int    `yaml:"concurrency"`
	Batch       Batch  `yaml:"batch"`
	RateLimit   string `yaml:"rate_limit"` // "500/s", "30/m"
	// Retry bounds how long a record the target rejects holds its partition before it goes to
	// the dead-letter topic. A target that is down as a whole is waited for without bound.
	Retry Retry `yaml:"retry"`
	// StallAfter is how long a partition may hold lag whose committed position does not move,
	// while the target is reachable (no retry or pause under way), before the sink reports it
	// stalled (log, metric, status). Default 5m.
	StallAfter time.Duration `yaml:"stall_after"`
}

// Retry is a sink's policy for records the target rejects while it answers (a constraint, a
// lock, an invalid value): the record is retried on its own with backoff and dead-lettered after
// MaxAttempts tries or once MaxElapsed has passed since it was first rejected, whichever comes
// first; the partition then moves on.
type Retry struct {
	// MaxAttempts counts the record's tries, the first included. Default 10: with the backoff
	// (0.1 s growing by half each time) that is some 8 seconds, enough for a lock, a deadlock
	// or a parent row another partition has not written yet to clear, short enough that one
	// bad record does not stall its partition.
	MaxAttempts int `yaml:"max_attempts"`
	// MaxElapsed caps the time from the first rejection. Default 10m: it matters for targets
	// whose every try is slow (an API timeout, a rate-limit wait), where 10 tries could hold
	// the partition for an hour.
	MaxElapsed time.Duration `yaml:"max_elapsed"`
}

// Batch configures sink batching.
type Batch struct {
	MaxRecords int           `yaml:"max_records"`
	MaxWait    time.Duration `yaml:"max_wait"`
}

// Model is a query of the warehouse whose result is published as change events: each run is
// compared with the last committed run and only the difference goes to the model's topic.
type Model struct {
	// Name names the model: its topic is "<topic_prefix>.model.<name>" and sinks read it with
	// from: [model.<name>].
	Name string `yaml:"name"`
	// SQL is the query; exactly one of SQL, Table and View is set.
	SQL   string `yaml:"sql"`
	Table string `yaml:"table"` // "schema.table": every column of a table (e.g. one dbt rebuilds)
	View  string `yaml:"view"`  // "schema.view": every column of a view
	// Key lists the result columns that identify a row; a result with a duplicate or a NULL key
	// is refused.
	Key []string `yaml:"key"`
	// Every runs the model on a schedule: a Go duration ("5m") or a cron expression
	// ("*/15 * * * *", "@hourly").
	Every string `yaml:"every"`
	// RefreshOn runs the model when capture sees committed changes to these captured tables
	// ("schema.table"), at most once per Debounce.
	RefreshOn []string `yaml:"refresh_on"`
	// Debounce is how long a run triggered by RefreshOn waits for more changes. Default 5s.
	Debounce time.Duration `yaml:"debounce"`
	// Topic overrides the model's topic.
	Topic string `yaml:"topic"`
}
