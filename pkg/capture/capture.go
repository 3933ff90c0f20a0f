// Package capture reads PostgreSQL's change stream through logical replication (pgoutput) and
// publishes every row change to Kafka, confirming the replication slot only behind records Kafka
// has acknowledged.
package capture

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// Capture is one capture process: one slot, one publication, one Kafka cluster.
type Capture struct {
	cfg       *config.Pipeline
	pg        config.Postgres
	log       *zap.Logger
	prefix    string
	db        string
	heartbeat time.Duration
	kopts     []kgo.Opt
	// signalTable is the re-snapshot signal table in use, "" when it could not be set up.
	signalTable string
	metrics     *observe.Metrics
	instance    string // names this process in PostgreSQL and status; see WithInstance
	// guard carries from run to run what keeps one record from stalling capture.
	guard guard
	// limits are the max.message.bytes of the topics of the current run.
	limits *topicLimits
	// loss finds the partitions where Kafka lost what capture wrote. It outlives a run: a run
	// that fails on the broker's trouble leaves the loss to the next one to find.
	loss *kafka.OffsetWatch
	// onCommit is told the tables each streamed transaction changed; see WithCommitHook.
	onCommit func(tables []string)
	// spillFailures counts the runs in a row that failed on spill_dir's files; spillFailed
	// says why once they were too many, "" until then: later runs read every transaction at
	// its commit (protocol 1). See noteSpillFailure.
	spillFailures int
	spillFailed   string
	// pieceBytes sizes the pieces snapshot chunks are produced in (pieceBytes, but in tests).
	pieceBytes int64
}

// Opt configures a Capture.
type Opt func(*Capture)

// WithLogger sets the logger (default: no logging).
func WithLogger(l *zap.Logger) Opt { return func(c *Capture) { c.log = l } }

// WithMetrics records capture's metrics in m.
func WithMetrics(m *observe.Metrics) Opt { return func(c *Capture) { c.metrics = m } }

// WithKafkaOpts adds franz-go client options, e.g. for tests that inject faults.
func WithKafkaOpts(opts ...kgo.Opt) Opt {
	return func(c *Capture) { c.kopts = append(c.kopts, opts...) }
}

