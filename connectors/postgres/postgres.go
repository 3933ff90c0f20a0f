// Package postgres is the PostgreSQL target connector: it upserts and deletes the rows of one
// table and stores each partition's next offset in the same transaction, which makes the effect
// in the target exactly-once.
//
// Each batch is one transaction, sent as one pipeline (one round trip once its statements are
// prepared): per run of records between truncates, one DELETE … WHERE (key) IN (SELECT … FROM
// unnest(…)) for the deletes and one INSERT … SELECT … FROM unnest(…) ON CONFLICT (key) DO UPDATE
// per set of present fields for the upserts, then the offset upsert, after a check that the
// table is still the one read (a table created again voids the stored offsets: identity.go). Every value travels as text
// in a text[] parameter and is cast in SQL to its column's type, so that numeric stays exact and
// every type PostgreSQL can read from text works, domains and enums included. Fields that a
// record lacks (unchanged TOAST values) are left out of both the INSERT and the SET, so the
// target keeps them.
//
// A batch whose records all created rows in the source (op c, or r from a snapshot), as in a
// backfill or an insert-heavy stream, first tries COPY of the same text values in a transaction
// with the offset, falling back to the upsert when a key is already there (see copyInserts).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// Connector applies batches to one PostgreSQL table. It is safe for concurrent use by the
// workers of several partitions.
type Connector struct {
	cfg  *settings
	log  *zap.Logger
	pool *pgxpool.Pool
	url  string // redacted, for messages

	offIdent  string
	offUpsert string
	offFenced string // offUpsert when the fence holds (see offsetsFencedSQL)
	offSelect string
	// offIdentity and offRewind read a sink name's table row and set its offsets back (see
	// verifyTable); verified holds, by sink name and table, the oid its offsets were checked against.
	offIdentity, offRewind string
	verified               sync.Map
	target                 atomic.Pointer[target]
	stale                  atomic.Bool // the catalog may have changed: re-read it before the next batch
	reloadMu               sync.Mutex
	copyGate               copyGate
	// batches written by COPY, and COPY tries that fell back to the upsert
	copies, copyFallbacks atomic.Int64
	layouts               sync.Map     // *change.Table -> *rowLayout, for RowBuffer
	rowBufHint            atomic.Int64 // the largest RowBuffer so far, in bytes
}

var (
	_ sink.Factory     = New
	_ sink.Connector   = (*Connector)(nil)
	_ sink.OffsetStore = (*Connector)(nil)
)

// New configures and opens a postgres connector (settings: see Descriptor): it connects, reads
// the target table from the catalog and creates the offsets table when it is missing.
// Configuration errors name their key (with.url, key[0], …); a target that cannot be reached
// gives an error that sink.IsRetryable reports.
func New(ctx context.Context, p sink.Params) (sink.Connector, error) {
	return Descriptor().Factory()(ctx, p)
}

// open connects a configured sink to its target.
func open(ctx context.Context, cfg *settings, p sink.Params) (sink.Connector, error) {
	log := p.Logger()
	redacted := config.RedactURL(cfg.url)
	pcfg := cfg.pool.Copy() // open may be called again on the same configuration
	pcfg.MaxConns = cfg.maxConns
	rp := pcfg.ConnConfig.RuntimeParams
	setDefault := func(name, value string) {
		for k := range rp {
			if strings.EqualFold(k, name) {
				return // the URL sets it
			}
		}
		rp[name] = value
	}
	setDefault("application_name", "backflow sink "+p.Sink)
	setDefault("TimeZone", "UTC") // a timestamptz text without an offset is UTC, as Records are
	afterConnect := pcfg.AfterConnect
	pcfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		if afterConnect != nil {
			if err := afterConnect(ctx, conn); err != nil {
				return err
			}
		}
		return registerTextColumn(ctx, conn)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("with.url: %s: %w", redacted, err)
	}
	c := &Connector{
		cfg:      cfg,
		log:      log.With(zap.String("table", cfg.schema+"."+cfg.table)),
		pool:     pool,
		url:      redacted,
		offIdent: quoteQualified(cfg.offSchema, cfg.offTable),
	}
	c.offUpsert = offsetsUpsertSQL(c.offIdent)
	c.offFenced = offsetsFencedSQL(c.offIdent)
	c.offSelect = offsetsSelectSQL(c.offIdent)
	c.offIdentity, c.offRewind = offsetsIdentitySQL(c.offIdent), offsetsRewindSQL(c.offIdent)
	if err := c.start(ctx); err != nil {
		pool.Close()
		var ce *configError
		if errors.As(err, &ce) {
			return nil, err
		}
		err = fmt.Errorf("postgres target %s: %w", redacted, err)
		if isRetryable(err) {
			return nil, sink.Retryable(err)
		}
		return nil, err
	}
	c.log.Info("postgres sink ready", zap.String("url", redacted),
		zap.String("offsets_table", cfg.offSchema+"."+cfg.offTable), zap.Bool("auto_create", cfg.autoCreate),
		zap.Bool("table_exists", c.target.Load().exists))
	return c, nil
}

