package model

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// Headers of every record a model publishes: the state key and the row hash of the change (no
// hash on deletes and their tombstones). They let a run rebuild the state from the topic alone.
const (
	HeaderKey    = "backflow.model.key"
	HeaderHash   = "backflow.model.hash"
	HeaderKeyEnc = "backflow.model.keyenc" // the key's encoding (keyEnc)
)

// ErrBusy is returned by Run when another process is running the model.
var ErrBusy = errors.New("another process is running this model")

// Runner runs the pipeline's models. It is safe for concurrent use; runs of one model never
// overlap, in this process or across processes (a PostgreSQL advisory lock).
type Runner struct {
	cfg     *config.Pipeline
	log     *zap.Logger
	metrics *observe.Metrics
	kopts   []kgo.Opt // connection options for readers of the topics
	client  *kgo.Client
	offsets *kafka.OffsetWatch // told every acknowledged record of the model topics (lostRecords)
	admin   *kadm.Client
	enc     *codec.Encoder
	state   string // the capture state topic, where runs are committed

	mu      sync.Mutex
	tables  map[string]*change.Table // last shape of each model: one *Table per shape
	ensured map[string]bool
	// attempts are the last attempt records this runner wrote, by model.
	attempts map[string]attemptRecord
	// beforeCommit, when set, is called after a run's changes are acknowledged and before its
	// state is committed; tests make it fail to stand for a crash there.
	beforeCommit func() error
	// bucketRows, when set, replaces the rows a bucket aims at (see bucket.go); tests make it
	// small to have many buckets.
	bucketRows int64
}

// Opt configures a Runner.
type Opt func(*Runner)

// WithLogger sets the logger (default: none).
func WithLogger(l *zap.Logger) Opt { return func(r *Runner) { r.log = l } }

// WithMetrics records the runs in m.
func WithMetrics(m *observe.Metrics) Opt { return func(r *Runner) { r.metrics = m } }

// NewRunner connects to Kafka; cfg must be validated and name its brokers.
func NewRunner(cfg *config.Pipeline, opts ...Opt) (*Runner, error) {
	r := &Runner{cfg: cfg, log: zap.NewNop(), tables: map[string]*change.Table{}, ensured: map[string]bool{}, attempts: map[string]attemptRecord{},
		offsets: kafka.NewOffsetWatch(),
		state:   cfg.Kafka.CaptureStateTopic()}
	for _, o := range opts {
		o(r)
	}
	base, err := kafka.ClientOpts(cfg.Kafka, r.log)
	if err != nil {
		return nil, err
	}
	r.kopts = base
	popts := append(kafka.ProducerOpts(), kafka.WatchPartitions(observe.PartitionsGrew(r.log, r.metrics, "models")))
	if r.client, err = kgo.NewClient(append(slices.Clone(base), popts...)...); err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	r.admin = kadm.NewClient(r.client)
	r.enc, err = capture.NewEncoder(cfg, r.client, func(ctx context.Context, topic string) error {
		return r.ensure(ctx, topic, config.Topics{Partitions: 1, ReplicationFactor: cfg.Kafka.Topics.ReplicationFactor, CleanupPolicy: "compact"})
	})
	if err != nil {
		r.client.Close()
		return nil, err
	}
	return r, nil
}

// Close closes the Kafka client.
func (r *Runner) Close() { r.client.Close() }

// Result is what a run did.
type Result struct {
	Run     int64            // the run's number (the committed run when nothing changed)
	Rows    int64            // rows in the result
	Changes map[string]int64 // changes published, by op
	Rebuilt bool             // the state was rebuilt from the topic first
}

// Run runs the model named name once: query, diff against the last committed run, publish the
// difference, commit. It returns ErrBusy when another process runs it.
func (r *Runner) Run(ctx context.Context, name string) (Result, error) {
	m, ok := r.cfg.Model(name)
	if !ok {
		return Result{}, fmt.Errorf("no model named %q in the pipeline", name)
	}
	start := time.Now()
	res, err := r.run(ctx, m)
	switch {
	case errors.Is(err, ErrBusy):
		r.metrics.ModelSkipped(name)
		return res, err
	case err != nil:
		r.metrics.ModelFailed(name)
		r.recordAttempt(ctx, m, res, err)
		return res, err
	}
	r.metrics.ModelRun(name, res.Rows, res.Changes, time.Since(start))
	r.recordAttempt(ctx, m, res, nil)
	return res, nil
}

