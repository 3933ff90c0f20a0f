package capture

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"

	"github.com/backflow-dev/backflow/pkg/config"
)

// Check looks at the source as capture would at start, and changes nothing: the server's
// wal_level and the role's REPLICATION attribute, a replication connection (pg_hba.conf), every
// configured table (present, readable, keyed), the publication (present and covering the tables,
// or one the role may create or extend) and the slot (present with pgoutput, or room for a new
// one). It returns every problem found, each saying how to fix it; none means capture can start.
// It is `backflow validate --connect`.
func Check(ctx context.Context, cfg *config.Pipeline, opts ...Opt) []error {
	c := New(cfg, opts...)
	conn, err := c.connect(ctx, false)
	if err != nil {
		return []error{err}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var problems []error
	if err := preflight(ctx, conn); err != nil {
		problems = append(problems, err)
	}
	if err := c.checkReplicationConnection(ctx); err != nil {
		problems = append(problems, err)
	}
	cat := newCatalog(conn, c.pg.Keys)
	cat.pub = c.pg.Publication // a column list leaving out a key is a table's problem
	tables, missing, err := cat.resolveTables(ctx, c.pg.Tables)
	switch {
	case err != nil:
		return append(problems, err)
	case len(missing) > 0:
		return append(problems, cat.missingError(ctx, missing))
	case len(tables) == 0:
		return append(problems, errors.New("source.postgres.tables: no tables to capture"))
	}
	found, unkeyed := tableProblems(ctx, cat, tables)
	for _, p := range found {
		problems = append(problems, fmt.Errorf("%s", p))
	}
	for _, nk := range unkeyed {
		problems = append(problems, nk)
	}
	problems = append(problems, publicationProblems(ctx, cat, c.pg.Publication, c.pg.Tables, tables)...)
	ops, err := cat.unpublishedOps(ctx)
	switch {
	case err != nil:
		problems = append(problems, err)
	case len(ops) > 0:
		problems = append(problems, fmt.Errorf("publication %q does not publish %s, so those changes never reach the targets: "+
			"ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate'), and use a sink's on_delete or on_truncate: ignore "+
			"to keep a target from applying them", c.pg.Publication, strings.Join(ops, ", "), quoteIdent(c.pg.Publication)))
	}
	if err := slotProblem(ctx, cat, c.pg.Slot); err != nil {
		problems = append(problems, err)
	}
	return problems
}

// checkReplicationConnection opens a replication connection and identifies the system, which is
// what pg_hba.conf must allow (a "replication" line, or "all" for logical replication) before
// any change can be streamed.
func (c *Capture) checkReplicationConnection(ctx context.Context) error {
	repl, err := c.connect(ctx, true)
	if err != nil {
		return fmt.Errorf("replication connection: %w (pg_hba.conf must allow the role to connect with replication=database)", err)
	}
	defer repl.Close(context.WithoutCancel(ctx))
	if _, err := pglogrepl.IdentifySystem(ctx, repl.PgConn()); err != nil {
		return fmt.Errorf("replication connection: IDENTIFY_SYSTEM: %w", err)
	}
	return nil
}

// publicationProblems says what stops capture from creating the publication, or from adding the
// captured tables an existing one lacks. Adding a table needs ownership of the publication and of
// the table; a schema entry ("s.*") needs a superuser; creating one needs CREATE on the database.
func publicationProblems(ctx context.Context, cat *catalog, name string, entries []string, tables [][2]string) []error {
	var exists, all, ownsPub, super bool
	err := cat.conn.QueryRow(ctx, `SELECT count(p.*) > 0, coalesce(bool_or(p.puballtables), false),
			coalesce(bool_or(pg_has_role(p.pubowner, 'USAGE')), false),
			(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
		FROM pg_publication p WHERE p.pubname = $1`, name).Scan(&exists, &all, &ownsPub, &super)
	if err != nil {
		return []error{fmt.Errorf("look up publication %q: %w", name, err)}
	}
	if all || super {
		return nil
	}
	if !exists {
		return createPublicationProblems(ctx, cat, name, entries, tables)
	}
	var problems []error
	for _, t := range tables {
		var in, ownsTable bool
		err := cat.conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3),
				pg_has_role((SELECT relowner FROM pg_class WHERE oid = $4::regclass), 'USAGE')`,
			name, t[0], t[1], quoteTable(t[0], t[1])).Scan(&in, &ownsTable)
		if err != nil {
			return append(problems, fmt.Errorf("read publication %q: %w", name, err))
		}
		if in || (ownsPub && ownsTable) {
			continue
		}
		problems = append(problems, fmt.Errorf("publication %q lacks %s.%s and the capture role may not add it (it must own both): run ALTER PUBLICATION %s ADD TABLE %s as their owner",
			name, t[0], t[1], quoteIdent(name), quoteTable(t[0], t[1])))
	}
	return problems
}

// createPublicationProblems says what stops the capture role from creating the publication.
func createPublicationProblems(ctx context.Context, cat *catalog, name string, entries []string, tables [][2]string) []error {
	var problems []error
	fix := fmt.Sprintf("or create it as a superuser: CREATE PUBLICATION %s FOR TABLE …", quoteIdent(name))
	var canCreate bool
	if err := cat.conn.QueryRow(ctx, "SELECT has_database_privilege(current_database(), 'CREATE')").Scan(&canCreate); err != nil {
		return []error{fmt.Errorf("read database privileges: %w", err)}
	}
	if !canCreate {
		problems = append(problems, fmt.Errorf("publication %q is missing and the capture role may not create it: GRANT CREATE ON DATABASE to the role, %s", name, fix))
	}
	for _, e := range entries {
		if strings.HasSuffix(e, ".*") {
			problems = append(problems, fmt.Errorf("publication %q is missing and only a superuser may create one for a whole schema (%s): %s", name, e, fix))
		}
	}
	for _, t := range tables {
		var owns bool
		if err := cat.conn.QueryRow(ctx, "SELECT pg_has_role((SELECT relowner FROM pg_class WHERE oid = $1::regclass), 'USAGE')", quoteTable(t[0], t[1])).Scan(&owns); err != nil {
			return append(problems, fmt.Errorf("read the owner of %s.%s: %w", t[0], t[1], err))
		}
		if !owns {
			problems = append(problems, fmt.Errorf("publication %q is missing and the capture role does not own %s.%s, so it may not publish it: %s", name, t[0], t[1], fix))
		}
	}
	return problems
}

// slotProblem says what stops capture from using the slot: another plugin's slot of that name, a
// slot whose WAL is gone, or no room for a new one.
func slotProblem(ctx context.Context, cat *catalog, slot string) error {
	var plugin, walStatus *string
	var used, max int
	err := cat.conn.QueryRow(ctx, `SELECT (SELECT plugin FROM pg_replication_slots WHERE slot_name = $1),
			(SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1),
			(SELECT count(*) FROM pg_replication_slots), current_setting('max_replication_slots')::int`, slot).Scan(&plugin, &walStatus, &used, &max)
	if err != nil {
		return fmt.Errorf("read replication slots: %w", err)
	}
	switch {
	case plugin != nil && *plugin != "pgoutput":
		return fmt.Errorf("replication slot %q uses plugin %q; capture needs pgoutput: drop it or pick another slot name", slot, *plugin)
	case walStatus != nil && *walStatus == "lost":
		return fmt.Errorf("replication slot %q has lost the WAL it needs (wal_status lost): capture will act by source.postgres.on_slot_loss", slot)
	case plugin == nil && used >= max:
		return fmt.Errorf("replication slot %q is missing and all %d slots are in use (max_replication_slots): drop an unused slot or raise the setting", slot, max)
	}
	return nil
}