func (c *Connector) start(ctx context.Context) error {
	t, err := readTarget(ctx, c.pool, c.cfg.schema, c.cfg.table, c.cfg.key, c.cfg.softDelete, c.cfg.autoCreate)
	if err == nil {
		err = t.resolveVersion(c.cfg.version)
	}
	if err != nil {
		return err
	}
	if !t.exists {
		if err := c.ensureSchema(ctx); err != nil {
			return err
		}
	}
	if err := ensureOffsetsTable(ctx, c); err != nil {
		return err
	}
	c.target.Store(t)
	return nil
}

// ensureSchema creates the target's schema for auto_create when it is missing.
func (c *Connector) ensureSchema(ctx context.Context) error {
	var exists bool
	err := c.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1)`, c.cfg.schema).Scan(&exists)
	if err != nil || exists {
		return err
	}
	ddl := "CREATE SCHEMA IF NOT EXISTS " + pgx.Identifier{c.cfg.schema}.Sanitize()
	if err := runDDL(ctx, c.pool, "schema "+c.cfg.schema, ddl); err != nil {
		return fmt.Errorf("auto_create: create schema %s: %w", c.cfg.schema, err)
	}
	c.log.Info("created schema", zap.String("schema", c.cfg.schema))
	return nil
}

// reload re-reads the target table (and makes sure the offsets table is still there).
func (c *Connector) reload(ctx context.Context, seen *target) (*target, error) {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	if cur := c.target.Load(); cur != seen && !c.stale.Load() {
		return cur, nil // another worker reloaded meanwhile
	}
	c.stale.Store(false)
	t, err := readTarget(ctx, c.pool, c.cfg.schema, c.cfg.table, c.cfg.key, c.cfg.softDelete, c.cfg.autoCreate)
	if err == nil {
		err = t.resolveVersion(c.cfg.version)
	}
	if err == nil {
		err = ensureOffsetsTable(ctx, c)
	}
	if err != nil {
		c.stale.Store(true)
		return nil, err
	}
	c.target.Store(t)
	return t, nil
}

// Apply writes a batch and its next offset in one transaction.
func (c *Connector) Apply(ctx context.Context, b *sink.Batch) error {
	err := c.apply(ctx, b)
	c.leaveStandby(err)
	return err
}

// leaveStandby closes the pool's connections when err says the server is read-only: after a
// failover the old primary comes back as a standby, and connections made to it before stay
// there, so every retry would fail the same way for as long as the pool keeps them (an hour).
// Fresh connections resolve the target's address again, and find the new primary.
func (c *Connector) leaveStandby(err error) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == readOnlyTransaction {
		c.log.Warn("the target is read-only (a standby, after a failover?): closing the connections to it, so that retries connect afresh",
			zap.String("table", c.cfg.schema+"."+c.cfg.table))
		c.pool.Reset()
	}
}

// readOnlyTransaction is SQLSTATE read_only_sql_transaction.
const readOnlyTransaction = "25006"

func (c *Connector) apply(ctx context.Context, b *sink.Batch) error {
	if b == nil {
		return nil
	}
	t := c.target.Load()
	if c.stale.Load() {
		var err error
		if t, err = c.reload(ctx, t); err != nil {
			return c.batchError(b, "read table", err)
		}
	}
	var p *plan
	for attempt := 0; ; attempt++ {
		var err error
		if p, err = t.plan(b); err != nil {
			return err
		}
		if len(p.unknown) == 0 {
			break
		}
		if attempt > 0 {
			slices.Sort(p.unknown)
			err := fmt.Errorf("field(s) %s of the mapping are not writable columns of table %s (columns: %s); add them to the table, or change the sink's map",
				strings.Join(p.unknown, ", "), t.qualifiedName(), t.columnNames())
			if !t.exists {
				err = fmt.Errorf("table %s does not exist", t.qualifiedName())
			}
			c.log.Warn("batch waits for the target table", zap.Error(err))
			return sink.Retryable(err)
		}
		if c.cfg.autoCreate {
			if err := c.evolve(ctx, t, b, p.unknown); err != nil {
				return err
			}
		}
		if t, err = c.reload(ctx, t); err != nil {
			return c.batchError(b, "read table", err)
		}
	}
	return c.exec(ctx, t, b, p)
}

// evolve creates the table (auto_create) from the batch, or adds the columns it lacks.
func (c *Connector) evolve(ctx context.Context, t *target, b *sink.Batch, unknown []string) error {
	var ddl string
	if !t.exists {
		cols := inferColumns(b.Records, c.cfg.key, func(string) bool { return false })
		defs := make([]string, 0, len(cols)+1)
		for _, col := range cols {
			defs = append(defs, pgx.Identifier{col.name}.Sanitize()+" "+col.typ)
		}
		for _, k := range c.cfg.key {
			if !slices.ContainsFunc(cols, func(nc newColumn) bool { return nc.name == k }) {
				return fmt.Errorf("auto_create: the batch's upserts have no key field %q to create table %s with", k, t.qualifiedName())
			}
		}
		defs = append(defs, "PRIMARY KEY ("+identList(c.cfg.key)+")")
		ddl = "CREATE TABLE IF NOT EXISTS " + t.ident + " (\n  " + strings.Join(defs, ",\n  ") + ")"
	} else {
		cols := inferColumns(b.Records, c.cfg.key, func(name string) bool { return !slices.Contains(unknown, name) })
		if len(cols) == 0 {
			return nil
		}
		adds := make([]string, len(cols))
		for i, col := range cols {
			adds[i] = "ADD COLUMN IF NOT EXISTS " + pgx.Identifier{col.name}.Sanitize() + " " + col.typ
		}
		ddl = "ALTER TABLE " + t.ident + " " + strings.Join(adds, ", ")
	}
	if err := runDDL(ctx, c.pool, "table "+t.qualifiedName(), ddl); err != nil {
		return c.batchError(b, "auto_create", err)
	}
	c.log.Info("auto_create", zap.String("ddl", ddl))
	return nil
}

// exec sends the batch's statements and the offset upsert as one pipeline without BEGIN: the
// extended protocol runs everything up to the closing Sync as one implicit transaction, which
// commits at the Sync when every statement succeeded and rolls back otherwise.
func (c *Connector) exec(ctx context.Context, t *target, b *sink.Batch, p *plan) error {
	sinkName := b.Sink
	if sinkName == "" {
		sinkName = c.cfg.sinkName
	}
	if t.exists {
		if err := c.verifyTable(ctx, sinkName, t, b); err != nil {
			return err
		}
	}
	if c.copyable(p) && c.copyInserts(ctx, t, b, &p.steps[0], sinkName) {
		return nil
	}
	// roles[i] says what queued statement i is for stepError: a step's index, len(p.steps) for
	// the offset, or checkRole for a table check. The table is checked first (a table dropped
	// fails the check, not the statements) and again after the statements, under the lock they
	// took: PostgreSQL looks a name up again once it has waited for its lock, so a table swapped
	// by renames meanwhile would take the statements after a check that found the old one.
	batch := &pgx.Batch{}
	var roles []int
	check := func() {
		if t.exists {
			sql, args := checkStatement(t)
			batch.Queue(sql, args...)
			roles = append(roles, checkRole)
		}
	}
	check()
	for i, s := range p.steps {
		batch.Queue(s.sql, s.args...)
		roles = append(roles, i)
	}
	check()
	c.queueOffset(batch, sinkName, b)
	roles = append(roles, len(p.steps))
	br := c.pool.SendBatch(ctx, batch)
	for _, role := range roles {
		if _, err := br.Exec(); err != nil {
			br.Close()
			if role == checkRole {
				return c.tableChanged(t, b, err)
			}
			return c.stepError(ctx, t, b, p, role, err)
		}
	}
	if err := br.Close(); err != nil {
		return c.stepError(ctx, t, b, p, -1, err)
	}
	return nil
}

// checkRole marks a table check among a batch's statements (exec).
const checkRole = -2

// stepError classifies the failure of statement i of a batch (-1: at commit).
func (c *Connector) stepError(ctx context.Context, t *target, b *sink.Batch, p *plan, i int, err error) error {
	what := "commit batch to " + t.qualifiedName()
	var st *step
	switch {
	case i >= 0 && i < len(p.steps):
		st = &p.steps[i]
		what = st.what + " " + t.qualifiedName()
		if st.what == "truncate" {
			what = "truncate " + t.qualifiedName()
		}
	case i == len(p.steps):
		what = "store offset in " + c.cfg.offSchema + "." + c.cfg.offTable
		if fencedErr(err) {
			return c.fenced(b)
		}
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || isRetryable(err) {
		return c.batchError(b, what, err)
	}
	if strings.HasPrefix(pe.Code, "42") {
		c.stale.Store(true) // a type or column may have changed: read the catalog again
	}
	column := ""
	if pe.ColumnName == "" && strings.HasPrefix(pe.Code, "22") && st != nil && ctx.Err() == nil {
		column = c.probe(ctx, t, st, pe.Code)
	}
	return &pgError{msg: what + ": " + describe(pe, column), err: pe}
}

// batchError wraps a failure that is not the records' fault as retryable (connection, server
// state) or returns the server's complaint.
func (c *Connector) batchError(b *sink.Batch, what string, err error) error {
	var pe *pgconn.PgError
	msg := fmt.Sprintf("%s (%s/%d): %v", what, b.Topic, b.Partition, err)
	if errors.As(err, &pe) {
		if strings.HasPrefix(pe.Code, "42") || isCatalogRace(pe) {
			c.stale.Store(true)
		}
		msg = fmt.Sprintf("%s (%s/%d): %s", what, b.Topic, b.Partition, describe(pe, ""))
	}
	wrapped := &wrapError{msg: msg, err: err}
	if isRetryable(err) {
		return sink.Retryable(wrapped)
	}
	return wrapped
}

type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string { return e.msg }
func (e *wrapError) Unwrap() error { return e.err }

// probe finds the column whose values PostgreSQL cannot take when a data exception does not name
// it (as with "invalid input syntax for type integer" or "value too long for type character
// varying(3)"): it checks each parameter of the failed statement on its own, outside the batch's
// transaction. It returns "" when none fails alone.
func (c *Connector) probe(ctx context.Context, t *target, st *step, code string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for i, ci := range st.cols {
		if ci < 0 || i >= len(st.args) {
			continue
		}
		col := &t.cols[ci]
		var sql string
		switch {
		case code == "22001" && strings.Contains(col.typ.name, "("):
			// an explicit cast to varchar(n) truncates silently where the assignment fails:
			// compare lengths (trailing spaces may be cut by the assignment too)
			sql = "SELECT count(*) FROM unnest($1::text[]) AS u(v) WHERE char_length(rtrim(u.v, ' ')) > char_length(u.v::" + col.typ.name + ")"
		case col.typ.cast != "":
			sql = "SELECT count(*) FROM unnest($1::text[]) AS u(v) WHERE u.v IS NOT NULL AND (u.v::" + col.typ.name + ") IS NULL"
		default:
			continue
		}
		var n int64
		err := c.pool.QueryRow(ctx, sql, st.args[i]).Scan(&n)
		var pe *pgconn.PgError
		switch {
		case errors.As(err, &pe) && strings.HasPrefix(pe.Code, "22"), err == nil && n > 0 && code == "22001":
			return col.name
		case err != nil && !errors.As(err, &pe):
			return "" // the connection is gone; leave the message as PostgreSQL gave it
		}
	}
	return ""
}

// Offsets returns the stored next offset of each partition of topics for sinkName.
func (c *Connector) Offsets(ctx context.Context, sinkName string, topics []string) (map[string]map[int32]int64, error) {
	rows, err := c.pool.Query(ctx, c.offSelect, sinkName, topics)
	if err != nil {
		return nil, c.offsetsError(err)
	}
	defer rows.Close()
	out := make(map[string]map[int32]int64)
	for rows.Next() {
		var topic string
		var partition int32
		var next int64
		if err := rows.Scan(&topic, &partition, &next); err != nil {
			return nil, c.offsetsError(err)
		}
		if out[topic] == nil {
			out[topic] = make(map[int32]int64)
		}
		out[topic][partition] = next
	}
	if err := rows.Err(); err != nil {
		return nil, c.offsetsError(err)
	}
	return out, nil
}

func (c *Connector) offsetsError(err error) error {
	err = fmt.Errorf("read offsets from %s.%s: %w", c.cfg.offSchema, c.cfg.offTable, err)
	if isRetryable(err) {
		return sink.Retryable(err)
	}
	return err
}

// Close closes the connection pool.
func (c *Connector) Close() error {
	c.pool.Close()
	return nil
}