// recordAttempt notes the run's outcome in the state topic for status; failing to is logged
// only, the run itself is done.
// A run that changed nothing, after one that succeeded, is recorded at most every quietAttempts:
// a model refreshed every few seconds would otherwise fill the state topic with records that
// say the same thing.
func (r *Runner) recordAttempt(ctx context.Context, m config.Model, res Result, runErr error) {
	a := attemptRecord{Run: res.Run, At: time.Now().UTC(), Changes: res.Changes, Rows: res.Rows}
	if runErr != nil {
		a.Error = runErr.Error()
	}
	r.mu.Lock()
	prev, ok := r.attempts[m.Name]
	quiet := ok && prev.Error == "" && a.Error == "" && len(a.Changes) == 0 && a.At.Sub(prev.At) < quietAttempts
	if !quiet {
		r.attempts[m.Name] = a
	}
	r.mu.Unlock()
	if quiet {
		return
	}
	if err := writeRecord(context.WithoutCancel(ctx), r.client, r.state, attemptKey(m.Name), a); err != nil {
		r.log.Warn("cannot record the model run for status", zap.String("model", m.Name), zap.Error(err))
	}
}

// quietAttempts is how often a run that changed nothing is recorded for status.
const quietAttempts = time.Minute

func (r *Runner) run(ctx context.Context, m config.Model) (Result, error) {
	conn, err := r.connect(ctx)
	if err != nil {
		return Result{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var locked bool
	lockKey := "backflow model " + r.cfg.Kafka.TopicPrefix + "." + m.Name
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", lockKey).Scan(&locked); err != nil {
		return Result{}, fmt.Errorf("model %s: take its lock: %w", m.Name, err)
	}
	if !locked {
		return Result{}, fmt.Errorf("model %s: %w", m.Name, ErrBusy)
	}
	// Unlocked before the connection closes: the server lets go of a closed session's locks
	// only once its backend has exited, after Close returns, and the next run (the next
	// schedule tick, or a run right after this one) would find the model busy meanwhile.
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtextextended($1, 0))", lockKey) //nolint:errcheck // the close releases it anyway
	topic := r.cfg.ModelTopic(m)
	if err := r.ensureTopics(ctx, topic); err != nil {
		return Result{}, err
	}
	commits, _, err := readRecords(ctx, r.kopts, r.state)
	if err != nil {
		return Result{}, err
	}
	last := commits[m.Name]
	parts := r.checkPartitions(ctx, m, topic, last)
	path := filepath.Join(r.cfg.ModelsDir(), m.Name+".state")
	res := Result{Run: last.Run}
	t0 := time.Now()
	d, err := r.diffWithState(ctx, conn, m, topic, path, last, &res)
	if err != nil {
		return res, err
	}
	defer d.close()
	res.Rows = d.rows
	t2 := time.Now()
	if d.changes.total() == 0 && !res.Rebuilt {
		d.next.abort() // the same result: the state stays as it is
		return res, r.keepPartitions(ctx, m, parts, last)
	}
	res.Run = last.Run + 1
	res.Changes = d.changes.counts()
	if err := r.publish(ctx, m, topic, d, res.Run, last); err != nil {
		return res, err
	}
	t3 := time.Now()
	if err := r.commit(ctx, m, d, res.Run, r.partitionsToKeep(ctx, topic, parts, last)); err != nil {
		return res, err
	}
	r.log.Debug("model run phases", zap.String("model", m.Name), zap.Bool("rebuilt", res.Rebuilt),
		zap.Duration("query_and_diff", t2.Sub(t0)), zap.Duration("publish", t3.Sub(t2)), zap.Duration("commit", time.Since(t3)))
	return res, nil
}

// connect opens a connection with capture's session settings (the text forms the decoder
// reads) and the source's statement timeout.
func (r *Runner) connect(ctx context.Context) (*pgx.Conn, error) {
	pg := r.cfg.Source.Postgres
	pc, err := pgx.ParseConfig(pg.URL)
	if err != nil {
		return nil, fmt.Errorf("source.postgres.url: %w", err)
	}
	for k, v := range capture.SessionParams() {
		pc.RuntimeParams[k] = v
	}
	pc.RuntimeParams["application_name"] = "backflow model"
	if pg.StatementTimeout > 0 {
		pc.RuntimeParams["statement_timeout"] = strconv.FormatInt(pg.StatementTimeout.Milliseconds(), 10)
	}
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to warehouse %s: %w", config.RedactURL(pg.URL), err)
	}
	return conn, nil
}