// New returns a capture for the pipeline's source and Kafka; cfg must be validated.
func New(cfg *config.Pipeline, opts ...Opt) *Capture {
	c := &Capture{cfg: cfg, pg: cfg.Source.Postgres, log: zap.NewNop(), prefix: cfg.Kafka.TopicPrefix, pieceBytes: pieceBytes}
	if cfg.Source.Postgres.HeartbeatInterval != nil {
		c.heartbeat = *cfg.Source.Postgres.HeartbeatInterval
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Run captures until ctx ends (returning nil) or something fails. Everything Kafka acknowledged is
// confirmed to PostgreSQL; everything else is sent again by the slot on the next Run. While
// another process captures the slot, Run waits as its standby.
func (c *Capture) Run(ctx context.Context) error {
	// Nothing is touched before this process holds the slot's capture lock: another process may
	// be capturing, and this one is its standby until then.
	err := c.whileActive(ctx, c.run)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (c *Capture) run(ctx context.Context) error {
	conn, err := c.connect(ctx, false)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	c.db = conn.Config().Database
	cat := newCatalog(conn, c.pg.Keys)
	cat.pub = c.pg.Publication
	tables, leftOut, republished, err := c.prepareSource(ctx, cat)
	if err != nil {
		return err
	}

	book := newPartitionBook(c.log, c.metrics)
	client, admin, kopts, err := c.kafkaClients(ctx, book)
	if err != nil {
		return err
	}
	defer client.Close()
	defer book.close() // its saves use client
	em, err := c.newEmitter(client, admin, book)
	if err != nil {
		return err
	}
	defer em.close()
	store := newStateStore(client, admin, kopts, c.cfg.Kafka.CaptureStateTopic(), c.pg.Slot)
	if err := store.ensure(ctx); err != nil {
		return err
	}
	state, err := store.load(ctx)
	if err != nil {
		return err
	}
	if err := book.load(ctx, store); err != nil {
		return err
	}
	deletedTopics, err := book.checkAll(ctx, admin)
	if err != nil {
		return err
	}
	acks, err := loadAckBook(ctx, store)
	if err != nil {
		return err
	}
	defer acks.wait() // its saves use client
	lostTopics, err := acks.lost(ctx, admin, deletedTopics, c.loss)
	if err != nil {
		return err
	}

	s := &stream{c: c, em: em, acks: acks, dec: newDecoder(), cat: cat, rels: map[uint32]*change.Table{}, unkeyed: map[uint32]string{}, signal: c.signalTable,
		tables: tables}
	if s.inc, err = c.newIncremental(ctx, s, store, kopts); err != nil {
		return err
	}
	defer s.inc.close(context.WithoutCancel(ctx))
	if state.Done {
		if err := c.refillTopics(ctx, em, s.inc, tables, deletedTopics); err != nil {
			return err
		}
		if err := s.repairLost(ctx, lostTopics, "at start: its log ends at or below the offset capture last saw acknowledged"); err != nil {
			return err
		}
	}
	if len(lostTopics) > 0 { // the logs' ends as they are now: one loss is found once
		if err := acks.save(ctx, c.loss); err != nil {
			return err
		}
	}

	repl, err := c.connectReplication(ctx)
	if err != nil {
		return err
	}
	defer repl.Close(context.WithoutCancel(ctx))
	s.conn = repl
	if err := c.checkSlot(ctx, cat, store, s.inc, state, tables); err != nil {
		return err
	}
	// Asked before the slot exists: an exported snapshot lives only while repl stays idle.
	sys, err := pglogrepl.IdentifySystem(ctx, repl)
	if err != nil {
		return fmt.Errorf("identify system: %w", err)
	}
	wantSnapshot := c.pg.Snapshot == "initial" && !state.Done
	exported, consistent, err := c.ensureSlot(ctx, cat, repl, wantSnapshot)
	if err != nil {
		return err
	}
	// What the slot confirmed already: a stop before any status update records that position
	// (slotRecord.Stopped), not one below it.
	s.acked = consistent
	if s.slot, err = c.recordSlot(ctx, store, sys.SystemID, consistent); err != nil {
		return err
	}
	// The watch takes the tables' identity, columns and partitions before the initial snapshot
	// reads them, as of about the slot's consistent point: a table replaced, a column added or a
	// partition truncated while a long snapshot runs is then found at the first check, where a
	// watch started after the snapshot would take the changed table as its baseline.
	if s.watch, err = c.watchRelations(ctx, cat, store, s.inc, tables, leftOut, republished); err != nil {
		return err
	}
	if wantSnapshot {
		if err := c.snapshot(ctx, cat, em, store, state, tables, exported, consistent); err != nil {
			return err
		}
	}
	if s.spill, err = c.openSpill(ctx, cat, sys.SystemID); err != nil {
		return err
	}
	if s.spill != nil {
		defer s.spill.close()
	}
	ticker := time.NewTicker(c.pg.StatusInterval)
	defer ticker.Stop()
	// While Kafka is slow or away the emitter waits for room; status updates keep flowing meanwhile
	// so PostgreSQL does not drop the replication connection.
	// A topic deleted under it leaves Kafka unable to acknowledge what waits: that ends the wait.
	em.wake, em.onWait = ticker.C, func() error {
		if err := s.sendStatus(ctx); err != nil {
			return err
		}
		return em.checkTopics(ctx)
	}
	c.log.Info("streaming changes", zap.String("slot", c.pg.Slot), zap.String("publication", c.pg.Publication))
	err = s.replicate(ctx, c.pg.Slot, c.pg.Publication)
	if ctx.Err() != nil {
		c.stopCleanly(client, s)
	}
	if c.publicationGap(err) {
		return c.abandonSlot(ctx, cat, repl, err)
	}
	return err
}

// refillTopics refreshes in full the tables whose topic was deleted while capture was not
// running: the topic capture writes again from its next change on would lack every row not
// changed since, for the sinks and replays that read it from its start.
func (c *Capture) refillTopics(ctx context.Context, em *emitter, in *incremental, tables [][2]string, deleted []string) error {
	for _, t := range tables {
		topic := em.topicOf(t[0], t[1])
		if !slices.Contains(deleted, topic) {
			continue
		}
		name := t[0] + "." + t[1]
		c.log.Warn("the table's topic was deleted while capture was not running, and lacks every row written before; "+
			"refreshing the table in full into it", zap.String("table", name), zap.String("topic", topic))
		if err := in.enqueue(ctx, &SnapshotRequest{Table: name, FullRefresh: true, Reason: ReasonTopicDeleted}); err != nil {
			return err
		}
	}
	return nil
}

// stopCleanly, on shutdown, waits for Kafka to acknowledge what was handed to it and confirms the
// last complete transaction to the slot, so a restart re-sends as little as possible.
func (c *Capture) stopCleanly(client *kgo.Client, s *stream) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Flush(ctx); err != nil {
		c.log.Warn("stopping: Kafka did not acknowledge everything in time; the slot re-sends it", zap.Error(err))
		return
	}
	if err := s.sendStatus(ctx); err != nil {
		c.log.Warn("stopping: could not confirm the last position", zap.Error(err))
		return
	}
	if err := s.acks.save(ctx, c.loss); err != nil {
		c.log.Warn("stopping: could not save the offsets Kafka acknowledged; the next start checks against older ones", zap.Error(err))
	}
	if s.slot != nil {
		s.slot.rec.Stopped = true
		_ = s.slot.write(ctx, s.acked)
	}
	c.log.Info("stopped cleanly", zap.String("confirmed_lsn", s.acked.String()))
}

func (c *Capture) snapshot(ctx context.Context, cat *catalog, em *emitter, store *stateStore, state *snapshotState,
	tables [][2]string, exported string, lsn pglogrepl.LSN) error {
	sn := &snapshotter{c: c, cat: cat, em: em, store: store, state: state, lsn: lsn, start: time.Now()}
	c.log.Info("initial snapshot", zap.Int("tables", len(tables)), zap.Bool("consistent_with_slot", exported != ""),
		zap.Int("parallelism", c.pg.SnapshotParallelism))
	if err := sn.run(ctx, tables, exported); err != nil {
		return fmt.Errorf("initial snapshot: %w", err)
	}
	c.log.Info("initial snapshot done")
	return nil
}

// connect opens a regular connection (or a replication one) with the fixed session settings that
// make PostgreSQL's text output parse the same way everywhere.
func (c *Capture) connect(ctx context.Context, replication bool) (*pgx.Conn, error) {
	pc, err := pgx.ParseConfig(c.pg.URL)
	if err != nil {
		return nil, fmt.Errorf("source.postgres.url: %w", err)
	}
	for k, v := range sessionParams {
		pc.RuntimeParams[k] = v
	}
	pc.RuntimeParams["application_name"] = c.applicationName() // status shows which process captures
	// A row-level security policy makes a read fail instead of leaving rows out (as pg_dump does).
	pc.RuntimeParams["row_security"] = "off"
	if replication {
		pc.RuntimeParams["replication"] = "database"
		pc.DialFunc = dialReplication // reads the stream in gulps
	} else if c.pg.StatementTimeout > 0 {
		// No query may hang capture; the replication stream itself is exempt (it never ends).
		pc.RuntimeParams["statement_timeout"] = strconv.FormatInt(c.pg.StatementTimeout.Milliseconds(), 10)
	}
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to warehouse %s: %w", config.RedactURL(c.pg.URL), err)
	}
	return conn, nil
}

func (c *Capture) connectReplication(ctx context.Context) (*pgconn.PgConn, error) {
	conn, err := c.connect(ctx, true)
	if err != nil {
		return nil, err
	}
	return conn.PgConn(), nil
}

// prepareSource checks the server and the role, resolves the table list, checks every table can
// be keyed and read, and makes sure the publication covers them. leftOut names the tables without
// a key, or UNLOGGED, it leaves out for now (leaveOut); republished those it added to an existing
// publication, or switched to publishing through their partition root.
func (c *Capture) prepareSource(ctx context.Context, cat *catalog) (tables [][2]string, leftOut []string, republished []unpublishedTable, err error) {
	tables, leftOut, err = c.resolveSource(ctx, cat)
	if err != nil {
		return nil, nil, nil, err
	}
	republished, err = c.publish(ctx, cat, tables, leftOut)
	return tables, leftOut, republished, err
}

// resolveSource checks the server and the role, and resolves the table list to the tables
// capture reads, apart from those it leaves out.
func (c *Capture) resolveSource(ctx context.Context, cat *catalog) (tables [][2]string, leftOut []string, err error) {
	if err := preflight(ctx, cat.conn); err != nil {
		return nil, nil, setupError{err}
	}
	var missing []string
	if tables, missing, err = cat.resolveTables(ctx, c.pg.Tables); err != nil {
		return nil, nil, setupError{err}
	}
	if err := c.missingAtStart(ctx, cat, tables, missing); err != nil {
		return nil, nil, err
	}
	problems, unfit := tableProblems(ctx, cat, tables)
	if len(unfit) > 0 {
		var refused []leftOutError
		if tables, refused, err = c.leaveOut(ctx, cat, tables, unfit); err != nil {
			return nil, nil, err
		}
		for _, lo := range refused {
			problems = append(problems, lo.Error())
		}
	}
	if len(problems) > 0 {
		return nil, nil, setupError{errors.New(strings.Join(problems, "; "))}
	}
	for _, lo := range unfit {
		leftOut = append(leftOut, lo.tableName())
	}
	leftOut = append(leftOut, missing...) // not named in a publication capture creates again
	gen, err := cat.generatedColumns(ctx, tables)
	if err != nil {
		return nil, nil, err
	}
	for table, cols := range gen {
		c.log.Warn("generated columns are not published: PostgreSQL does not send them in changes; compute them in the sinks' mappings if targets need them",
			zap.String("table", table), zap.Strings("columns", cols))
	}
	return tables, leftOut, nil
}

// publish makes sure the publication covers the tables (and the signal table), and does not
// name a table left out: a published table without a replica identity has its UPDATEs and
// DELETEs refused by PostgreSQL. It returns the tables it added to an existing publication.
func (c *Capture) publish(ctx context.Context, cat *catalog, tables [][2]string, leftOut []string) ([]unpublishedTable, error) {
	entries := slices.DeleteFunc(slices.Clone(c.pg.Tables), func(e string) bool { return slices.Contains(leftOut, e) })
	pubTables := tables
	if c.signalTable = c.ensureSignalTable(ctx, cat); c.signalTable != "" {
		schema, name, _ := strings.Cut(c.signalTable, ".")
		entries, pubTables = append(entries, c.signalTable), append(slices.Clone(tables), [2]string{schema, name})
	}
	return ensurePublication(ctx, cat.conn, c.pg.Publication, entries, pubTables)
}

// leftOutError is what makes capture leave a table out for now (see leaveOut), and follow it once
// fixed: no key (noKeyError), or UNLOGGED (unloggedError).
type leftOutError interface {
	error
	tableName() string
}

// tableProblems says, for each table, what stops capture from reading and keying it; the tables
// without any key, or UNLOGGED, are apart, in unfit.
func tableProblems(ctx context.Context, cat *catalog, tables [][2]string) (problems []string, unfit []leftOutError) {
	for _, t := range tables {
		var lo leftOutError
		err := cat.followProblem(ctx, t[0], t[1])
		switch {
		case errors.As(err, &lo):
			unfit = append(unfit, lo)
		case err != nil:
			problems = append(problems, err.Error())
		}
		problems = append(problems, readProblems(ctx, cat, t[0], t[1])...)
	}
	return problems, unfit
}

// readProblems says what keeps capture's role from reading every row of schema.table: no SELECT
// privilege, or row-level security policies that apply to it. PostgreSQL publishes every row's
// changes whatever the policies, but a snapshot reads only the rows they show: the targets would
// miss the others until they change. (Capture's connections also set row_security off, so a
// policy that comes later fails the read instead of filtering it.)
func readProblems(ctx context.Context, cat *catalog, schema, table string) []string {
	var canRead, filtered bool
	var role string
	err := cat.conn.QueryRow(ctx, `SELECT has_table_privilege($1, 'SELECT'), current_user,
			c.relrowsecurity AND NOT (r.rolsuper OR r.rolbypassrls OR (pg_has_role(c.relowner, 'USAGE') AND NOT c.relforcerowsecurity))
		FROM pg_class c, pg_roles r WHERE c.oid = $1::regclass AND r.rolname = current_user`, quoteTable(schema, table)).Scan(&canRead, &role, &filtered)
	switch {
	case err != nil:
		return nil // the table's other checks say what is wrong with it
	case !canRead:
		return []string{fmt.Sprintf("role cannot read %s.%s: GRANT SELECT ON %s TO the capture role", schema, table, quoteTable(schema, table))}
	case filtered:
		return []string{fmt.Sprintf("table %s.%s has row-level security that applies to role %s: a snapshot would read only the rows its policies "+
			"show, while every row's changes are published; ALTER ROLE %s BYPASSRLS, or capture as the table's owner (without FORCE ROW LEVEL SECURITY)",
			schema, table, role, quoteIdent(role))}
	}
	return nil
}

// missingAtStart decides what listed tables found missing at start mean. At the first start
// they are a mistake in the configuration: a setup error. Once capture has run (its slot exists),
// a table dropped, renamed away or replaced by a view while capture was down is what the relation
// watch reports while capture runs: capture goes on with the others, the watch reports each
// missing table (log, metric, status) and follows it again once it exists. No table left at all
// is a setup error still.
func (c *Capture) missingAtStart(ctx context.Context, cat *catalog, tables [][2]string, missing []string) error {
	if len(missing) == 0 && len(tables) > 0 {
		return nil
	}
	ran, err := c.slotExists(ctx, cat)
	if err != nil {
		return err
	}
	switch {
	case len(tables) == 0 && len(missing) == 0:
		return setupError{errors.New("source.postgres.tables: no tables to capture")}
	case !ran || len(tables) == 0:
		return setupError{cat.missingError(ctx, missing)}
	}
	c.log.Warn("listed tables are missing; capturing the others, and each of these once it exists again",
		zap.Strings("tables", missing), zap.Error(cat.missingError(ctx, missing)))
	return nil
}

// slotExists reports whether the slot exists: capture has run before.
func (c *Capture) slotExists(ctx context.Context, cat *catalog) (bool, error) {
	var ran bool
	if err := cat.conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)", c.pg.Slot).Scan(&ran); err != nil {
		return false, fmt.Errorf("look up replication slot %q: %w", c.pg.Slot, err)
	}
	return ran, nil
}

