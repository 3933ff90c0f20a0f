package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/backflow-dev/backflow/connectors/internal/sqlname"
)

// quoteIdent quotes a MySQL identifier with backticks, doubling embedded backticks.
func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "``") + "`"
}

// tableName is a schema-qualified table name.
type tableName struct{ schema, name string }

func (t tableName) quoted() string { return quoteIdent(t.schema) + "." + quoteIdent(t.name) }
func (t tableName) String() string { return t.quoted() }

// parseTableName reads table, db.table, or backtick-quoted parts with embedded backticks
// doubled; an unqualified name is in defaultSchema.
func parseTableName(s, defaultSchema string) (tableName, error) {
	parts, err := sqlname.Split(s, '`')
	if err != nil {
		return tableName{}, fmt.Errorf("table %q: %w", s, err)
	}
	switch len(parts) {
	case 1:
		if defaultSchema == "" {
			return tableName{}, fmt.Errorf("%q is not qualified with a database and the dsn names none; write db.table", s)
		}
		return tableName{schema: defaultSchema, name: parts[0]}, nil
	case 2:
		return tableName{schema: parts[0], name: parts[1]}, nil
	}
	return tableName{}, fmt.Errorf("%q: expected table or db.table", s)
}

// column is one column of the target table.
type column struct {
	name      string
	quoted    string
	pos       int    // index in tableMeta.cols
	dataType  string // lower case: int, varchar, datetime, json, …
	nullable  bool
	generated bool
	// required: NOT NULL without a default (nor auto-increment). A record lacking it (an
	// unchanged TOAST value) cannot take the INSERT path: its row is updated instead.
	required bool
	// collation is a string column's collation; loose when it compares other than byte by byte
	// (case- or accent-insensitive, trailing spaces ignored): under MySQL's default collation
	// the keys "abc", "ABC" and "abc " are one row.
	collation string
}

// loose reports whether the column's collation takes different strings for equal. Only binary
// and the NO PAD binary collations are exact: the _bin ones of MariaDB and of MySQL before 8
// (utf8mb4_bin) ignore trailing spaces.
func (c *column) loose() bool {
	switch {
	case c.collation == "" || c.collation == "binary" || c.collation == "utf8mb4_0900_bin":
		return false
	case strings.HasSuffix(c.collation, "_nopad_bin"):
		return false
	}
	return true
}

// caseless reports whether the column's collation also takes strings differing in case or
// accents for equal: not a binary one.
func (c *column) caseless() bool { return c.loose() && !strings.HasSuffix(c.collation, "_bin") }

// exact is the column as compared byte by byte: BINARY k for a loose collation, k otherwise.
func (c *column) exact() string {
	if c.loose() {
		return "BINARY " + c.quoted
	}
	return c.quoted
}

// keyMatch is the condition that a row's key column k equals the next placeholder, byte by byte
// however loose its collation: k = ? (which uses the index) and, for a loose one, BINARY k = ?,
// whose placeholder takes the same value again (binds says how many).
func keyMatch(k *column) (cond string, binds int) {
	if k.loose() {
		return k.quoted + " = ? AND " + k.exact() + " = ?", 2
	}
	return k.quoted + " = ?", 1
}

func (c *column) temporal() bool {
	switch c.dataType {
	case "date", "datetime", "timestamp", "time", "year":
		return true
	}
	return false
}

// tableMeta is what the connector knows of the target table.
type tableMeta struct {
	cols   []*column
	byName map[string]*column // by lower-case name: MySQL column names are case-insensitive
	key    []*column          // the key columns, in the configured key order
	// guard, when set, is the key column whose update in ON DUPLICATE KEY UPDATE fails (NULL into
	// NOT NULL) unless the conflicting row has the record's key, byte for byte: the table has
	// unique indexes besides the key's, or a key column with a loose collation, and a conflict
	// with another row ("abc" for the record's "ABC") must be an error, not an update of it.
	guard     *column
	guardExpr string
	softDel   *column
	// id is the table's InnoDB id, and idSQL the query that reads it (0 and "": unknown, the
	// check of identity.go is off).
	id    int64
	idSQL string
}

func (m *tableMeta) lookup(name string) *column { return m.byName[strings.ToLower(name)] }