func (r *Runner) ensureTopics(ctx context.Context, topic string) error {
	if err := r.ensure(ctx, r.state, config.Topics{Partitions: 1, ReplicationFactor: -1, CleanupPolicy: "compact"}); err != nil {
		return err
	}
	return r.ensure(ctx, topic, r.cfg.Kafka.Topics)
}

func (r *Runner) ensure(ctx context.Context, topic string, t config.Topics) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ensured[topic] {
		return nil
	}
	if err := kafka.EnsureTopics(ctx, r.admin, []string{topic}, t, nil); err != nil {
		return err
	}
	r.ensured[topic] = true
	return nil
}

// diffWithState diffs the model's result against the last committed run. The state file is
// that run's when the commit record is committed and names the file's checksum, which the merge
// computes as it reads the file. Otherwise (no file, another machine ran the model since, a run
// stopped while publishing, a damaged file) the state is rebuilt from the model's topic, which
// holds every change sinks have seen, so no delete is missed, and the result diffed again.
func (r *Runner) diffWithState(ctx context.Context, conn *pgx.Conn, m config.Model, topic, path string, last commitRecord, res *Result) (*diffRun, error) {
	if _, err := os.Stat(path); last.Committed && err == nil {
		d, err := r.diff(ctx, conn, m, path, false)
		var se stateError
		switch {
		case errors.As(err, &se):
		case err != nil:
			return nil, err
		case d.oldSum == last.Checksum && d.oldRows == last.Rows:
			return d, nil
		default:
			d.discard()
		}
		r.log.Info("model state is not the last committed run's; rebuilding it from the topic", zap.String("model", m.Name),
			zap.String("path", path), zap.Int64("run", last.Run), zap.NamedError("reason", err))
	}
	var err error
	if res.Rebuilt, err = r.rebuildState(ctx, m, topic, path, last); err != nil {
		return nil, err
	}
	first := last.Run == 0 && r.stateEmpty(path)
	return r.diff(ctx, conn, m, path, first)
}

// stateError is a state file that cannot be read: it is rebuilt.
type stateError struct{ error }

func (e stateError) Unwrap() error { return e.error }

// rebuildState rebuilds the state from the topic.
func (r *Runner) rebuildState(ctx context.Context, m config.Model, topic, path string, last commitRecord) (bool, error) {
	if !last.Committed && last.Run > 0 {
		r.log.Warn("the model's last run stopped while publishing; rebuilding its state from the topic", zap.String("model", m.Name),
			zap.Int64("run", last.Run))
	}
	rows, foreign, err := rebuild(ctx, r.kopts, topic, path, len(m.Key))
	if err != nil {
		return false, fmt.Errorf("model %s: rebuild its state from %s: %w", m.Name, topic, err)
	}
	if foreign > 0 {
		r.log.Warn("records without the model headers in the model's topic were ignored", zap.String("model", m.Name),
			zap.String("topic", topic), zap.Int64("records", foreign))
	}
	r.log.Info("model state rebuilt", zap.String("model", m.Name), zap.Int64("rows", rows))
	return true, nil
}

func (r *Runner) stateEmpty(path string) bool {
	sr, err := openState(path)
	if err != nil {
		return false
	}
	defer sr.close()
	return sr.done
}

// diffRun is a run's result compared with the state: the changes spilled and the next state.
type diffRun struct {
	res     *result
	changes *spill
	next    *stateWriter
	rows    int64
	lsn     pglogrepl.LSN
	at      time.Time
	first   bool
	// oldSum and oldRows are the checksum and entries of the state file diffed against.
	oldSum  string
	oldRows int64
}

func (d *diffRun) close() {
	d.changes.close()
}

// discard drops a diff that will not be published.
func (d *diffRun) discard() {
	d.next.abort()
	d.changes.close()
}

