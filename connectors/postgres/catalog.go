package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/backflow-dev/backflow/connectors/internal/sqlname"
)

// target is the target table as read from the catalog. It is immutable once built, except for
// its cache of statements; a catalog change makes a new one.
type target struct {
	schema, name string
	ident        string // "schema"."name", quoted
	exists       bool   // false while auto_create waits for the first upserts
	oid          uint32 // the relation, when it exists (see identity.go)
	cols         []column
	byName       map[string]int
	key          []int // column index of each key field, in the sink's key order
	isKey        []bool
	softDelete   int // column index of the soft delete column, or -1
	version      int // column index of the version column (last write wins), or -1

	mu    sync.Mutex
	stmts map[string]*upsertSQL // by field set signature
}

type column struct {
	name    string
	ident   string // quoted
	attnum  int16
	typ     *colType
	notNull bool
	// hasDefault: a DEFAULT or an identity, so that an insert without the column works
	hasDefault bool
	writable   bool // not a generated column
	always     bool // GENERATED ALWAYS AS IDENTITY: needs OVERRIDING SYSTEM VALUE
}

// qualifiedName is the table for messages: schema.name, unquoted.
func (t *target) qualifiedName() string { return t.schema + "." + t.name }

func (t *target) columnNames() string {
	names := make([]string, len(t.cols))
	for i, c := range t.cols {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

// parseTableName splits "schema.table" or "table". Names are taken exactly as written (no case
// folding); a part may be double-quoted to hold dots ("my.schema"."t", with "" for a quote).
func parseTableName(s string) (schema, name string, err error) {
	parts, err := sqlname.Split(s, '"')
	switch {
	case err != nil:
	case len(parts) == 1:
		return "", parts[0], nil
	case len(parts) == 2:
		return parts[0], parts[1], nil
	default:
		err = fmt.Errorf("%d name parts", len(parts))
	}
	return "", "", fmt.Errorf(`invalid table %q (%v); expected "schema.table" or "table"`, s, err)
}

func quoteQualified(schema, name string) string {
	return pgx.Identifier{schema, name}.Sanitize()
}

// querier is what catalog reads need: a pool, a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const relationSQL = `SELECT c.oid, c.relkind::text FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`

// lookupRelation returns the table's oid and relkind, or oid 0 when there is none.
func lookupRelation(ctx context.Context, q querier, schema, name string) (oid uint32, relkind string, err error) {
	err = q.QueryRow(ctx, relationSQL, schema, name).Scan(&oid, &relkind)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, "", nil
	}
	return oid, relkind, err
}

const columnsSQL = `SELECT a.attnum, a.attname, a.atttypid, a.attnotnull, a.attgenerated = '',
  a.attidentity = 'a', pg_catalog.format_type(a.atttypid, a.atttypmod), a.atthasdef OR a.attidentity <> ''
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`

const uniqueSQL = `SELECT i.indkey::int2[] FROM pg_catalog.pg_index i
WHERE i.indrelid = $1 AND i.indisunique AND i.indimmediate AND i.indisvalid
  AND i.indpred IS NULL AND i.indexprs IS NULL`

const typeSQL = `SELECT t.typname, n.nspname, t.typtype::text, t.typbasetype, t.typelem, t.typcategory::text
FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1`

// readTarget reads the table's columns, their types and its unique indexes, and checks that the
// key fields are columns covered by a unique index usable as an ON CONFLICT arbiter. A missing
// table is an error unless autoCreate, which gives a target with exists false.
func readTarget(ctx context.Context, q querier, schema, name string, key []string, softDelete string, autoCreate bool) (*target, error) {
	t := &target{schema: schema, name: name, ident: quoteQualified(schema, name), softDelete: -1, version: -1,
		byName: map[string]int{}, stmts: map[string]*upsertSQL{}}
	oid, relkind, err := lookupRelation(ctx, q, schema, name)
	if err != nil {
		return nil, fmt.Errorf("look up table %s: %w", t.qualifiedName(), err)
	}
	if oid == 0 {
		if autoCreate {
			return t, nil
		}
		return nil, &configError{path: "with.table", msg: fmt.Sprintf("table %s does not exist (set with.auto_create: true to create it from the first batch)", t.qualifiedName())}
	}
	if relkind != "r" && relkind != "p" {
		return nil, &configError{path: "with.table", msg: fmt.Sprintf("%s is not a table (relkind %q); expected a table or a partitioned table", t.qualifiedName(), relkind)}
	}
	t.exists, t.oid = true, oid

	types := typeResolver{q: q, ctx: ctx, seen: map[uint32]pgTypeRow{}}
	rows, err := q.Query(ctx, columnsSQL, oid)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", t.qualifiedName(), err)
	}
	type colRow struct {
		c      column
		typoid uint32
	}
	var crs []colRow
	for rows.Next() {
		var cr colRow
		var display string
		if err := rows.Scan(&cr.c.attnum, &cr.c.name, &cr.typoid, &cr.c.notNull, &cr.c.writable, &cr.c.always, &display, &cr.c.hasDefault); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read columns of %s: %w", t.qualifiedName(), err)
		}
		cr.c.typ = &colType{name: display}
		crs = append(crs, cr)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", t.qualifiedName(), err)
	}
	for _, cr := range crs {
		ct, err := types.colType(cr.typoid)
		if err != nil {
			return nil, fmt.Errorf("read column types of %s: %w", t.qualifiedName(), err)
		}
		c := cr.c
		typ := *ct
		typ.name = c.typ.name
		c.typ = &typ
		c.ident = pgx.Identifier{c.name}.Sanitize()
		t.byName[c.name] = len(t.cols)
		t.cols = append(t.cols, c)
	}
	if err := t.resolveKey(key); err != nil {
		return nil, err
	}
	if err := t.checkArbiter(ctx, q, oid, key); err != nil {
		return nil, err
	}
	if err := t.resolveSoftDelete(softDelete); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *target) resolveKey(key []string) error {
	t.key = make([]int, len(key))
	t.isKey = make([]bool, len(t.cols))
	for i, k := range key {
		ci, ok := t.byName[k]
		if !ok {
			return &configError{path: fmt.Sprintf("key[%d]", i), msg: fmt.Sprintf("field %q is not a column of table %s (columns: %s)", k, t.qualifiedName(), t.columnNames())}
		}
		if !t.cols[ci].writable {
			return &configError{path: fmt.Sprintf("key[%d]", i), msg: fmt.Sprintf("column %q of table %s is generated; a key column must be writable", k, t.qualifiedName())}
		}
		t.key[i] = ci
		t.isKey[ci] = true
	}
	return nil
}