// leaveOut takes out of tables the unfit ones (without a key, or UNLOGGED) capture may leave out
// for now, and reports them (log, metric): a table a schema.* entry matched (a dbt CREATE TABLE
// AS under a temporary name, a staging table created UNLOGGED), and, once capture has run (its
// slot exists), a listed one (such a table swapped in under the listed name while capture was
// down). The relation watch keeps reporting them while they are unfit and refreshes them in full
// once fixed; capture goes on with the other tables. A listed table unfit at the first start is
// a mistake in the configuration: it is returned in refused.
func (c *Capture) leaveOut(ctx context.Context, cat *catalog, tables [][2]string, unfit []leftOutError) (kept [][2]string, refused []leftOutError, err error) {
	ran, err := c.slotExists(ctx, cat)
	if err != nil {
		return nil, nil, err
	}
	skip := map[string]bool{}
	for _, lo := range unfit {
		name := lo.tableName()
		if !ran && slices.Contains(c.pg.Tables, name) {
			refused = append(refused, lo)
			continue
		}
		skip[name] = true
		c.log.Error("table left out: its changes are not captured, and its targets are stale until this is fixed",
			zap.String("table", name), zap.Error(lo))
		c.metrics.TableUnfollowed(name, lo.Error())
	}
	kept = slices.DeleteFunc(tables, func(t [2]string) bool { return skip[t[0]+"."+t[1]] })
	return kept, refused, nil
}