// diff runs the model's query in key order and merges it with the state: a key only in the
// state is a delete, a key only in the result an insert, a key in both with another hash an
// update. Rows are hashed from their text without being decoded; only changes are kept, on disk.
func (r *Runner) diff(ctx context.Context, conn *pgx.Conn, m config.Model, path string, first bool) (*diffRun, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("model %s: begin: %w", m.Name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read only
	// Room in memory for the query's sorts and hashes, and for the sort by an integer key,
	// spares PostgreSQL a spill to disk.
	if _, err := tx.Exec(ctx, "SET LOCAL work_mem = '256MB'"); err != nil {
		return nil, fmt.Errorf("model %s: set work_mem: %w", m.Name, err)
	}
	res, err := describe(ctx, conn, capture.NewTypeMapper(conn), m)
	if err != nil {
		return nil, err
	}
	res.table = r.sameTable(m.Name, res.table)
	d := &diffRun{res: res, first: first, at: time.Now()}
	var lsn string
	if err := tx.QueryRow(ctx, "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text").Scan(&lsn); err != nil {
		return nil, fmt.Errorf("model %s: read the WAL position: %w", m.Name, err)
	}
	if d.lsn, err = pglogrepl.ParseLSN(lsn); err != nil {
		return nil, fmt.Errorf("model %s: WAL position %q: %w", m.Name, lsn, err)
	}
	if d.changes, err = newSpill(r.cfg.ModelsDir()); err != nil {
		return nil, err
	}
	if d.next, err = newStateWriter(path, res.enc); err != nil {
		d.changes.close()
		return nil, err
	}
	if err := r.merge(ctx, tx, m, path, d); err != nil {
		d.next.abort()
		d.changes.close()
		return nil, err
	}
	return d, nil
}

// sameTable returns the model's previous *change.Table when t has the same shape, so that the
// encoder's per-table work is done once per shape.
func (r *Runner) sameTable(name string, t *change.Table) *change.Table {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.tables[name]; ok && slices.Equal(old.Columns, t.Columns) {
		return old
	}
	r.tables[name] = t
	return t
}

func (r *Runner) merge(ctx context.Context, tx pgx.Tx, m config.Model, path string, d *diffRun) error {
	old, err := openState(path)
	if err != nil {
		return stateError{err}
	}
	hashed := stateHashed(d.res.enc)
	converted := false
	if !old.done && (old.enc != d.res.enc || old.hashed != hashed) {
		// The key's types changed between integer and text, it was rebuilt, or an earlier
		// version kept it in key order: sort it anew.
		old.close()
		if d.oldSum, d.oldRows, err = fileChecksum(path); err != nil {
			return stateError{err}
		}
		conv := path + ".converted"
		if err := convertState(path, conv, d.res.enc); err != nil {
			return fmt.Errorf("model %s: %w", m.Name, err)
		}
		defer os.Remove(conv)
		if old, err = openState(conv); err != nil {
			return stateError{err}
		}
		converted = true
	}
	defer old.close()
	mg := &merger{d: d, old: old, hashed: hashed, insert: change.OpCreate}
	if d.first {
		mg.insert = change.OpRead
	}
	if hashed {
		err = r.mergeBuckets(ctx, tx, m, path, mg)
	} else {
		err = mergeOrdered(ctx, tx, m, mg)
	}
	if err != nil {
		return err
	}
	if err := mg.finish(); err != nil {
		return err
	}
	if !converted {
		d.oldSum, d.oldRows = old.checksum(), old.rows
	}
	return nil
}

// mergeOrdered merges the result, read in key order, with a key-ordered state as both stream.
func mergeOrdered(ctx context.Context, tx pgx.Tx, m config.Model, mg *merger) error {
	d := mg.d
	rows, err := tx.Query(ctx, d.res.sql)
	if err != nil {
		return queryError{fmt.Errorf("model %s: query: %w", m.Name, err)}
	}
	defer rows.Close()
	h := xxhash.New()
	var key, prev []byte
	for rows.Next() {
		raw := rows.RawValues()
		if key, err = d.res.rowKey(key, raw, m.Name); err != nil {
			return err
		}
		if d.rows > 0 {
			if c := bytes.Compare(key, prev); c == 0 {
				return keyError{fmt.Errorf("model %s: duplicate key %s in the result: the key must identify one row", m.Name, d.res.keyText(raw))}
			} else if c < 0 {
				return fmt.Errorf("model %s: the result is not in key order at %s (collation?)", m.Name, d.res.keyText(raw))
			}
		}
		prev = append(prev[:0], key...)
		d.rows++
		if err := mg.row(0, key, d.res.rowHash(h, raw), raw); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return queryError{fmt.Errorf("model %s: query: %w", m.Name, err)}
	}
	return nil
}

// mergeBuckets reads the result unordered into buckets by key hash, then merges each bucket,
// sorted in memory, with the hash-ordered state: the buckets in order are in state order.
func (r *Runner) mergeBuckets(ctx context.Context, tx pgx.Tx, m config.Model, path string, mg *merger) error {
	d := mg.d
	estimate, err := estimateRows(ctx, tx, d.res.sql)
	if err != nil {
		return queryError{fmt.Errorf("model %s: query: %w", m.Name, err)}
	}
	if fi, err := os.Stat(path); err == nil {
		estimate = max(estimate, fi.Size()/16) // an entry is its key and 9 bytes or more
	}
	per := r.bucketRows
	if per == 0 {
		per = bucketRows
	}
	bs, err := newBuckets(r.cfg.ModelsDir(), bucketCount(estimate, per))
	if err != nil {
		return err
	}
	defer bs.close()
	tq := time.Now()
	if err := readBuckets(ctx, tx, m, d, bs); err != nil {
		return err
	}
	tq2 := time.Now()
	defer func() {
		r.log.Debug("DBG buckets", zap.Duration("query", tq2.Sub(tq)), zap.Duration("merge", time.Since(tq2)), zap.Int("n", len(bs.files)))
	}()
	stop := make(chan struct{})
	sorted, done := bs.sorted(stop)
	defer func() { close(stop); <-done }() // before bs.close
	var cols [][]byte
	for bk := range sorted {
		if bk.err != nil {
			return bk.err
		}
		if bk.dup != nil {
			return keyError{fmt.Errorf("model %s: duplicate key %s in the result: the key must identify one row", m.Name, d.res.stateKeyText(bk.dup))}
		}
		for _, row := range bk.rows {
			key, hash := bk.key(row), bk.hash(row)
			found, oldHash, err := mg.seek(row.kh, key)
			if err != nil {
				return err
			}
			cols = cols[:0]
			if !found || oldHash != hash { // only changes need the columns
				if cols, err = bk.columns(row, cols); err != nil {
					return err
				}
			}
			if err := mg.emit(found, oldHash, key, hash, cols); err != nil {
				return err
			}
		}
	}
	return nil
}

// readBuckets runs the query, unordered, into the buckets.
func readBuckets(ctx context.Context, tx pgx.Tx, m config.Model, d *diffRun, bs *buckets) error {
	rows, err := tx.Query(ctx, d.res.sql)
	if err != nil {
		return queryError{fmt.Errorf("model %s: query: %w", m.Name, err)}
	}
	defer rows.Close()
	h := xxhash.New()
	var key []byte
	for rows.Next() {
		raw := rows.RawValues()
		if key, err = d.res.rowKey(key, raw, m.Name); err != nil {
			return err
		}
		d.rows++
		bs.add(keyHash(key), key, d.res.rowHash(h, raw), raw)
	}
	if err := rows.Err(); err != nil {
		return queryError{fmt.Errorf("model %s: query: %w", m.Name, err)}
	}
	return nil
}

// estimateRows is the planner's estimate of the rows of a query, which sizes its buckets.
func estimateRows(ctx context.Context, tx pgx.Tx, sql string) (int64, error) {
	var plan []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		}
	}
	var text string
	if err := tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+sql).Scan(&text); err != nil {
		return 0, fmt.Errorf("estimate its rows: %w", err)
	}
	if err := json.Unmarshal([]byte(text), &plan); err != nil || len(plan) == 0 {
		return 0, fmt.Errorf("estimate its rows: unexpected plan %.200q", text)
	}
	return int64(plan[0].Plan.Rows), nil
}

