package mysql

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/backflow-dev/backflow/pkg/sink"
)

var _ sink.Check = Check

// Check connects with the sink's settings and reports, writing nothing, every problem that would
// stop the sink: a missing table or column, a key without a unique index, a privilege the user
// lacks on the table or the offsets table. Privileges are checked with EXPLAIN of the statements
// the connector runs: the server checks them as it would for the statement, and runs nothing.
func Check(ctx context.Context, p sink.Params, fields []string) error {
	o, err := parseOptions(p)
	if err != nil {
		return err
	}
	c, err := newConnector(o, p)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.db.QueryRowContext(ctx, "SELECT @@max_allowed_packet").Scan(new(int64)); err != nil {
		return fmt.Errorf("mysql: connect to %s as %s: %w", c.addr, c.user, err)
	}
	var problems []error
	meta, err := c.loadMeta(ctx)
	if err != nil {
		problems = append(problems, err)
	} else {
		problems = append(problems, c.checkTable(ctx, meta, fields)...)
	}
	if err := c.checkOffsetsTable(ctx); err != nil {
		problems = append(problems, err)
	}
	return errors.Join(problems...)
}

// checkTable reports mapped fields the table lacks and statements the user may not run on it.
func (c *Connector) checkTable(ctx context.Context, meta *tableMeta, fields []string) []error {
	var problems, missing []string
	var cols []string
	for _, f := range fields {
		if col := meta.lookup(f); col == nil {
			missing = append(missing, f)
		} else {
			cols = append(cols, col.quoted)
		}
	}
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("with.table: %s has no column %s for the mapped fields", c.table, strings.Join(missing, ", ")))
	}
	var keyCond []string
	for _, k := range meta.key {
		keyCond = append(keyCond, k.quoted+" = NULL")
	}
	stmts := []string{"SELECT " + meta.colList() + " FROM " + c.table.quoted() + " WHERE " + strings.Join(keyCond, " AND ")}
	if len(cols) > 0 {
		var set []string
		for _, q := range cols {
			set = append(set, q+" = VALUES("+q+")")
		}
		stmts = append(stmts, "INSERT INTO "+c.table.quoted()+" ("+strings.Join(cols, ", ")+") VALUES ("+
			strings.TrimSuffix(strings.Repeat("NULL, ", len(cols)), ", ")+") ON DUPLICATE KEY UPDATE "+strings.Join(set, ", "))
	}
	if c.softDelete == "" {
		stmts = append(stmts, "DELETE FROM "+c.table.quoted()+" WHERE "+strings.Join(keyCond, " AND "))
	}
	for _, st := range stmts {
		if _, err := c.db.ExecContext(ctx, "EXPLAIN "+st); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", c.table, err))
		}
	}
	out := make([]error, len(problems))
	for i, p := range problems {
		out[i] = errors.New(p)
	}
	return out
}

// checkOffsetsTable reports an offsets table the user may not use, or may not create.
func (c *Connector) checkOffsetsTable(ctx context.Context) error {
	cols, err := c.columnNames(ctx, c.offsets)
	if err != nil {
		return fmt.Errorf("mysql: read offsets table %s: %w", c.offsets, err)
	}
	if len(cols) == 0 {
		var cur string
		if err := c.db.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&cur); err != nil {
			return fmt.Errorf("mysql: read the current user: %w", err)
		}
		at := strings.LastIndex(cur, "@")
		grantee := "'" + cur[:max(at, 0)] + "'@'" + cur[at+1:] + "'"
		var may bool
		// A user's global or schema-level CREATE; grants through roles are not looked at.
		err := c.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ? AND PRIVILEGE_TYPE = 'CREATE')
			OR EXISTS (SELECT 1 FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ? AND PRIVILEGE_TYPE = 'CREATE' AND ? LIKE TABLE_SCHEMA)`,
			grantee, grantee, c.offsets.schema).Scan(&may)
		if err != nil {
			return fmt.Errorf("mysql: read the privileges of %s: %w", c.user, err)
		}
		if !may {
			return fmt.Errorf("with.offsets_table: %s is missing and %s may not create it: GRANT CREATE ON %s.* TO the user, or create it", c.offsets, c.user, quoteIdent(c.offsets.schema))
		}
		return nil
	}
	if _, err := c.db.ExecContext(ctx, "EXPLAIN "+c.offsetSQL, c.sinkName, "", 0, int64(0)); err != nil {
		return fmt.Errorf("with.offsets_table: %s: %w", c.offsets, err)
	}
	if _, err := c.db.ExecContext(ctx, "EXPLAIN "+c.fenceSQL, c.sinkName, "", 0); err != nil {
		return fmt.Errorf("with.offsets_table: %s: %w", c.offsets, err)
	}
	return nil
}
