package capture

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// builtinKinds maps the built-in type OIDs to their kinds; other types are looked up in pg_type.
var builtinKinds = map[uint32]change.Kind{
	16: change.KindBool, 17: change.KindBytes, 20: change.KindInt64, 21: change.KindInt16,
	23: change.KindInt32, 26: change.KindInt64, 114: change.KindJSON, 700: change.KindFloat32,
	701: change.KindFloat64, 1082: change.KindDate, 1083: change.KindTime,
	1114: change.KindTimestamp, 1184: change.KindTimestampTZ, 1186: change.KindInterval,
	1700: change.KindNumeric, 2950: change.KindUUID, 3802: change.KindJSON,
}

// typeInfo is what capture knows about one PostgreSQL type.
type typeInfo struct {
	name string
	kind change.Kind
	elem change.Kind
}

// catalog answers questions about tables and types through a regular (non-replication)
// connection, caching type lookups.
type catalog struct {
	conn  *pgx.Conn
	types map[uint32]typeInfo
	keys  map[string][]string // configured keys for tables without a primary key
	// pub is the publication capture reads through, whose column lists and row filters the
	// snapshots apply (see publicationFilters); "" applies none.
	pub string
	// version is the server's server_version_num, once read (0: not yet).
	version int
	// keyWaitFor overrides keyWait (tests).
	keyWaitFor time.Duration
}

func newCatalog(conn *pgx.Conn, keys map[string][]string) *catalog {
	return &catalog{conn: conn, types: map[uint32]typeInfo{}, keys: keys}
}

// typeOf resolves a type OID: domains to their base type, arrays to their element kind, enums to
// KindEnum, and anything else unknown to its text form (KindString).
func (c *catalog) typeOf(ctx context.Context, oid uint32) (typeInfo, error) {
	if ti, ok := c.types[oid]; ok {
		return ti, nil
	}
	var (
		name, typtype, category string
		elem, base              uint32
	)
	err := c.conn.QueryRow(ctx,
		`SELECT typname, typtype::text, typcategory::text, typelem::int8, typbasetype::int8 FROM pg_type WHERE oid = $1`,
		int64(oid)).Scan(&name, &typtype, &category, &elem, &base)
	if err != nil {
		return typeInfo{}, fmt.Errorf("look up type oid %d: %w", oid, err)
	}
	ti := typeInfo{name: name, kind: change.KindString}
	switch {
	case typtype == "d":
		bt, err := c.typeOf(ctx, base)
		if err != nil {
			return typeInfo{}, err
		}
		ti.kind, ti.elem = bt.kind, bt.elem
	case typtype == "e":
		ti.kind = change.KindEnum
	case category == "A" && elem != 0:
		et, err := c.typeOf(ctx, elem)
		if err != nil {
			return typeInfo{}, err
		}
		ti.kind, ti.elem = change.KindArray, et.kind
	default:
		if k, ok := builtinKinds[oid]; ok {
			ti.kind = k
		}
	}
	c.types[oid] = ti
	return ti, nil
}

// column builds a change.Column for a column of the given type.
func (c *catalog) column(ctx context.Context, name string, oid uint32, key bool) (change.Column, error) {
	ti, err := c.typeOf(ctx, oid)
	if err != nil {
		return change.Column{}, fmt.Errorf("column %q: %w", name, err)
	}
	return change.Column{Name: name, Kind: ti.kind, Elem: ti.elem, PGType: ti.name, TypeOID: oid, Key: key}, nil
}

// keyIndex selects, among the indexes i of the table, its key: the primary key, or without one
// the unique index its replica identity uses (REPLICA IDENTITY USING INDEX, over NOT NULL
// columns: PostgreSQL identifies the table's rows by it, and sends its columns as the old key of
// updates and deletes).
const keyIndex = `(i.indisprimary OR (i.indisreplident
	AND (SELECT relreplident FROM pg_class WHERE oid = i.indrelid) = 'i'
	AND NOT EXISTS (SELECT 1 FROM pg_index p WHERE p.indrelid = i.indrelid AND p.indisprimary)))`