func (m *tableMeta) colList() string {
	names := make([]string, len(m.cols))
	for i, c := range m.cols {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

// loadMeta reads the table's columns and unique indexes and checks the key against them.
func (c *Connector) loadMeta(ctx context.Context) (*tableMeta, error) {
	var tableType string
	var engine sql.NullString
	err := c.db.QueryRowContext(ctx, "SELECT TABLE_TYPE, ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
		c.table.schema, c.table.name).Scan(&tableType, &engine)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("with.table: table %s does not exist", c.table)
	}
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("mysql: read table %s: %w", c.table, err))
	}
	if tableType != "BASE TABLE" {
		return nil, fmt.Errorf("with.table: %s is a %s, not a base table", c.table, strings.ToLower(tableType))
	}
	var tx sql.NullString
	err = c.db.QueryRowContext(ctx, "SELECT TRANSACTIONS FROM information_schema.ENGINES WHERE ENGINE = ?", engine.String).Scan(&tx)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, classify(ctx, fmt.Errorf("mysql: read engine of %s: %w", c.table, err))
	}
	if err == nil && tx.String != "YES" {
		return nil, fmt.Errorf("with.table: %s uses the %s engine, which has no transactions; rows and offsets must commit together (use InnoDB)", c.table, engine.String)
	}

	m := &tableMeta{byName: map[string]*column{}}
	m.id, m.idSQL = c.readTableID(ctx)
	rows, err := c.db.QueryContext(ctx, `SELECT COLUMN_NAME, DATA_TYPE, IS_NULLABLE, COALESCE(EXTRA, ''), COALESCE(GENERATION_EXPRESSION, ''),
			COLUMN_DEFAULT IS NOT NULL, COALESCE(COLLATION_NAME, '')
		FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, c.table.schema, c.table.name)
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("mysql: read columns of %s: %w", c.table, err))
	}
	for rows.Next() {
		var name, dt, nullable, extra, gen, collation string
		var hasDefault bool
		if err := rows.Scan(&name, &dt, &nullable, &extra, &gen, &hasDefault, &collation); err != nil {
			rows.Close()
			return nil, classify(ctx, fmt.Errorf("mysql: read columns of %s: %w", c.table, err))
		}
		ex := strings.ToUpper(extra)
		col := &column{
			name: name, quoted: quoteIdent(name), pos: len(m.cols), dataType: strings.ToLower(dt),
			nullable: nullable == "YES", collation: strings.ToLower(collation),
			generated: gen != "" || strings.Contains(ex, "VIRTUAL") || strings.Contains(ex, "STORED GENERATED") || strings.Contains(ex, "PERSISTENT") || strings.Contains(ex, "ROW START") || strings.Contains(ex, "ROW END"),
		}
		col.required = !col.nullable && !hasDefault && !col.generated && !strings.Contains(ex, "AUTO_INCREMENT")
		m.cols = append(m.cols, col)
		m.byName[strings.ToLower(name)] = col
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, classify(ctx, fmt.Errorf("mysql: read columns of %s: %w", c.table, err))
	}
	if len(m.cols) == 0 {
		return nil, fmt.Errorf("with.table: table %s does not exist (no columns visible to this user)", c.table)
	}

	for _, k := range c.key {
		col := m.lookup(k)
		if col == nil {
			return nil, fmt.Errorf("key: field %q is not a column of table %s (columns: %s)", k, c.table, m.colList())
		}
		if col.generated {
			return nil, fmt.Errorf("key: column %q of table %s is generated and cannot be written", k, c.table)
		}
		m.key = append(m.key, col)
	}

	type index struct {
		name   string
		cols   []string
		prefix bool
	}
	var uniques []*index
	rows, err = c.db.QueryContext(ctx, `SELECT INDEX_NAME, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX`, c.table.schema, c.table.name)
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("mysql: read indexes of %s: %w", c.table, err))
	}
	for rows.Next() {
		var name string
		var col sql.NullString
		var sub sql.NullInt64
		if err := rows.Scan(&name, &col, &sub); err != nil {
			rows.Close()
			return nil, classify(ctx, fmt.Errorf("mysql: read indexes of %s: %w", c.table, err))
		}
		if len(uniques) == 0 || uniques[len(uniques)-1].name != name {
			uniques = append(uniques, &index{name: name})
		}
		ix := uniques[len(uniques)-1]
		ix.cols = append(ix.cols, strings.ToLower(col.String)) // NULL: a functional key part
		ix.prefix = ix.prefix || sub.Valid || !col.Valid
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, classify(ctx, fmt.Errorf("mysql: read indexes of %s: %w", c.table, err))
	}
	keySet := make([]string, len(m.key))
	for i, k := range m.key {
		keySet[i] = strings.ToLower(k.name)
	}
	slices.Sort(keySet)
	covered, other := false, false
	var descr []string
	for _, ix := range uniques {
		set := slices.Clone(ix.cols)
		slices.Sort(set)
		if slices.Equal(set, keySet) && !ix.prefix {
			covered = true
		} else {
			other = true
		}
		descr = append(descr, fmt.Sprintf("%s (%s)", ix.name, strings.Join(ix.cols, ", ")))
	}
	if !covered {
		have := "it has none"
		if len(descr) > 0 {
			have = "its unique keys: " + strings.Join(descr, "; ")
		}
		return nil, fmt.Errorf("key: (%s) is not a PRIMARY or UNIQUE key of table %s on exactly those columns (%s)", strings.Join(c.key, ", "), c.table, have)
	}
	if other || slices.ContainsFunc(m.key, (*column).loose) {
		for _, k := range m.key {
			if !k.nullable {
				m.guard = k
				break
			}
		}
		if m.guard != nil {
			conds := make([]string, len(m.key))
			for i, k := range m.key {
				conds[i] = k.exact() + " <=> VALUES(" + k.quoted + ")"
			}
			m.guardExpr = "IF(" + strings.Join(conds, " AND ") + ", VALUES(" + m.guard.quoted + "), NULL)"
		}
	}
	if c.softDelete != "" {
		m.softDel = m.lookup(c.softDelete)
		if m.softDel == nil {
			return nil, fmt.Errorf("with.soft_delete_column: %q is not a column of table %s (columns: %s)", c.softDelete, c.table, m.colList())
		}
		switch m.softDel.dataType {
		case "tinyint", "smallint", "mediumint", "int", "bigint", "bit", "date", "datetime", "timestamp":
		default:
			return nil, fmt.Errorf("with.soft_delete_column: column %q of table %s has type %s; expected boolean (tinyint), date, datetime or timestamp", c.softDelete, c.table, m.softDel.dataType)
		}
		if m.softDel.generated || slices.Contains(m.key, m.softDel) {
			return nil, fmt.Errorf("with.soft_delete_column: column %q of table %s is a key or generated column", c.softDelete, c.table)
		}
	}
	return m, nil
}