// merger merges result rows, coming in state order, with the old state: a key only in the
// state is a delete, a key only in the result an insert, a key in both with another hash an
// update. It writes the changes and the next state.
type merger struct {
	d      *diffRun
	old    *stateReader
	hashed bool
	insert change.Op
}

// row merges the next result row; kh is its key's hash in a hash-ordered merge, 0 otherwise.
func (mg *merger) row(kh uint64, key []byte, hash uint64, raw [][]byte) error {
	found, oldHash, err := mg.seek(kh, key)
	if err != nil {
		return err
	}
	return mg.emit(found, oldHash, key, hash, raw)
}

// seek moves the state to key, deleting the keys before it, and reports whether the state has
// the key, and with which hash.
func (mg *merger) seek(kh uint64, key []byte) (found bool, oldHash uint64, err error) {
	old := mg.old
	for !old.done && (old.cur.kh < kh || old.cur.kh == kh && bytes.Compare(old.cur.key, key) < 0) {
		mg.d.changes.add(change.OpDelete, old.cur.key, 0, nil)
		if err := old.next(); err != nil {
			return false, 0, stateError{err}
		}
	}
	if old.done || !bytes.Equal(old.cur.key, key) {
		return false, 0, nil
	}
	oldHash = old.cur.hash
	if err := old.next(); err != nil {
		return false, 0, stateError{err}
	}
	return true, oldHash, nil
}

