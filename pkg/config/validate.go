package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	msgAtLeastOne       = "must be at least 1"
	msgPositiveDuration = `must be a positive duration such as "50ms" or "10s"`
	msgPort             = "must be a port between 1 and 65535"
	msgReplication      = "must be at least 1, or -1 for the broker's default"
	msgSourceURL        = "expected a postgres:// or postgresql:// URL or a key=value DSN"
)

var (
	slotRe     = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	identRe    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]{0,62}$`)
	sinkNameRe = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)
	topicRe    = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
)

// validTable reports whether s names a table as "schema.table", or a schema's tables as
// "schema.*": two names of 1 to 63 bytes (PostgreSQL's limit), of any characters but '.' and
// control characters, without spaces around them. PostgreSQL allows any character in a quoted
// identifier (an "order items" table, say), and backflow quotes every identifier it sends; a '.'
// would make the split ambiguous.
func validTable(s string) bool {
	schema, name, ok := strings.Cut(s, ".")
	return ok && validName(schema) && (name == "*" || validName(name))
}

func validName(s string) bool {
	if s == "" || s == "*" || len(s) > 63 || strings.TrimSpace(s) != s || !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return r == '.' || unicode.IsControl(r) })
}

// Validate checks every rule of the pipeline file and returns all problems at once as a
// *ValidationError (without line numbers), or nil. Call ApplyDefaults first: Validate
// expects defaulted values. Mapping and filter expressions are not checked here. Of opts, only
// WithConnectors applies: without it, connector names and settings are not checked.
func (p *Pipeline) Validate(opts ...LoadOpt) error {
	c := newCollector("")
	for _, o := range opts {
		o(c)
	}
	p.validate(c)
	return c.err()
}

func (p *Pipeline) validate(c *collector) {
	// A source written in the file is checked, even half done; a file with neither a source nor
	// sinks is told what a source needs, as before sink-only pipelines.
	source := p.HasSource() || c.present("source") || len(p.Sinks) == 0
	if source {
		validatePostgres(&p.Source.Postgres, c)
	}
	validateKafka(&p.Kafka, c)
	validateSinks(p, source, c)
	validateModels(p, c)
	oneOf(c, "log.format", "log format", p.Log.Format, "json", "console")
	oneOf(c, "log.level", "log level", p.Log.Level, "debug", "info", "warn", "error")
	validateHTTP(&p.HTTP, c)
}

// validateHTTP checks the listen address: host:port with an optional host (":9464").
func validateHTTP(h *HTTP, c *collector) {
	if h.Listen == "" {
		return
	}
	_, port, err := net.SplitHostPort(h.Listen)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n < 1 || n > 65535 {
		c.add("http.listen", `invalid listen address %q; expected host:port or :port, e.g. ":9464" or "127.0.0.1:9464"`, h.Listen)
	}
	if strings.IndexFunc(h.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		c.add("http.token", "contains a space or a control character; it must fit in an Authorization header")
	}
}

// oneOf reports v unless it is one of allowed.
func oneOf(c *collector, path, what, v string, allowed ...string) {
	switch {
	case slices.Contains(allowed, v):
	case v == "":
		c.add(path, "required; expected one of %s", strings.Join(allowed, ", "))
	default:
		c.add(path, "unknown %s %q; expected one of %s", what, v, strings.Join(allowed, ", "))
	}
}

func validatePostgres(pg *Postgres, c *collector) {
	const base = "source.postgres"
	if pg.URL == "" {
		c.add(base+".url", "required; %s", msgSourceURL)
	} else if err := checkSourceURL(pg.URL); err != nil {
		c.add(base+".url", "%v; %s", err, msgSourceURL)
	}
	validateTables(pg.Tables, c)
	oneOf(c, base+".snapshot", "snapshot mode", pg.Snapshot, SnapshotInitial, SnapshotNever)
	oneOf(c, base+".on_slot_loss", "slot loss action", pg.OnSlotLoss, OnSlotLossResync, OnSlotLossFail)
	oneOf(c, base+".on_column_change", "column change action", pg.OnColumnChange, OnColumnChangeResnapshot, OnColumnChangeWarn)
	oneOf(c, base+".streaming", "streaming mode", pg.Streaming, StreamingAuto, StreamingOn, StreamingOff)
	if !slotRe.MatchString(pg.Slot) {
		c.add(base+".slot", "invalid replication slot name %q; expected 1 to 63 lower-case letters, digits or underscores", pg.Slot)
	}
	if !identRe.MatchString(pg.Publication) {
		c.add(base+".publication", "invalid publication name %q; expected a PostgreSQL identifier: a letter or underscore, then letters, digits, underscores or $ (at most 63)", pg.Publication)
	}
	validateKeys(pg, c)
	if pg.SignalTable != "" && (!validTable(pg.SignalTable) || strings.HasSuffix(pg.SignalTable, ".*")) {
		c.add(base+".signal_table", `invalid table %q; expected "schema.table"`, pg.SignalTable)
	}
	validatePostgresTuning(pg, c)
}

func validatePostgresTuning(pg *Postgres, c *collector) {
	const base = "source.postgres"
	if pg.SnapshotChunk < 1 {
		c.add(base+".snapshot_chunk", msgAtLeastOne)
	}
	if pg.SnapshotParallelism < 1 {
		c.add(base+".snapshot_parallelism", msgAtLeastOne)
	}
	if pg.MaxInFlight < 1 {
		c.add(base+".max_in_flight", msgAtLeastOne)
	}
	if pg.StatusInterval <= 0 {
		c.add(base+".status_interval", msgPositiveDuration)
	}
	if pg.StatementTimeout <= 0 {
		c.add(base+".statement_timeout", msgPositiveDuration)
	}
	if pg.HeartbeatInterval != nil && *pg.HeartbeatInterval < 0 {
		c.add(base+".heartbeat_interval", "must not be negative; 0 disables heartbeats")
	}
}

func validateTables(tables []string, c *collector) {
	const path = "source.postgres.tables"
	if len(tables) == 0 {
		c.add(path, `required; expected at least one "schema.table" or "schema.*"`)
	}
	seen := map[string]bool{}
	for i, t := range tables {
		switch {
		case !validTable(t):
			c.add(index(path, i), `invalid table %q; expected "schema.table" or "schema.*"`, t)
		case seen[t]:
			c.add(index(path, i), "duplicate table %q", t)
		}
		seen[t] = true
	}
}

// validateKeys checks the explicit keys: each names a listed table as "schema.table".
func validateKeys(pg *Postgres, c *collector) {
	for _, table := range sortedKeys(pg.Keys) {
		path := JoinKey("source.postgres.keys", table)
		switch {
		case !validTable(table) || strings.HasSuffix(table, ".*"):
			c.add(path, `invalid table %q; expected "schema.table"`, table)
		case len(pg.Tables) > 0 && !covered(table, pg.Tables):
			c.add(path, "table %q is not in source.postgres.tables", table)
		case len(pg.Keys[table]) == 0:
			c.add(path, "expected at least one key column")
		}
		for i, col := range pg.Keys[table] {
			switch {
			case col == "":
				c.add(index(path, i), "expected a column name")
			case slices.Contains(pg.Keys[table][:i], col):
				c.add(index(path, i), "column %q is already in the key", col)
			}
		}
	}
}

// Captures reports whether table ("schema.table") is in source.postgres.tables, literally or
// through "schema.*".
func (pg *Postgres) Captures(table string) bool { return covered(table, pg.Tables) }

// covered reports whether table is listed in tables, literally or through "schema.*".
func covered(table string, tables []string) bool {
	schema, _, _ := strings.Cut(table, ".")
	for _, t := range tables {
		if t == table || t == schema+".*" {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func validateKafka(k *Kafka, c *collector) {
	for i, b := range k.Brokers {
		if !validHostPort(b) {
			c.add(index("kafka.brokers", i), "invalid broker address %q; expected host:port", b)
		}
	}
	if k.EmbeddedPort < 1 || k.EmbeddedPort > 65535 {
		c.add("kafka.embedded_port", msgPort)
	}
	if k.SessionTimeout <= 0 {
		c.add("kafka.session_timeout", msgPositiveDuration)
	}
	if !topicRe.MatchString(k.TopicPrefix) {
		c.add("kafka.topic_prefix", "invalid topic prefix %q; expected letters, digits, '.', '_' or '-'", k.TopicPrefix)
	}
	if k.SinkPrefix != "" && !topicRe.MatchString(k.SinkPrefix+"x.dlq") {
		c.add("kafka.sink_prefix", "invalid sink prefix %q; expected letters, digits, '.', '_' or '-' (it starts group and topic names)", k.SinkPrefix)
	}
	oneOf(c, "kafka.format", "format", k.Format, FormatAvro, FormatJSON, FormatDebeziumJSON, FormatAvroConfluent)
	if k.Format == FormatAvroConfluent && k.Registry.URL != "" {
		c.add("kafka.schema_registry.url", "format avro-confluent derives schema ids itself and serves them with backflow registry; with an external registry use format avro")
	}
	validatePlaceholder(k.Debezium.UnavailableValuePlaceholder, c)
	validateRegistry(&k.Registry, c)
	validateTopics(&k.Topics, c)
	validateTLS(k.TLS, c)
	validateSASL(k.SASL, c)
}

func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// validatePlaceholder checks a Debezium unavailable.value.placeholder: "hex:" must be followed by
// the hex digits of at least one octet, as Debezium reads it.
func validatePlaceholder(p string, c *collector) {
	h, ok := strings.CutPrefix(p, "hex:")
	if !ok {
		return
	}
	if b, err := hex.DecodeString(h); err != nil || len(b) == 0 {
		c.add("kafka.debezium.unavailable_value_placeholder", "invalid %q; expected \"hex:\" and an even number of hex digits", p)
	}
}

func validateRegistry(r *SchemaRegistry, c *collector) {
	const path = "kafka.schema_registry.url"
	if r.URL == "" {
		if r.Username != "" || r.Password != "" {
			c.add(path, "required when a username or password is set")
		}
		return
	}
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		c.add(path, "invalid schema registry URL; expected an http:// or https:// URL")
	}
}

func validateTopics(t *Topics, c *collector) {
	if t.Partitions < 1 {
		c.add("kafka.topics.partitions", msgAtLeastOne)
	}
	if t.ReplicationFactor < 1 && t.ReplicationFactor != -1 {
		c.add("kafka.topics.replication_factor", msgReplication)
	}
	oneOf(c, "kafka.topics.cleanup_policy", "cleanup policy", t.CleanupPolicy, "compact", "delete", "compact,delete")
	// franz-go takes batch limits between 512 bytes and 1 GiB; below 64 KiB a topic would turn
	// ordinary rows away.
	if t.MaxMessageBytes < 64<<10 || t.MaxMessageBytes > 1<<30 {
		c.add("kafka.topics.max_message_bytes", "expected a size in bytes from 65536 (64 KiB) to 1073741824 (1 GiB)")
	}
}

func validateTLS(t *TLS, c *collector) {
	if t == nil {
		return
	}
	checkFile(c, "kafka.tls.ca_file", t.CAFile)
	checkFile(c, "kafka.tls.cert_file", t.CertFile)
	checkFile(c, "kafka.tls.key_file", t.KeyFile)
	if t.CertFile != "" && t.KeyFile == "" {
		c.add("kafka.tls.key_file", "required with kafka.tls.cert_file")
	}
	if t.KeyFile != "" && t.CertFile == "" {
		c.add("kafka.tls.cert_file", "required with kafka.tls.key_file")
	}
}

// checkFile reports a file name that is given but does not name a readable file.
func checkFile(c *collector, path, name string) {
	if name == "" {
		return
	}
	info, err := os.Stat(name)
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.add(path, "file %q does not exist; expected an existing PEM file", name)
	case errors.As(err, &pe):
		c.add(path, "cannot use file %q: %v", name, pe.Err)
	case err != nil:
		c.add(path, "cannot use file %q: %v", name, err)
	case info.IsDir():
		c.add(path, "%q is a directory; expected a PEM file", name)
	}
}

func validateSASL(s *SASL, c *collector) {
	if s == nil {
		return
	}
	oneOf(c, "kafka.sasl.mechanism", "SASL mechanism", s.Mechanism, "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
	if s.Username == "" {
		c.add("kafka.sasl.username", "required for SASL")
	}
	if s.Password == "" {
		c.add("kafka.sasl.password", "required for SASL")
	}
}

func validateSinks(p *Pipeline, source bool, c *collector) {
	names := map[string]int{}
	for i := range p.Sinks {
		s, path := &p.Sinks[i], index("sinks", i)
		validateSink(p, s, path, c)
		if !source && len(s.From) > 0 {
			c.add(path+".from", "tables need a source: this pipeline has no source.postgres, so name the topics to read with topics: [...] instead")
		}
		if prev, dup := names[s.Name]; dup && s.Name != "" {
			c.add(path+".name", "duplicate sink name %q; %s already uses it", s.Name, index("sinks", prev))
			continue
		}
		names[s.Name] = i
	}
}

func validateSink(p *Pipeline, s *Sink, path string, c *collector) {
	switch {
	case s.Name == "":
		c.add(path+".name", "required; expected a name of letters, digits, '.', '_' or '-'")
	case !sinkNameRe.MatchString(s.Name):
		c.add(path+".name", "invalid sink name %q; expected letters, digits, '.', '_' or '-'", s.Name)
	}
	validateSinkInput(p, s, path, c)
	validateConnector(p, s, path, c)
	validateSinkKey(s, path, c)
	validateOnDelete(s, path, c)
	oneOf(c, path+".on_truncate", "on_truncate action", s.OnTruncate, OnTruncateTruncate, OnTruncateIgnore)
	oneOf(c, path+".on_filter_out", "on_filter_out action", s.OnFilterOut, OnFilterOutDelete, OnFilterOutIgnore)
	if s.Concurrency < 1 {
		c.add(path+".concurrency", msgAtLeastOne)
	}
	if s.RateLimit != "" {
		if _, err := ParseRate(s.RateLimit); err != nil {
			c.add(path+".rate_limit", "%v", err)
		}
	}
	if s.Batch.MaxRecords < 1 {
		c.add(path+".batch.max_records", msgAtLeastOne)
	}
	if s.Batch.MaxWait <= 0 {
		c.add(path+".batch.max_wait", msgPositiveDuration)
	}
	if s.Retry.MaxAttempts < 1 {
		c.add(path+".retry.max_attempts", msgAtLeastOne)
	}
	if s.Retry.MaxElapsed <= 0 {
		c.add(path+".retry.max_elapsed", msgPositiveDuration)
	}
	if s.StallAfter <= 0 {
		c.add(path+".stall_after", msgPositiveDuration)
	}
}

// validateConnector checks the connector's name, and its settings when the loader knows the
// connectors (WithConnectors).
func validateConnector(p *Pipeline, s *Sink, path string, c *collector) {
	if c.connectors == nil {
		if s.Connector == "" {
			c.add(path+".connector", "required; expected the name of a target connector")
		}
		return
	}
	oneOf(c, path+".connector", "connector", s.Connector, c.connectorNames()...)
	c.checkConnector(p, s, path)
}

// validateSinkInput checks that a sink reads either source tables or explicit topics.
func validateSinkInput(p *Pipeline, s *Sink, path string, c *collector) {
	switch {
	case len(s.From) == 0 && len(s.Topics) == 0 && !p.HasSource():
		c.add(path+".topics", "required; expected the topics to read (this pipeline has no source, so from: [tables] is not available)")
	case len(s.From) == 0 && len(s.Topics) == 0:
		c.add(path+".from", "required; expected the source tables to read (or topics: [...])")
	case len(s.From) > 0 && len(s.Topics) > 0:
		c.add(path+".topics", "expected either from or topics, not both")
	}
	tables := p.Source.Postgres.Tables
	for i, t := range s.From {
		switch {
		case !validTable(t):
			c.add(index(path+".from", i), `invalid table %q; expected "schema.table"`, t)
		case isModel(p, t):
		case len(tables) > 0 && !covered(t, tables): // no tables is reported once, at the source
			c.add(index(path+".from", i), "table %q is not captured; expected one of source.postgres.tables (%s)", t, strings.Join(tables, ", "))
		}
	}
	checkTopicNames(c, path+".topics", s.Topics)
	checkTopicNames(c, path+".schema_topics", s.SchemaTopics)
	oneOf(c, path+".envelope", "envelope", s.Envelope, EnvelopeDebezium, EnvelopeNone)
	if s.Envelope == EnvelopeNone && len(s.From) > 0 {
		c.add(path+".from", "envelope: none reads topics of bare rows that other tools write; list them in topics "+
			"(the topics of from hold backflow's change events: drop envelope)")
	}
}

// isModel reports whether a sink's from entry names a model of the pipeline ("model.<name>").
func isModel(p *Pipeline, entry string) bool {
	_, ok := p.modelOf(entry)
	return ok
}

func checkTopicNames(c *collector, path string, topics []string) {
	for i, t := range topics {
		if !topicRe.MatchString(t) {
			c.add(index(path, i), "invalid topic name %q; expected letters, digits, '.', '_' or '-'", t)
		}
	}
}

func validateSinkKey(s *Sink, path string, c *collector) {
	if len(s.Key) == 0 {
		c.add(path+".key", "required; expected the target's identity fields, e.g. [id]")
	}
	for i, k := range s.Key {
		if k == "" {
			c.add(index(path+".key", i), "expected a field name")
		}
	}
}

func validateOnDelete(s *Sink, path string, c *collector) {
	oneOf(c, path+".on_delete", "on_delete action", s.OnDelete, OnDeleteDelete, OnDeleteIgnore, OnDeleteSoftDelete)
	if s.OnDelete != OnDeleteSoftDelete {
		return
	}
	if col, _ := s.With["soft_delete_column"].(string); col == "" {
		c.add(path+".with.soft_delete_column", "required when on_delete is soft_delete; expected the target column that marks deleted rows")
	}
}

// checkSourceURL checks a postgres:// URL or a key=value DSN. Its errors never quote the value,
// which may hold a password.
func checkSourceURL(s string) error {
	if !strings.Contains(s, "://") {
		return checkDSN(s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a valid URL (percent-encode special characters such as @ : / ? # in the user name and password)")
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return fmt.Errorf("unsupported scheme %q", u.Scheme)
	}
	return nil
}