// keyColumns returns the table's configured key, or its primary key columns, or without a
// primary key those of its replica identity index (keyIndex). A table with none of them cannot be
// keyed, and per-key ordering would be meaningless: that is an error.
func (c *catalog) keyColumns(ctx context.Context, schema, table string) ([]string, error) {
	if k, ok := c.keys[schema+"."+table]; ok && len(k) > 0 {
		return k, nil
	}
	rows, err := c.conn.Query(ctx, `
		SELECT a.attname FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass AND `+keyIndex+`
		ORDER BY array_position(i.indkey, a.attnum)`, schema, table)
	if err != nil {
		return nil, fmt.Errorf("read primary key of %s.%s: %w", schema, table, err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read primary key of %s.%s: %w", schema, table, err)
	}
	if len(keys) == 0 {
		return nil, noKeyError{table: schema + "." + table}
	}
	return keys, nil
}

// noKeyError is a table with neither a primary key nor a configured key: capture cannot key its
// changes. dbt's CREATE TABLE AS makes such tables, under a temporary name and then, by a rename
// swap, under the captured one.
type noKeyError struct{ table string }

func (e noKeyError) tableName() string { return e.table }

func (e noKeyError) Error() string {
	return fmt.Sprintf("table %s has no primary key: add one (or REPLICA IDENTITY USING INDEX on a unique index), or give its key columns in source.postgres.keys", e.table)
}

// relationKeys returns the key of the relation a Relation message describes, looked up by its
// oid, not its name: the name may point to another relation by now (a rename swap, DROP and
// CREATE). The walsender can send the message before the transaction that created the relation
// is visible to other sessions (its commit record is written first), so a relation not found
// is looked up again for a moment before it counts as dropped.
//
// The same holds for a transaction that dropped or added the primary key: the catalog may still
// show the key as it was. With the default replica identity the message itself flags the
// primary key's columns as of its place in the WAL, so a catalog whose key is another set of
// columns is read again for a moment; if it still differs (the key changed again since), the
// message's columns are the key, in table order.
func (c *catalog) relationKeys(ctx context.Context, m *pglogrepl.RelationMessage) ([]string, error) {
	if k, ok := c.keys[m.Namespace+"."+m.RelationName]; ok && len(k) > 0 {
		return k, nil
	}
	flagged, byFlags := identityKeys(m)
	for wait := 10 * time.Millisecond; ; wait *= 2 {
		var exists bool
		var keys []string
		err := c.conn.QueryRow(ctx, `
			SELECT EXISTS (SELECT 1 FROM pg_class WHERE oid = $1::int8::oid),
				coalesce((SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey, a.attnum)) FROM pg_index i
					JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
					WHERE i.indrelid = $1::int8::oid AND `+keyIndex+`), '{}')`, int64(m.RelationID)).Scan(&exists, &keys)
		switch {
		case err != nil:
			return nil, fmt.Errorf("read primary key of %s.%s: %w", m.Namespace, m.RelationName, err)
		case exists && byFlags && !sameColumns(keys, flagged) && wait <= c.keyWait():
			// The catalog does not show the key the message has: not yet, or not any more.
		case exists && byFlags && !sameColumns(keys, flagged) && len(flagged) > 0:
			return flagged, nil
		case exists && byFlags && !sameColumns(keys, flagged):
			return nil, noKeyError{table: m.Namespace + "." + m.RelationName}
		case exists && len(keys) > 0:
			return keys, nil
		case exists:
			return nil, noKeyError{table: m.Namespace + "." + m.RelationName}
		case wait > time.Second:
			return c.droppedKeys(m)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// identityKeys returns the columns a Relation message flags as its replica identity, and whether
// they are its primary key (the default replica identity: they are then exactly its columns,
// none when it has no primary key).
func identityKeys(m *pglogrepl.RelationMessage) ([]string, bool) {
	var keys []string
	for _, col := range m.Columns {
		if col.Flags&1 != 0 {
			keys = append(keys, col.Name)
		}
	}
	return keys, m.ReplicaIdentity == 'd'
}

// sameColumns reports whether a and b name the same columns, in any order.
func sameColumns(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// keyWait is how long relationKeys waits for the catalog to show the key a Relation message
// flags.
func (c *catalog) keyWait() time.Duration {
	if c.keyWaitFor > 0 {
		return c.keyWaitFor
	}
	return time.Second
}

// droppedKeys is the key of a relation whose catalog lookup failed with lookupErr because the
// table is gone (dropped or renamed after the changes now streaming were written): the
// configured key, else the columns the Relation message flags as part of the replica identity.
// Any other failure is returned as it is.
func (c *catalog) droppedKeys(m *pglogrepl.RelationMessage) ([]string, error) {
	var keys []string
	for _, col := range m.Columns {
		if col.Flags&1 != 0 {
			keys = append(keys, col.Name)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("table %s.%s is gone from the catalog and its relation message flags no key column: give its key in source.postgres.keys",
			m.Namespace, m.RelationName)
	}
	return keys, nil
}

// keyProblem says why the table's key cannot work, or returns nil: a configured key column that
// can be NULL cannot key a row, and a key outside the replica identity is missing from what
// PostgreSQL sends for deletes (or, without any identity, PostgreSQL refuses the table's UPDATEs
// and DELETEs once it is published).
func (c *catalog) keyProblem(ctx context.Context, schema, name string) error {
	keys, err := c.keyColumns(ctx, schema, name)
	if err != nil {
		return err
	}
	qt := quoteTable(schema, name)
	var ident string
	var identCols, nullable []string
	err = c.conn.QueryRow(ctx, `
		SELECT c.relreplident::text,
			coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_index i
				JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
				WHERE i.indrelid = c.oid AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))), '{}'),
			coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
				WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attnotnull AND a.attname = ANY($2)), '{}')
		FROM pg_class c WHERE c.oid = $1::regclass`, qt, keys).Scan(&ident, &identCols, &nullable)
	if err != nil {
		return fmt.Errorf("read the replica identity of %s.%s: %w", schema, name, err)
	}
	list := strings.Join(keys, ", ")
	if len(nullable) > 0 {
		return fmt.Errorf("table %s.%s: key column(s) %s can be NULL, and a row with a NULL key cannot be keyed: "+
			"ALTER TABLE %s ALTER COLUMN … SET NOT NULL, or give other columns in source.postgres.keys",
			schema, name, strings.Join(nullable, ", "), qt)
	}
	if ident == "f" {
		return nil // REPLICA IDENTITY FULL: deletes carry every column
	}
	if len(identCols) == 0 {
		return fmt.Errorf("table %s.%s has no replica identity (REPLICA IDENTITY %s without a primary key): PostgreSQL refuses its UPDATEs and DELETEs once published, "+
			"and capture could not key them by (%s): ALTER TABLE %s REPLICA IDENTITY FULL, or REPLICA IDENTITY USING INDEX on a unique index over (%s)",
			schema, name, map[string]string{"d": "DEFAULT", "n": "NOTHING", "i": "USING INDEX"}[ident], list, qt, list)
	}
	for _, k := range keys {
		if !contains(identCols, k) {
			return fmt.Errorf("table %s.%s: its key (%s) is not within its replica identity (%s), so its deletes would arrive without the key: "+
				"ALTER TABLE %s REPLICA IDENTITY FULL, or USING INDEX on a unique index over (%s), or key it by (%s) in source.postgres.keys",
				schema, name, list, strings.Join(identCols, ", "), qt, list, strings.Join(identCols, ", "))
		}
	}
	return nil
}

// table reads a table's current shape from the catalog (used by snapshots, before any relation
// message has arrived): the columns a relation message has, so without generated columns, which
// pgoutput does not send. A snapshot row with a generated column its changes lack would leave a
// stale value in the target after the first update (see generatedColumns).
func (c *catalog) table(ctx context.Context, schema, name string) (*change.Table, error) {
	keys, err := c.keyColumns(ctx, schema, name)
	if err != nil {
		return nil, err
	}
	rows, err := c.conn.Query(ctx, `
		SELECT attname, atttypid::int8 FROM pg_attribute
		WHERE attrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass AND attnum > 0 AND NOT attisdropped
			AND attgenerated = ''
		ORDER BY attnum`, schema, name)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s.%s: %w", schema, name, err)
	}
	type attr struct {
		Name string
		OID  int64
	}
	attrs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[attr])
	if err != nil {
		return nil, fmt.Errorf("read columns of %s.%s: %w", schema, name, err)
	}
	t := &change.Table{Schema: schema, Name: name}
	for _, a := range attrs {
		col, err := c.column(ctx, a.Name, uint32(a.OID), contains(keys, a.Name))
		if err != nil {
			return nil, fmt.Errorf("table %s.%s: %w", schema, name, err)
		}
		t.Columns = append(t.Columns, col)
	}
	if err := c.keepPublished(ctx, t, keys); err != nil {
		return nil, err
	}
	if err := checkKeys(t, keys); err != nil {
		return nil, err
	}
	return t, nil
}

// keepPublished leaves out of t the columns its publication's column list leaves out: pgoutput
// sends none of them, so a snapshot that read them would put values in the targets that no
// change ever updates (and columns a DBA kept out of the publication, such as personal data,
// into Kafka). A key column left out is an error: a key is what every change needs.
func (c *catalog) keepPublished(ctx context.Context, t *change.Table, keys []string) error {
	f, err := c.publicationFilter(ctx, t.Schema, t.Name)
	if err != nil || f.Columns == nil {
		return err
	}
	for _, k := range keys {
		if !slices.Contains(f.Columns, k) {
			return fmt.Errorf("table %s: publication %q leaves key column %q out of its column list; add it to the list "+
				"(ALTER PUBLICATION %s SET TABLE …)", t.QualifiedName(), c.pub, k, quoteIdent(c.pub))
		}
	}
	t.Columns = slices.DeleteFunc(t.Columns, func(col change.Column) bool { return !slices.Contains(f.Columns, col.Name) })
	return nil
}

// pubFilter is what a publication keeps of a table's changes (PostgreSQL 15 and later): the
// columns of its column list (nil: every column) and its row filter as pg_get_expr writes it
// ("": every row). PostgreSQL applies both to the changes it sends, and to no SELECT: the
// snapshots apply them themselves.
type pubFilter struct {
	Columns []string `json:"columns,omitempty"`
	Rows    string   `json:"rows,omitempty"`
}

func (f pubFilter) String() string {
	cols, rows := "every column", "every row"
	if f.Columns != nil {
		cols = "columns (" + strings.Join(f.Columns, ", ") + ")"
	}
	if f.Rows != "" {
		rows = "rows WHERE " + f.Rows
	}
	return cols + ", " + rows
}

func (f pubFilter) equal(g pubFilter) bool {
	return f.Rows == g.Rows && (f.Columns == nil) == (g.Columns == nil) && slices.Equal(f.Columns, g.Columns)
}

// filtersSince is the first server_version_num with publication column lists and row filters.
const filtersSince = 150000

// publicationFilter is publicationFilters for one table, by name (the zero pubFilter when it
// does not exist).
func (c *catalog) publicationFilter(ctx context.Context, schema, name string) (pubFilter, error) {
	if c.pub == "" {
		return pubFilter{}, nil
	}
	var oid *int64
	if err := c.conn.QueryRow(ctx, "SELECT to_regclass($1)::int8", quoteTable(schema, name)).Scan(&oid); err != nil {
		return pubFilter{}, fmt.Errorf("look up %s.%s: %w", schema, name, err)
	}
	if oid == nil {
		return pubFilter{}, nil
	}
	qn := schema + "." + name
	filters, err := c.publicationFilters(ctx, map[string]uint32{qn: uint32(*oid)})
	return filters[qn], err
}

// serverVersion returns the server's server_version_num, read once: the watch asks at every check.
func (c *catalog) serverVersion(ctx context.Context) (int, error) {
	if c.version == 0 {
		if err := c.conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&c.version); err != nil {
			return 0, fmt.Errorf("read server_version_num: %w", err)
		}
	}
	return c.version, nil
}

// publicationFilters returns, by name, the column lists and row filters the publication applies
// to those of tables (schema.table -> oid) it has any for. The filter of a partitioned table is
// its own, which its partitions' changes get when published through the root, as capture's are.
// A table the publication also publishes through its schema (FOR TABLES IN SCHEMA) has every
// row published: PostgreSQL ORs the two, so its filter applies to nothing.
func (c *catalog) publicationFilters(ctx context.Context, tables map[string]uint32) (map[string]pubFilter, error) {
	if c.pub == "" {
		return nil, nil
	}
	if v, err := c.serverVersion(ctx); err != nil || v < filtersSince {
		return nil, err
	}
	names, oids := byOID(tables)
	rows, err := c.conn.Query(ctx, `SELECT r.prrelid::int8,
			CASE WHEN r.prattrs IS NOT NULL THEN ARRAY(SELECT a.attname::text FROM pg_attribute a
				WHERE a.attrelid = r.prrelid AND a.attnum = ANY(r.prattrs::int2[]) ORDER BY a.attnum) END,
			coalesce(pg_get_expr(r.prqual, r.prrelid), '')
		FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
		WHERE p.pubname = $1 AND r.prrelid::int8 = ANY($2::int8[]) AND (r.prattrs IS NOT NULL OR r.prqual IS NOT NULL)
			AND NOT EXISTS (SELECT 1 FROM pg_publication_namespace n JOIN pg_class c ON c.relnamespace = n.pnnspid
				WHERE n.pnpubid = p.oid AND c.oid = r.prrelid)`,
		c.pub, oids)
	if err != nil {
		return nil, fmt.Errorf("read the column lists and row filters of publication %q: %w", c.pub, err)
	}
	out := map[string]pubFilter{}
	var oid int64
	var f pubFilter
	_, err = pgx.ForEachRow(rows, []any{&oid, &f.Columns, &f.Rows}, func() error {
		out[names[oid]] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the column lists and row filters of publication %q: %w", c.pub, err)
	}
	return out, nil
}

func checkKeys(t *change.Table, keys []string) error {
	for _, k := range keys {
		if _, ok := t.Column(k); !ok {
			return fmt.Errorf("table %s: key column %q does not exist", t.QualifiedName(), k)
		}
	}
	return nil
}

// publishedColumns lists, by name, the columns PostgreSQL publishes of the relations of tables
// (schema.table -> oid) as "name type" (the type as format_type writes it, modifier included), in
// column order: what a change of a column's set or type is seen by. A relation that is gone is
// left out.
func (c *catalog) publishedColumns(ctx context.Context, tables map[string]uint32) (map[string][]string, error) {
	names, oids := byOID(tables)
	rows, err := c.conn.Query(ctx, `SELECT a.attrelid::int8, a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
		FROM pg_attribute a
		WHERE a.attrelid::int8 = ANY($1::int8[]) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		ORDER BY a.attrelid, a.attnum`, oids)
	if err != nil {
		return nil, fmt.Errorf("read the captured tables' columns: %w", err)
	}
	out := map[string][]string{}
	var oid int64
	var col string
	_, err = pgx.ForEachRow(rows, []any{&oid, &col}, func() error {
		out[names[oid]] = append(out[names[oid]], col)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the captured tables' columns: %w", err)
	}
	return out, nil
}

// relationFile is what pg_class says of a relation's storage and columns.
type relationFile struct {
	file  uint32 // relfilenode: a new one means the table was rewritten; 0 for a partitioned table
	natts int    // relnatts: its highest column number, dropped columns included
}

// relationFiles returns, by name, the storage and column count of the relations of tables
// (schema.table -> oid).
func (c *catalog) relationFiles(ctx context.Context, tables map[string]uint32) (map[string]relationFile, error) {
	names, oids := byOID(tables)
	rows, err := c.conn.Query(ctx, `SELECT oid::int8, relfilenode::int8, relnatts::int8 FROM pg_class WHERE oid::int8 = ANY($1::int8[])`, oids)
	if err != nil {
		return nil, fmt.Errorf("read the captured tables' files: %w", err)
	}
	out := map[string]relationFile{}
	var oid, file, natts int64
	_, err = pgx.ForEachRow(rows, []any{&oid, &file, &natts}, func() error {
		out[names[oid]] = relationFile{file: uint32(file), natts: int(natts)}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the captured tables' files: %w", err)
	}
	return out, nil
}

// columnsWithValues returns those of names, new names of columns of relation oid, that rows hold
// a value in without having been written since: a column added with a default, kept as the
// "missing" value of older rows (atthasmissing) or written into every row by a rewrite (a
// volatile default), and a column renamed (RENAME COLUMN), which keeps its values. A column
// numbered within natts, the relation's highest column number when its columns were read last
// (0: unknown), existed then under another name: an added column takes the next number.
func (c *catalog) columnsWithValues(ctx context.Context, oid uint32, names []string, natts int) ([]string, error) {
	rows, err := c.conn.Query(ctx, `SELECT attname::text FROM pg_attribute
		WHERE attrelid = $1::int8::oid AND attname = ANY($2::text[]) AND NOT attisdropped AND (atthasdef OR atthasmissing OR attnum <= $3)
		ORDER BY attnum`, int64(oid), names, natts)
	if err != nil {
		return nil, fmt.Errorf("read the defaults of columns %v: %w", names, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read the defaults of columns %v: %w", names, err)
	}
	return out, nil
}

// generatedColumns lists, by table, the generated columns of tables: they are not published,
// since PostgreSQL does not send them in changes.
func (c *catalog) generatedColumns(ctx context.Context, tables [][2]string) (map[string][]string, error) {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = quoteTable(t[0], t[1])
	}
	rows, err := c.conn.Query(ctx, `SELECT n.nspname || '.' || c.relname, a.attname::text
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE a.attrelid = ANY($1::regclass[]) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> ''
		ORDER BY 1, a.attnum`, names)
	if err != nil {
		return nil, fmt.Errorf("read generated columns: %w", err)
	}
	out := map[string][]string{}
	var table, col string
	_, err = pgx.ForEachRow(rows, []any{&table, &col}, func() error {
		out[table] = append(out[table], col)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read generated columns: %w", err)
	}
	return out, nil
}

// entryTables is the condition on pg_class c (pg_namespace n) for the tables an entry names,
// $1 its schema and $2 its table or '*': ordinary and partitioned tables, but not, for a pattern,
// the partitions of a partitioned table of the same schema. Their changes come under the root's
// name (the publication publishes through the root) and the root's snapshot reads their rows.
const entryTables = `c.relkind IN ('r','p') AND n.nspname = $1 AND ($2 = '*' OR c.relname = $2)
	AND NOT (c.relispartition AND $2 = '*' AND EXISTS (SELECT 1 FROM pg_partition_ancestors(c.oid) a
		JOIN pg_class p ON p.oid = a.relid WHERE a.relid <> c.oid AND p.relnamespace = c.relnamespace))`

// resolveTables expands the configured table list ("schema.table" or "schema.*") into existing
// tables. A listed table that matches nothing is returned in missing (missingError says why).
func (c *catalog) resolveTables(ctx context.Context, entries []string) (out [][2]string, missing []string, err error) {
	for _, e := range entries {
		schema, name, _ := strings.Cut(e, ".")
		q := `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE ` + entryTables + ` ORDER BY 2`
		rows, err := c.conn.Query(ctx, q, schema, name)
		if err != nil {
			return nil, nil, fmt.Errorf("look up table %s: %w", e, err)
		}
		found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
			var t [2]string
			return t, r.Scan(&t[0], &t[1])
		})
		if err != nil {
			return nil, nil, fmt.Errorf("look up table %s: %w", e, err)
		}
		if len(found) == 0 && name != "*" {
			missing = append(missing, e)
		}
		out = append(out, found...)
	}
	return out, missing, nil
}

// missingError says why listed tables that resolveTables found missing cannot be captured:
// another kind of relation under the name, or nothing.
func (c *catalog) missingError(ctx context.Context, missing []string) error {
	var absent []string
	for _, e := range missing {
		schema, name, _ := strings.Cut(e, ".")
		if kind := c.notTable(ctx, schema, name); kind != "" {
			return fmt.Errorf("source.postgres.tables: %s is %s, whose changes logical replication does not carry: "+
				"capture the tables it reads, or make its query a model (models:)", e, kind)
		}
		absent = append(absent, e)
	}
	return fmt.Errorf("source.postgres.tables: %s not found in the database: create them or fix the list", strings.Join(absent, ", "))
}

// notTable names what schema.name is when it is a relation but not a table capture can read
// ("a view", …), "" otherwise.
func (c *catalog) notTable(ctx context.Context, schema, name string) string {
	var kind string
	err := c.conn.QueryRow(ctx, `SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, schema, name).Scan(&kind)
	if err != nil {
		return ""
	}
	return map[string]string{"v": "a view", "m": "a materialized view", "f": "a foreign table"}[kind]
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// quoteIdent quotes a PostgreSQL identifier that comes from config or the catalog.
func quoteIdent(s string) string {
	return pgx.Identifier{s}.Sanitize()
}

// quoteTable quotes schema.table.
func quoteTable(schema, table string) string {
	return pgx.Identifier{schema, table}.Sanitize()
}

// partitionFiles returns, for each of tables that is partitioned, the relfilenode of each of
// its leaf partitions (all levels), by the leaf's oid; an empty map for one without partitions
// (its last one detached or dropped). TRUNCATE and every rewrite give a leaf a new relfilenode;
// DETACH and DROP take it out, ATTACH brings one in: none of them is in the log of the
// partitioned table, whose publication sends neither a leaf's TRUNCATE nor its rows.
func (c *catalog) partitionFiles(ctx context.Context, tables map[string]uint32) (map[string]map[uint32]uint32, error) {
	names, oids := byOID(tables)
	rows, err := c.conn.Query(ctx, `WITH RECURSIVE tree(root, relid) AS (
			SELECT oid, oid FROM pg_class WHERE oid::int8 = ANY($1::int8[]) AND relkind = 'p'
			UNION ALL
			SELECT t.root, i.inhrelid FROM tree t JOIN pg_inherits i ON i.inhparent = t.relid)
		SELECT t.root::int8, c.oid::int8, c.relfilenode::int8, c.relkind = 'p' FROM tree t JOIN pg_class c ON c.oid = t.relid
		WHERE c.relkind <> 'p' OR c.oid = t.root`, oids)
	if err != nil {
		return nil, fmt.Errorf("read the captured tables' partitions: %w", err)
	}
	out := map[string]map[uint32]uint32{}
	var root, leaf, file int64
	var isRoot bool
	_, err = pgx.ForEachRow(rows, []any{&root, &leaf, &file, &isRoot}, func() error {
		name := names[root]
		if out[name] == nil {
			out[name] = map[uint32]uint32{}
		}
		if !isRoot {
			out[name][uint32(leaf)] = uint32(file)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the captured tables' partitions: %w", err)
	}
	return out, nil
}

// hasRows reports whether relation oid holds a row, reading it alone (a partition, not its
// parent). It runs beside the stream, so it waits for no lock: a partition locked by a DDL
// under way (lockWait) is an error, for the caller to ask again later.
func (c *catalog) hasRows(ctx context.Context, oid uint32) (bool, error) {
	var schema, name string
	err := c.conn.QueryRow(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = $1::int8::oid`, int64(oid)).Scan(&schema, &name)
	if err != nil {
		return false, fmt.Errorf("name relation %d: %w", oid, err)
	}
	var has bool
	err = pgx.BeginFunc(ctx, c.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = "+strconv.Itoa(int(lockWait.Milliseconds()))); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+pgx.Identifier{schema, name}.Sanitize()+")").Scan(&has)
	})
	if err != nil {
		return false, fmt.Errorf("read %s.%s: %w", schema, name, err)
	}
	return has, nil
}

// lockWait is how long hasRows waits for a lock.
const lockWait = 100 * time.Millisecond

// unloggedRelations returns, for each of tables that is UNLOGGED or has UNLOGGED partitions (at
// any level), those relations' names. PostgreSQL writes none of their changes to the log, so
// logical replication never sees them. It refuses to publish an unlogged table, and to make a
// table it publishes by name unlogged, but not a table a FOR TABLES IN SCHEMA publication
// covers, nor a partition of a table it publishes: both can turn unlogged (a bulk load's habit)
// under a running capture.
func (c *catalog) unloggedRelations(ctx context.Context, tables map[string]uint32) (map[string][]string, error) {
	names, oids := byOID(tables)
	rows, err := c.conn.Query(ctx, `WITH RECURSIVE tree(root, relid) AS (
			SELECT oid, oid FROM pg_class WHERE oid::int8 = ANY($1::int8[])
			UNION ALL
			SELECT t.root, i.inhrelid FROM tree t JOIN pg_inherits i ON i.inhparent = t.relid
				JOIN pg_class p ON p.oid = i.inhrelid AND p.relispartition)
		SELECT t.root::int8, n.nspname || '.' || c.relname FROM tree t
			JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relpersistence = 'u' ORDER BY 2`, oids)
	if err != nil {
		return nil, fmt.Errorf("read the captured tables' persistence: %w", err)
	}
	out := map[string][]string{}
	var root int64
	var rel string
	_, err = pgx.ForEachRow(rows, []any{&root, &rel}, func() error {
		out[names[root]] = append(out[names[root]], rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the captured tables' persistence: %w", err)
	}
	return out, nil
}

// unloggedError is a table whose changes, or some of whose partitions' changes, PostgreSQL does
// not log (see unloggedRelations): none of them reaches the topic while it stays so.
type unloggedError struct {
	table     string
	relations []string // the table itself, or its unlogged partitions
}

func (e unloggedError) tableName() string { return e.table }

func (e unloggedError) Error() string {
	what := "table " + e.table + " is UNLOGGED"
	if !slices.Equal(e.relations, []string{e.table}) {
		what = fmt.Sprintf("partition(s) %s of table %s are UNLOGGED", strings.Join(e.relations, ", "), e.table)
	}
	return what + ": PostgreSQL writes none of their changes to the log, so logical replication cannot capture them " +
		"and the targets stay as they were: ALTER TABLE … SET LOGGED (capture then refreshes the table in full)"
}

// unlogged returns an unloggedError when schema.name is UNLOGGED itself (PostgreSQL would refuse
// to publish it), nil otherwise.
func (c *catalog) unlogged(ctx context.Context, schema, name string) error {
	var unlogged bool
	err := c.conn.QueryRow(ctx, "SELECT relpersistence = 'u' FROM pg_class WHERE oid = $1::regclass", quoteTable(schema, name)).Scan(&unlogged)
	if err != nil {
		return fmt.Errorf("read the persistence of %s.%s: %w", schema, name, err)
	}
	if unlogged {
		return unloggedError{table: schema + "." + name, relations: []string{schema + "." + name}}
	}
	return nil
}

// followProblem says why capture cannot follow schema.name, or returns nil: UNLOGGED, unreadable,
// or without a key it can work with (keyProblem).
func (c *catalog) followProblem(ctx context.Context, schema, name string) error {
	if err := c.unlogged(ctx, schema, name); err != nil {
		return err
	}
	if _, err := c.table(ctx, schema, name); err != nil {
		return err
	}
	return c.keyProblem(ctx, schema, name)
}

// byOID inverts tables (schema.table -> oid) for a query that takes their oids as an int8 array
// and returns rows by oid.
func byOID(tables map[string]uint32) (names map[int64]string, oids []int64) {
	names = make(map[int64]string, len(tables))
	oids = make([]int64, 0, len(tables))
	for name, oid := range tables {
		names[int64(oid)] = name
		oids = append(oids, int64(oid))
	}
	return names, oids
}

// enumLabels returns, by table, the labels (by pg_enum oid) of the enum types its columns hold:
// directly, as an array's elements or under a domain. ALTER TYPE … RENAME VALUE changes how
// every row holding a label reads, with nothing in the log; the label keeps its oid.
func (c *catalog) enumLabels(ctx context.Context, tables map[string]uint32) (map[string]map[uint32]string, error) {
	names, oids := byOID(tables)
	rows, err := c.conn.Query(ctx, `SELECT DISTINCT a.attrelid::int8, e.oid::int8, e.enumlabel::text
		FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
			JOIN pg_enum e ON e.enumtypid IN (t.oid, t.typelem, t.typbasetype)
		WHERE a.attrelid::int8 = ANY($1::int8[]) AND a.attnum > 0 AND NOT a.attisdropped`, oids)
	if err != nil {
		return nil, fmt.Errorf("read the enum labels of the captured tables' columns: %w", err)
	}
	out := map[string]map[uint32]string{}
	var rel, label int64
	var text string
	_, err = pgx.ForEachRow(rows, []any{&rel, &label, &text}, func() error {
		name := names[rel]
		if out[name] == nil {
			out[name] = map[uint32]string{}
		}
		out[name][uint32(label)] = text
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the enum labels of the captured tables' columns: %w", err)
	}
	return out, nil
}

// unpublishedOps returns the operations the publication does not publish (see
// observe.UnpublishedOperations).
func (c *catalog) unpublishedOps(ctx context.Context) ([]string, error) {
	return observe.UnpublishedOperations(ctx, c.conn, c.pub)
}

// unpublishedTable is a captured table its publication does not publish.
type unpublishedTable struct {
	name string
	// partitionsOnly says why: the table is partitioned, and the publication publishes its
	// partitions under their own names (publish_via_partition_root is off).
	partitionsOnly bool
}

// viaRootSince is the first server_version_num that publishes partitioned tables (through their
// root or their partitions, pg_publication.pubviaroot).
const viaRootSince = 130000

// unpublished returns those of tables that publication does not publish (pg_publication_tables
// expands schema and all-tables publications, and names a partitioned table published through
// its root).
func (c *catalog) unpublished(ctx context.Context, publication string, tables map[string]uint32) ([]unpublishedTable, error) {
	v, err := c.serverVersion(ctx)
	if err != nil {
		return nil, err
	}
	_, oids := byOID(tables)
	rows, err := c.conn.Query(ctx, `SELECT n.nspname || '.' || c.relname,
			c.relkind = 'p' AND $3 AND EXISTS (SELECT 1 FROM pg_publication_tables p JOIN pg_inherits i ON i.inhparent = c.oid
				JOIN pg_class pc ON pc.oid = i.inhrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
				WHERE p.pubname = $1 AND p.schemaname = pn.nspname AND p.tablename = pc.relname)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid::int8 = ANY($2::int8[]) AND NOT EXISTS (SELECT 1 FROM pg_publication_tables p
			WHERE p.pubname = $1 AND p.schemaname = n.nspname AND p.tablename = c.relname)
		ORDER BY 1`, publication, oids, v >= viaRootSince)
	if err != nil {
		return nil, fmt.Errorf("read publication %q: %w", publication, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (unpublishedTable, error) {
		var t unpublishedTable
		return t, row.Scan(&t.name, &t.partitionsOnly)
	})
	if err != nil {
		return nil, fmt.Errorf("read publication %q: %w", publication, err)
	}
	return out, nil
}