// emit writes the change of a result row, if any, and its state entry; raw is only read for a
// change (nil will do for a row found with the same hash).
func (mg *merger) emit(found bool, oldHash uint64, key []byte, hash uint64, raw [][]byte) error {
	switch {
	case !found:
		mg.d.changes.add(mg.insert, key, hash, raw)
	case oldHash != hash:
		mg.d.changes.add(change.OpUpdate, key, hash, raw)
	}
	return mg.d.next.add(key, hash)
}

// finish deletes the keys of the state after the result's last.
func (mg *merger) finish() error {
	for !mg.old.done {
		mg.d.changes.add(change.OpDelete, mg.old.cur.key, 0, nil)
		if err := mg.old.next(); err != nil {
			return stateError{err}
		}
	}
	return nil
}

// publish sends the spilled changes and waits until Kafka has acknowledged all of them. The
// commit record is marked uncommitted first: a crash from here on makes the next run rebuild
// its state from the topic.
func (r *Runner) publish(ctx context.Context, m config.Model, topic string, d *diffRun, run int64, last commitRecord) error {
	mark := last
	mark.Run, mark.Committed, mark.At = run, false, time.Now().UTC()
	if err := writeRecord(ctx, r.client, r.state, commitKey(m.Name), mark); err != nil {
		return err
	}
	dec := capture.NewTextDecoder()
	var mu sync.Mutex
	var produceErr error
	done := func(rec *kgo.Record, err error) {
		if err == nil {
			r.offsets.Ack(rec.Topic, rec.Partition, rec.Offset)
			return
		}
		mu.Lock()
		if produceErr == nil {
			produceErr = fmt.Errorf("model %s: publish to %s: %w", m.Name, rec.Topic, err)
		}
		mu.Unlock()
	}
	src := change.Source{Connector: "postgresql", Name: r.cfg.Kafka.TopicPrefix, DB: r.dbName(), Schema: config.ModelSchema,
		Table: m.Name, TxID: run, LSN: int64(d.lsn), TsMs: d.at.UnixMilli(), Snapshot: "false"}
	if d.first {
		src.Snapshot = "true"
	}
	err := d.changes.each(func(c spilled) error {
		ev, err := r.event(dec, d.res, c, src)
		if err != nil {
			return fmt.Errorf("model %s: row %s: %w", m.Name, d.res.stateKeyText(c.key), err)
		}
		key, val, err := r.enc.Encode(ctx, topic, ev)
		if err != nil {
			return fmt.Errorf("model %s: encode %s of %s: %w", m.Name, ev.Op, d.res.stateKeyText(c.key), err)
		}
		headers := []kgo.RecordHeader{{Key: HeaderKey, Value: c.key}, {Key: HeaderKeyEnc, Value: []byte(d.res.enc)}}
		if c.op != change.OpDelete {
			var hb [8]byte
			putHash(hb[:], c.hash)
			headers = append(headers, kgo.RecordHeader{Key: HeaderHash, Value: hb[:]})
		}
		r.client.Produce(ctx, &kgo.Record{Topic: topic, Key: key, Value: val, Headers: headers}, done)
		if c.op == change.OpDelete { // a tombstone, so that compaction keeps exactly the live rows
			r.client.Produce(ctx, &kgo.Record{Topic: topic, Key: key, Headers: headers}, done)
		}
		return nil
	})
	if ferr := r.client.Flush(ctx); err == nil && ferr != nil {
		err = fmt.Errorf("model %s: wait for Kafka: %w", m.Name, ferr)
	}
	if err != nil {
		return err
	}
	if produceErr != nil {
		return produceErr
	}
	return r.lostRecords(m, topic)
}