// kafkaClients returns the producer, an admin client over it, and the connection options (brokers,
// TLS, SASL) for other clients of this capture. The producer reports to book the topics it
// sees gain partitions.
func (c *Capture) kafkaClients(ctx context.Context, book *partitionBook) (*kgo.Client, *kadm.Client, []kgo.Opt, error) {
	base, err := kafka.ClientOpts(c.cfg.Kafka, c.log)
	if err != nil {
		return nil, nil, nil, err
	}
	kopts := append(base, c.kopts...)
	// Batches never exceed what their topic takes, whatever the compression: Kafka refuses a
	// batch as a whole, and franz-go then fails every record buffered for the partition.
	c.limits = newTopicLimits(kafka.MaxMessageBytes(c.cfg.Kafka.Topics))
	if c.loss == nil {
		c.loss = kafka.NewOffsetWatch()
	}
	popts := append(kafka.ProducerOpts(), kafka.BatchLimit(c.limits.batchLimit), kafka.WatchPartitions(book.whileRunning))
	client, err := kgo.NewClient(append(append([]kgo.Opt{}, kopts...), popts...)...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("kafka client: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := client.Ping(pctx); err != nil {
		client.Close()
		return nil, nil, nil, fmt.Errorf("reach Kafka brokers %v: %w", c.cfg.Kafka.Brokers, err)
	}
	return client, kadm.NewClient(client), kopts, nil
}

func (c *Capture) newEmitter(client *kgo.Client, admin *kadm.Client, book *partitionBook) (*emitter, error) {
	em := &emitter{
		client: client, admin: admin, tr: newTracker(c.pg.MaxInFlight), prefix: c.prefix, metrics: c.metrics,
		topics: c.cfg.Kafka.Topics, ensured: map[string]bool{}, parts: map[string]int32{}, book: book, log: c.log,
		onWait: func() error { return nil },
		limits: c.limits, dlq: c.cfg.CaptureDLQTopic(), loss: c.loss,
		alone: c.guard.takeAlone(), refused: c.guard.setAlone,
		oversize: func() (*kgo.Client, error) {
			base, err := kafka.ClientOpts(c.cfg.Kafka, c.log)
			if err != nil {
				return nil, err
			}
			cl, err := kgo.NewClient(append(append(base, c.kopts...), append(kafka.OversizeProducerOpts(), kafka.WatchPartitions(book.whileRunning))...)...)
			if err != nil {
				return nil, fmt.Errorf("kafka client for oversize records: %w", err)
			}
			return cl, nil
		},
	}
	if em.limits == nil {
		em.limits = newTopicLimits(kafka.MaxMessageBytes(c.cfg.Kafka.Topics))
	}
	enc, err := NewEncoder(c.cfg, client, func(ctx context.Context, topic string) error {
		return em.ensureTopicName(ctx, topic, "compact")
	})
	if err != nil {
		return nil, err
	}
	em.enc = enc
	return em, nil
}

func registryOpts(r config.SchemaRegistry) []sr.ClientOpt {
	opts := []sr.ClientOpt{sr.URLs(r.URL)}
	if r.Username != "" {
		opts = append(opts, sr.BasicAuth(r.Username, r.Password))
	}
	return opts
}

// setupError marks a failure that retrying cannot fix: the server, the role or the tables need a
// change by a person first.
type setupError struct{ error }

func (e setupError) Unwrap() error { return e.error }

// IsSetupError reports whether err needs a change to the database or the config before a retry
// can succeed (wal_level, privileges, missing tables or keys, a foreign slot).
func IsSetupError(err error) bool {
	var se setupError
	return errors.As(err, &se)
}

// RunWithRetry runs the capture and restarts it from the slot after any failure that a retry can
// fix (database or broker unreachable, connection lost), with exponential backoff and jitter.
// It returns nil when ctx ends, or the first setup error.
func (c *Capture) RunWithRetry(ctx context.Context) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = 500*time.Millisecond, 30*time.Second
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		started := time.Now()
		err := c.Run(ctx)
		switch {
		case err == nil || ctx.Err() != nil:
			return struct{}{}, nil
		case IsSetupError(err):
			return struct{}{}, backoff.Permanent(err)
		}
		c.noteSpillFailure(err, time.Since(started))
		// A record that fails every run would hold the slot forever: after parkAfter runs in a
		// row at one WAL record, the next run parks it in the capture dead-letter topic.
		if at, n, ok := c.guard.failed(err); ok && n >= parkAfter {
			c.log.Error("capture failed at the same WAL record in several runs in a row; the next run parks it in the capture dead-letter topic",
				zap.String("lsn", at.String()), zap.Int("runs", n), zap.String("dlq", c.cfg.CaptureDLQTopic()), zap.Error(err))
		}
		if time.Since(started) > time.Minute {
			bo.Reset() // it ran well for a while: this is a new incident
		}
		return struct{}{}, err
	}, backoff.WithBackOff(bo), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, d time.Duration) {
		c.metrics.Error("capture")
		c.metrics.CaptureFailed(err)
		c.log.Warn("capture failed; restarting from the slot", zap.Error(err), zap.Duration("in", d))
	}))
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// spillFailuresAllowed is how many runs in a row may fail on spill_dir's files before capture
// stops streaming transactions in progress: one failure may be passing (the directory removed
// by a temp-file cleaner is made again by the next run), the next one is not.
const spillFailuresAllowed = 1

