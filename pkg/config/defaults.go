package config

import (
	"runtime"
	"time"
)

// Defaults for fields left out of the pipeline file (or set to their zero value).
const (
	DefaultSlot              = "backflow"
	DefaultPublication       = "backflow"
	DefaultSnapshot          = SnapshotInitial
	DefaultSnapshotChunk     = 10000
	DefaultStatusInterval    = 10 * time.Second
	DefaultHeartbeatInterval = 30 * time.Second
	DefaultMaxInFlight       = 20000
	DefaultTopicPrefix       = "backflow"
	DefaultFormat            = FormatAvro // with kafka.schema_registry; FormatAvroConfluent without
	DefaultEmbeddedPort      = 9092
	DefaultPartitions        = 6
	DefaultReplicationFactor = 1
	DefaultCleanupPolicy     = "compact"
	DefaultMaxMessageBytes   = 8 << 20
	DefaultDataDir           = ".backflow"
	DefaultLogFormat         = "json"
	DefaultLogLevel          = "info"
	DefaultOnDelete          = OnDeleteDelete
	DefaultConcurrency       = 4
	DefaultSignalTable       = "public.backflow_signal"
	DefaultOnSlotLoss        = OnSlotLossResync
	DefaultStatementTimeout  = 5 * time.Minute
	DefaultStreaming         = StreamingAuto
	DefaultSessionTimeout    = 10 * time.Second
	DefaultBatchMaxRecords   = 1000
	DefaultBatchMaxWait      = 50 * time.Millisecond
	DefaultRetryMaxAttempts  = 10               // see Retry.MaxAttempts
	DefaultRetryMaxElapsed   = 10 * time.Minute // see Retry.MaxElapsed
	DefaultStallAfter        = 5 * time.Minute  // see Sink.StallAfter
	DefaultModelDebounce     = 5 * time.Second  // see Model.Debounce
	// DefaultHTTPListen is the observability listener's address: none unless configured.
	DefaultHTTPListen = ""
)

// DefaultSnapshotParallelism is the number of snapshot readers when none is configured: one per
// CPU, since each reader decodes its rows' text on this machine and readers beyond the cores only
// take turns; and at most 4, since past that the single producer into Kafka is the limit and every
// reader is one more connection (and one more open transaction) on the warehouse.
func DefaultSnapshotParallelism() int { return min(runtime.NumCPU(), 4) }

// Values of Postgres.Snapshot, Kafka.Format and Sink.OnDelete.
const (
	SnapshotInitial          = "initial"
	SnapshotNever            = "never"
	FormatAvro               = "avro"
	FormatAvroConfluent      = "avro-confluent" // Avro in the Confluent wire format, ids derived from fingerprints
	FormatJSON               = "json"
	FormatDebeziumJSON       = "debezium-json" // Kafka Connect JsonConverter schema/payload form
	OnDeleteDelete           = "delete"
	OnDeleteIgnore           = "ignore"
	OnDeleteSoftDelete       = "soft_delete"
	OnTruncateTruncate       = "truncate"
	OnTruncateIgnore         = "ignore"
	OnFilterOutDelete        = "delete"
	OnFilterOutIgnore        = "ignore"
	EnvelopeDebezium         = "debezium" // change events in Debezium's envelope
	EnvelopeNone             = "none"     // bare rows (ExtractNewRecordState), tombstones delete
	OnSlotLossResync         = "resync"
	OnSlotLossFail           = "fail"
	OnColumnChangeResnapshot = "resnapshot"
	OnColumnChangeWarn       = "warn"
)

// Values of Postgres.Streaming.
const (
	StreamingAuto = "auto" // on when the server supports it (PostgreSQL 14 and later)
	StreamingOn   = "on"
	StreamingOff  = "off"
)

// ApplyDefaults fills every field left at its zero value with its default. HeartbeatInterval
// is defaulted only when nil, so an explicit 0 keeps heartbeats disabled. Parse and Load call
// it; call it yourself on a Pipeline built in code before Validate.
func (p *Pipeline) ApplyDefaults() {
	p.Source.Postgres.applyDefaults()
	p.Kafka.applyDefaults()
	for i := range p.Sinks {
		p.Sinks[i].applyDefaults()
	}
	for i := range p.Models {
		setDefault(&p.Models[i].Debounce, DefaultModelDebounce)
	}
	setDefault(&p.DataDir, DefaultDataDir)
	setDefault(&p.Log.Format, DefaultLogFormat)
	setDefault(&p.Log.Level, DefaultLogLevel)
}