// lostRecords fails the run when Kafka lost records of the model's topic after acknowledging
// them (it handed their offsets out again: kafka.OffsetWatch), in this run or an earlier one.
// The run is then not committed, and the next one rebuilds the state from the topic, which
// holds what sinks have seen: its diff writes again whatever the topic lacks.
func (r *Runner) lostRecords(m config.Model, topic string) error {
	parts := r.offsets.TakeTopic(topic) // another model's run may be publishing meanwhile
	if len(parts) == 0 {
		return nil
	}
	for range parts {
		r.metrics.KafkaLost(topic)
	}
	return fmt.Errorf("model %s: Kafka lost records of %s, partitions %v, after acknowledging them (it handed their offsets out "+
		"again: an unclean leader election or a truncated log); the next run rebuilds the model's state from the topic and "+
		"writes again what it lacks", m.Name, topic, parts)
}

// event builds the change event of a spilled change. Deletes carry the key columns in before,
// as captured tables without REPLICA IDENTITY FULL do; updates carry no before.
func (r *Runner) event(dec *capture.TextDecoder, res *result, c spilled, src change.Source) (*change.Event, error) {
	ev := &change.Event{Op: c.op, Table: res.table, Source: src, TsMs: time.Now().UnixMilli()}
	var err error
	if c.op == change.OpDelete {
		ev.Before, err = res.decodeKey(dec, c.key)
		return ev, err
	}
	ev.After, err = res.decodeRow(dec, c.raw)
	return ev, err
}

// commit makes the new state the state, then records the run as committed, with the model
// topic's partition count to check the next run against.
func (r *Runner) commit(ctx context.Context, m config.Model, d *diffRun, run int64, partitions int32) error {
	if r.beforeCommit != nil {
		if err := r.beforeCommit(); err != nil {
			d.next.abort()
			return err
		}
	}
	sum := d.next.checksum()
	if err := d.next.commit(); err != nil {
		return fmt.Errorf("model %s: %w", m.Name, err)
	}
	rec := commitRecord{Run: run, Committed: true, Rows: d.rows, Checksum: sum, At: time.Now().UTC(), Partitions: partitions}
	return writeRecord(context.WithoutCancel(ctx), r.client, r.state, commitKey(m.Name), rec)
}

// partitions returns how many partitions topic has, 0 when the broker cannot say (a warning).
func (r *Runner) partitions(ctx context.Context, topic string) int32 {
	n, err := kafka.TopicPartitions(ctx, r.admin, topic)
	if err != nil {
		r.log.Warn("cannot read the partitions of the model's topic; a later run checks them for partitions added meanwhile",
			zap.String("topic", topic), zap.Error(err))
		return 0
	}
	return n
}

// checkPartitions reports partitions added to the model's topic since the last commit, while
// no run wrote to it (a run's producer sees only those added while it runs), and returns how
// many it has.
func (r *Runner) checkPartitions(ctx context.Context, m config.Model, topic string, last commitRecord) int32 {
	n := r.partitions(ctx, topic)
	switch {
	case last.Partitions == 0:
	case n > last.Partitions:
		observe.PartitionsGrewWhileAway(r.log, r.metrics, "model "+m.Name, topic, int(last.Partitions), int(n))
	case n > 0 && n < last.Partitions:
		r.log.Warn("the model's topic has fewer partitions than at its last run: it was deleted and created again, "+
			"and the sinks of it may have lost their place; check them",
			zap.String("topic", topic), zap.Int32("had", last.Partitions), zap.Int32("has", n))
	}
	return n
}

// partitionsToKeep is the partition count a commit keeps: the topic's now (its producer saw any
// growth since parts, the count checkPartitions read), or the last commit's when the run could
// not read it at its start, so that the next run checks again: a growth is reported twice
// rather than never.
func (r *Runner) partitionsToKeep(ctx context.Context, topic string, parts int32, last commitRecord) int32 {
	if parts == 0 {
		return last.Partitions
	}
	if n := r.partitions(ctx, topic); n > 0 {
		return n
	}
	return parts
}

// keepPartitions, after a run that changed nothing, records the topic's partition count n in
// the last commit when it changed: a growth is reported once, not at every run until one
// commits.
func (r *Runner) keepPartitions(ctx context.Context, m config.Model, n int32, last commitRecord) error {
	if n == 0 || n == last.Partitions || !last.Committed {
		return nil
	}
	last.Partitions = n
	return writeRecord(context.WithoutCancel(ctx), r.client, r.state, commitKey(m.Name), last)
}

func (r *Runner) dbName() string {
	pc, err := pgx.ParseConfig(r.cfg.Source.Postgres.URL)
	if err != nil {
		return ""
	}
	return pc.Database
}