// noteSpillFailure counts a run that failed with err after running for ran, and makes the next
// runs read transactions at their commit once spill_dir's files failed too many runs in a row:
// the transaction being streamed would fail the same way on every run. Nothing is lost: each
// run starts again from the slot, where PostgreSQL keeps the transaction until it commits.
func (c *Capture) noteSpillFailure(err error, ran time.Duration) {
	var disk *spillDiskError
	switch {
	case c.spillFailed != "":
		return
	case !errors.As(err, &disk):
		c.spillFailures = 0
		return
	case ran > time.Minute:
		c.spillFailures = 0 // it streamed well for a while: a new incident
	}
	if c.spillFailures++; c.spillFailures <= spillFailuresAllowed {
		c.log.Warn("spill_dir failed; capture tries it again", zap.Error(err))
		return
	}
	c.spillFailed = disk.Error()
	c.metrics.SpillFailed(c.spillFailed)
	c.log.Error("spill_dir failed again: capture now reads large transactions at their commit (protocol 1), "+
		"as PostgreSQL sends them then; fix spill_dir and restart capture to stream them again",
		zap.Int("runs", c.spillFailures), zap.Error(err))
}

// newIncremental returns the re-snapshot machinery with the queue the previous run left.
func (c *Capture) newIncremental(ctx context.Context, s *stream, store *stateStore, kopts []kgo.Opt) (*incremental, error) {
	queue, err := store.loadReSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	sw := topicSweeper{opts: kopts, reg: &c.cfg.Kafka.Registry}
	if f := c.cfg.Kafka.Format; f != codec.FormatJSON && f != codec.FormatDebeziumJSON { // JSON carries no schema ids
		sw.schema = c.cfg.Kafka.OwnSchemaTopic()
	}
	return &incremental{
		s: s, state: queue, save: store.saveReSnapshots, sweeper: sw.sweep,
		connect: func(ctx context.Context) (*pgx.Conn, error) { return c.connect(ctx, false) },
	}, nil
}

// watchRelations starts following the identity of the captured tables.
func (c *Capture) watchRelations(ctx context.Context, cat *catalog, store *stateStore, in *incremental, tables [][2]string, leftOut []string, republished []unpublishedTable) (*relationWatch, error) {
	saved, err := store.loadRelations(ctx)
	if err != nil {
		return nil, err
	}
	w := &relationWatch{c: c, cat: cat, every: c.pg.StatusInterval, save: store.saveRelations, enqueue: in.enqueue}
	if err := w.start(ctx, saved, tables, leftOut, republished); err != nil {
		return nil, fmt.Errorf("check the captured tables: %w", err)
	}
	return w, nil
}