func (pg *Postgres) applyDefaults() {
	setDefault(&pg.Slot, DefaultSlot)
	setDefault(&pg.Publication, DefaultPublication)
	setDefault(&pg.Snapshot, DefaultSnapshot)
	setDefault(&pg.SnapshotChunk, DefaultSnapshotChunk)
	setDefault(&pg.SnapshotParallelism, DefaultSnapshotParallelism())
	setDefault(&pg.StatusInterval, DefaultStatusInterval)
	setDefault(&pg.MaxInFlight, DefaultMaxInFlight)
	setDefault(&pg.SignalTable, DefaultSignalTable)
	setDefault(&pg.OnSlotLoss, DefaultOnSlotLoss)
	setDefault(&pg.OnColumnChange, OnColumnChangeResnapshot)
	setDefault(&pg.StatementTimeout, DefaultStatementTimeout)
	setDefault(&pg.Streaming, DefaultStreaming)
	if pg.HeartbeatInterval == nil {
		d := DefaultHeartbeatInterval
		pg.HeartbeatInterval = &d
	}
}

func (k *Kafka) applyDefaults() {
	setDefault(&k.TopicPrefix, DefaultTopicPrefix)
	if k.Format == "" && k.Registry.URL == "" {
		// Without a registry of the user's, the Confluent framing with ids derived from the
		// schema topic: stock clients decode it through `backflow registry`.
		k.Format = FormatAvroConfluent
	}
	setDefault(&k.Format, DefaultFormat)
	setDefault(&k.EmbeddedPort, DefaultEmbeddedPort)
	setDefault(&k.SessionTimeout, DefaultSessionTimeout)
	setDefault(&k.Topics.Partitions, DefaultPartitions)
	setDefault(&k.Topics.ReplicationFactor, DefaultReplicationFactor)
	setDefault(&k.Topics.CleanupPolicy, DefaultCleanupPolicy)
	setDefault(&k.Topics.MaxMessageBytes, DefaultMaxMessageBytes)
}

func (s *Sink) applyDefaults() {
	setDefault(&s.OnDelete, DefaultOnDelete)
	setDefault(&s.OnTruncate, OnTruncateTruncate)
	setDefault(&s.OnFilterOut, OnFilterOutDelete)
	setDefault(&s.Envelope, EnvelopeDebezium)
	setDefault(&s.Concurrency, DefaultConcurrency)
	setDefault(&s.Batch.MaxRecords, DefaultBatchMaxRecords)
	setDefault(&s.Batch.MaxWait, DefaultBatchMaxWait)
	setDefault(&s.Retry.MaxAttempts, DefaultRetryMaxAttempts)
	setDefault(&s.Retry.MaxElapsed, DefaultRetryMaxElapsed)
	setDefault(&s.StallAfter, DefaultStallAfter)
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// checkExplicitZeros reports numbers written as 0 in the file where 0 is not allowed: without
// it, ApplyDefaults would silently turn them into the default.
func checkExplicitZeros(p *Pipeline, c *collector) {
	type check struct {
		path string
		zero bool
		msg  string
	}
	pg, k := &p.Source.Postgres, &p.Kafka
	checks := []check{
		{"source.postgres.snapshot_chunk", pg.SnapshotChunk == 0, msgAtLeastOne},
		{"source.postgres.snapshot_parallelism", pg.SnapshotParallelism == 0, msgAtLeastOne},
		{"source.postgres.status_interval", pg.StatusInterval == 0, msgPositiveDuration},
		{"source.postgres.max_in_flight", pg.MaxInFlight == 0, msgAtLeastOne},
		{"source.postgres.statement_timeout", pg.StatementTimeout == 0, msgPositiveDuration},
		{"kafka.embedded_port", k.EmbeddedPort == 0, msgPort},
		{"kafka.session_timeout", k.SessionTimeout == 0, msgPositiveDuration},
		{"kafka.topics.partitions", k.Topics.Partitions == 0, msgAtLeastOne},
		{"kafka.topics.replication_factor", k.Topics.ReplicationFactor == 0, msgReplication},
	}
	for i, s := range p.Sinks {
		checks = append(checks,
			check{index("sinks", i) + ".concurrency", s.Concurrency == 0, msgAtLeastOne},
			check{index("sinks", i) + ".batch.max_records", s.Batch.MaxRecords == 0, msgAtLeastOne},
			check{index("sinks", i) + ".batch.max_wait", s.Batch.MaxWait == 0, msgPositiveDuration},
			check{index("sinks", i) + ".retry.max_attempts", s.Retry.MaxAttempts == 0, msgAtLeastOne},
			check{index("sinks", i) + ".retry.max_elapsed", s.Retry.MaxElapsed == 0, msgPositiveDuration},
			check{index("sinks", i) + ".stall_after", s.StallAfter == 0, msgPositiveDuration})
	}
	for i, m := range p.Models {
		checks = append(checks, check{index("models", i) + ".debounce", m.Debounce == 0, msgPositiveDuration})
	}
	for _, ch := range checks {
		if ch.zero && c.present(ch.path) {
			c.add(ch.path, "%s", ch.msg)
		}
	}
}
