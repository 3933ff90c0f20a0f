package capture

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// A signal makes capture read a table into Kafka, and its where clause is run as SQL by the
// capture role. So capture acts on a re-snapshot request only when it names a captured table with
// a plain condition over that table's columns, and only when the signal table cannot be written
// by roles the pipeline does not trust. The same checks run for `backflow snapshot`, so the
// command fails with the reason instead of writing a signal capture would refuse.

// admitRequest returns why a re-snapshot of table (schema.table) with where may not run, or nil.
func (c *Capture) admitRequest(ctx context.Context, cat *catalog, table, where string) error {
	if err := c.checkSignalWriters(ctx, cat.conn); err != nil {
		return err
	}
	switch {
	case table == c.pg.SignalTable:
		return fmt.Errorf("table %s is the signal table itself", table)
	case !c.pg.Captures(table):
		return fmt.Errorf("table %s is not in source.postgres.tables: signals may re-snapshot captured tables only", table)
	case where == "":
		return nil
	}
	schema, name, _ := strings.Cut(table, ".")
	t, err := cat.table(ctx, schema, name)
	if err != nil {
		return fmt.Errorf("read the columns of %s to check the where clause: %w", table, err)
	}
	cols := make([]string, len(t.Columns))
	for i, col := range t.Columns {
		cols[i] = col.Name
	}
	if err := checkPredicate(where, cols); err != nil {
		return fmt.Errorf("where clause %q on %s refused (only a plain condition on the table's columns may be used): %w", where, table, err)
	}
	return nil
}

// checkSignalWriters fails when roles other than the signal table's owner and the capture role
// may insert into or update the signal table, unless source.postgres.signal_table_shared says
// they may all request re-snapshots.
func (c *Capture) checkSignalWriters(ctx context.Context, conn *pgx.Conn) error {
	if c.pg.SignalTableShared || c.pg.SignalTable == "" {
		return nil
	}
	schema, name, _ := strings.Cut(c.pg.SignalTable, ".")
	writers, err := signalWriters(ctx, conn, quoteTable(schema, name))
	if err != nil {
		return fmt.Errorf("check who may write the signal table %s: %w", c.pg.SignalTable, err)
	}
	if len(writers) == 0 {
		return nil
	}
	return fmt.Errorf("the signal table %s may be written by roles other than its owner: %s; re-snapshot signals are off "+
		"(REVOKE INSERT, UPDATE ON %s FROM those roles, or set source.postgres.signal_table_shared: true if they may all request re-snapshots)",
		c.pg.SignalTable, strings.Join(writers, ", "), quoteTable(schema, name))
}

// trustSignalTable says once, at startup, that signals are off because of the signal table's
// grants; each signal is checked again when it arrives, as grants may change meanwhile. It
// returns name: the stream still has to recognise the signal table's rows to skip them.
func (c *Capture) trustSignalTable(ctx context.Context, cat *catalog, name string) string {
	if err := c.checkSignalWriters(ctx, cat.conn); err != nil {
		c.log.Error("re-snapshot signals are off", zap.String("table", name), zap.Error(err))
	}
	return name
}

// signalWritersQuery lists, per role, the INSERT and UPDATE privileges on the table (or on any of
// its columns: a column grant is enough to insert a row) held by PUBLIC or roles other than its
// owner and the current role, PUBLIC first.
const signalWritersQuery = `
WITH t AS (SELECT oid, relowner, relacl FROM pg_class WHERE oid = to_regclass($1)),
grants AS (
	SELECT e.grantee, e.privilege_type FROM t, LATERAL aclexplode(t.relacl) e
	UNION
	SELECT e.grantee, e.privilege_type FROM t
	JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL,
	LATERAL aclexplode(a.attacl) e
)
SELECT CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(g.grantee)::text END
	|| ' (' || string_agg(DISTINCT g.privilege_type, ', ') || ')'
FROM grants g, t
WHERE g.privilege_type IN ('INSERT', 'UPDATE') AND g.grantee <> t.relowner
	AND g.grantee IS DISTINCT FROM (SELECT oid FROM pg_roles WHERE rolname = current_user)
GROUP BY g.grantee ORDER BY g.grantee <> 0, pg_get_userbyid(g.grantee)::text COLLATE "C"`

// signalWriters returns "role (INSERT, UPDATE)" for each role signalWritersQuery finds; none when
// the table does not exist.
func signalWriters(ctx context.Context, conn *pgx.Conn, table string) ([]string, error) {
	rows, err := conn.Query(ctx, signalWritersQuery, table)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