// checkArbiter makes sure ON CONFLICT (key) has a unique index on exactly the key columns that
// is immediate, valid, not partial and not on expressions.
func (t *target) checkArbiter(ctx context.Context, q querier, oid uint32, key []string) error {
	want := make([]int16, len(t.key))
	for i, ci := range t.key {
		want[i] = t.cols[ci].attnum
	}
	slices.Sort(want)
	rows, err := q.Query(ctx, uniqueSQL, oid)
	if err != nil {
		return fmt.Errorf("read indexes of %s: %w", t.qualifiedName(), err)
	}
	found := false
	for rows.Next() {
		var cols []int16
		if err := rows.Scan(&cols); err != nil {
			rows.Close()
			return fmt.Errorf("read indexes of %s: %w", t.qualifiedName(), err)
		}
		slices.Sort(cols)
		if slices.Equal(cols, want) {
			found = true
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read indexes of %s: %w", t.qualifiedName(), err)
	}
	if !found {
		return &configError{path: "key", msg: fmt.Sprintf("table %s has no primary key or unique constraint on exactly the key columns (%s), which upserts (ON CONFLICT) need; add one, e.g. ALTER TABLE %s ADD PRIMARY KEY (%s) (partial, expression and deferrable unique indexes do not count)",
			t.qualifiedName(), strings.Join(key, ", "), t.ident, identList(key))}
	}
	return nil
}

func (t *target) resolveSoftDelete(name string) error {
	if name == "" {
		return nil
	}
	ci, ok := t.byName[name]
	if !ok {
		return &configError{path: "with.soft_delete_column", msg: fmt.Sprintf("%q is not a column of table %s (columns: %s)", name, t.qualifiedName(), t.columnNames())}
	}
	switch t.cols[ci].typ.kind {
	case kBool, kTimestamp, kTimestamptz, kDate:
	default:
		return &configError{path: "with.soft_delete_column", msg: fmt.Sprintf("column %q of table %s has type %s; expected boolean, date, timestamp or timestamptz", name, t.qualifiedName(), t.cols[ci].typ.name)}
	}
	if t.isKey[ci] {
		return &configError{path: "with.soft_delete_column", msg: fmt.Sprintf("column %q is a key column", name)}
	}
	t.softDelete = ci
	return nil
}

func identList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = pgx.Identifier{n}.Sanitize()
	}
	return strings.Join(q, ", ")
}

type pgTypeRow struct {
	name, nsp, typtype, category string
	base, elem                   uint32
}

// typeResolver turns type oids into colTypes, following domains to their base type.
type typeResolver struct {
	ctx  context.Context
	q    querier
	seen map[uint32]pgTypeRow
}

func (r *typeResolver) row(oid uint32) (pgTypeRow, error) {
	if row, ok := r.seen[oid]; ok {
		return row, nil
	}
	var row pgTypeRow
	err := r.q.QueryRow(r.ctx, typeSQL, oid).Scan(&row.name, &row.nsp, &row.typtype, &row.base, &row.elem, &row.category)
	if err != nil {
		return row, fmt.Errorf("type %d: %w", oid, err)
	}
	r.seen[oid] = row
	return row, nil
}

func (r *typeResolver) colType(oid uint32) (*colType, error) {
	row, err := r.row(oid)
	if err != nil {
		return nil, err
	}
	ct := &colType{name: row.name}
	if row.nsp != "pg_catalog" || row.name != "text" {
		ct.cast = pgx.Identifier{row.nsp, row.name}.Sanitize()
	}
	base := row
	for depth := 0; base.typtype == "d" && depth < 16; depth++ {
		if base, err = r.row(base.base); err != nil {
			return nil, err
		}
	}
	switch {
	case base.category == "A" && base.elem != 0:
		ct.kind = kArray
		if ct.elem, err = r.colType(base.elem); err != nil {
			return nil, err
		}
	case base.nsp == "pg_catalog":
		ct.kind = baseKinds[base.name]
	}
	return ct, nil
}

// ddlLockSQL serialises DDL on one table between sink workers, wherever they run, so that two
// of them creating the same table do not fail on the catalog's unique indexes.
const ddlLockSQL = `SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1))`

// runDDL runs statements in one transaction under the table's DDL lock.
func runDDL(ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}, lockName string, stmts ...string) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit this is a no-op
	if _, err := tx.Exec(ctx, ddlLockSQL, "backflow.ddl:"+lockName); err != nil {
		return err
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return tx.Commit(ctx)
}

// offsetsDDL creates the offsets table.
func offsetsDDL(ident string) string {
	return `CREATE TABLE IF NOT EXISTS ` + ident + ` (
  sink text NOT NULL,
  topic text NOT NULL,
  "partition" integer NOT NULL,
  next_offset bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (sink, topic, "partition"))`
}

// ensureOffsetsTable creates the offsets table when missing and checks the shape of an
// existing one.
func ensureOffsetsTable(ctx context.Context, c *Connector) error {
	oid, _, err := lookupRelation(ctx, c.pool, c.cfg.offSchema, c.cfg.offTable)
	if err != nil {
		return fmt.Errorf("look up offsets table %s.%s: %w", c.cfg.offSchema, c.cfg.offTable, err)
	}
	if oid == 0 {
		if err := runDDL(ctx, c.pool, c.cfg.offSchema+"."+c.cfg.offTable, offsetsDDL(c.offIdent)); err != nil {
			return fmt.Errorf("create offsets table %s.%s: %w", c.cfg.offSchema, c.cfg.offTable, err)
		}
		if oid, _, err = lookupRelation(ctx, c.pool, c.cfg.offSchema, c.cfg.offTable); err != nil || oid == 0 {
			return fmt.Errorf("look up offsets table %s.%s after creating it: %v", c.cfg.offSchema, c.cfg.offTable, err)
		}
	}
	rows, err := c.pool.Query(ctx, columnsSQL, oid)
	if err != nil {
		return fmt.Errorf("read columns of offsets table: %w", err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var attnum int16
		var name, display string
		var typ uint32
		var notNull, writable, always, hasDefault bool
		if err := rows.Scan(&attnum, &name, &typ, &notNull, &writable, &always, &display, &hasDefault); err != nil {
			rows.Close()
			return fmt.Errorf("read columns of offsets table: %w", err)
		}
		have[name] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read columns of offsets table: %w", err)
	}
	for _, col := range []string{"sink", "topic", "partition", "next_offset", "updated_at"} {
		if !have[col] {
			return &configError{path: "with.offsets_table", msg: fmt.Sprintf("table %s.%s exists but has no column %q; expected (sink text, topic text, partition int, next_offset bigint, updated_at timestamptz, primary key (sink, topic, partition))", c.cfg.offSchema, c.cfg.offTable, col)}
		}
	}
	return nil
}

// isCatalogRace reports a unique violation on a system catalog: two sessions creating the same
// object at once. The loser retries and finds the object there.
func isCatalogRace(pe *pgconn.PgError) bool {
	return pe.Code == "23505" && strings.HasPrefix(pe.ConstraintName, "pg_")
}
