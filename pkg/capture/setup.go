package capture

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// preflight checks what capture needs from the server and the role, and says how to fix it.
func preflight(ctx context.Context, conn *pgx.Conn) error {
	var walLevel string
	if err := conn.QueryRow(ctx, "SELECT current_setting('wal_level')").Scan(&walLevel); err != nil {
		return fmt.Errorf("read wal_level: %w", err)
	}
	if walLevel != "logical" {
		return fmt.Errorf("wal_level is %q but capture needs logical: run ALTER SYSTEM SET wal_level = logical (or set it in postgresql.conf) and restart PostgreSQL", walLevel)
	}
	var user string
	var super, repl bool
	// Managed services grant replication through a role (Amazon RDS: rds_replication).
	err := conn.QueryRow(ctx, `SELECT current_user, rolsuper, rolreplication OR coalesce((SELECT bool_or(pg_has_role(current_user, oid, 'member'))
		FROM pg_roles WHERE rolname IN ('rds_replication')), false) FROM pg_roles WHERE rolname = current_user`).Scan(&user, &super, &repl)
	if err != nil {
		return fmt.Errorf("read role attributes: %w", err)
	}
	if !super && !repl {
		return fmt.Errorf("role %q may not use replication: run ALTER ROLE %s REPLICATION as a superuser", user, quoteIdent(user))
	}
	return nil
}

// ensurePublication creates the publication for the configured tables when it is absent, and adds
// tables missing from an existing one. Publications are created before the slot: pgoutput fails
// for changes made between a slot's creation and its publication's.
//
// A partitioned table's changes must come under its own name, not its partitions' (which would
// send them to topics of their own that no sink of the table reads): capture's publication
// publishes through the partition root, and an existing one that does not is switched to.
//
// It returns the tables it added to an existing publication, and the partitioned ones it switched
// to publishing through their root: the changes of either may have been left out meanwhile.
func ensurePublication(ctx context.Context, conn *pgx.Conn, name string, entries []string, tables [][2]string) (republished []unpublishedTable, err error) {
	var viaRootKnown bool // the option exists from PostgreSQL 13 on
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int >= 130000").Scan(&viaRootKnown); err != nil {
		return nil, fmt.Errorf("read the server version: %w", err)
	}
	viaRootCol := "true"
	if viaRootKnown {
		viaRootCol = "coalesce(bool_or(pubviaroot), false)"
	}
	var exists, all, viaRoot bool
	err = conn.QueryRow(ctx, `SELECT count(*) > 0, coalesce(bool_or(puballtables), false), `+viaRootCol+`
		FROM pg_publication WHERE pubname = $1`, name).Scan(&exists, &all, &viaRoot)
	if err != nil {
		return nil, fmt.Errorf("look up publication %q: %w", name, err)
	}
	var switched []string
	if exists && !viaRoot {
		if switched, err = publishViaRoot(ctx, conn, name, tables); err != nil {
			return nil, err
		}
		for _, t := range switched {
			republished = append(republished, unpublishedTable{name: t, partitionsOnly: true})
		}
	}
	if !exists {
		var parts []string
		for _, e := range entries {
			if schema, ok := strings.CutSuffix(e, ".*"); ok {
				parts = append(parts, "TABLES IN SCHEMA "+quoteIdent(schema))
			} else {
				s, t, _ := strings.Cut(e, ".")
				parts = append(parts, "TABLE "+quoteTable(s, t))
			}
		}
		sql := fmt.Sprintf("CREATE PUBLICATION %s FOR %s", quoteIdent(name), strings.Join(parts, ", "))
		if viaRootKnown {
			sql += " WITH (publish_via_partition_root = true)"
		}
		if _, err := conn.Exec(ctx, sql); err != nil {
			return nil, fmt.Errorf("create publication %q (or create it yourself as a superuser): %w", name, err)
		}
		return nil, nil
	}
	if all {
		return republished, nil
	}
	for _, t := range tables {
		var in bool
		err := conn.QueryRow(ctx, "SELECT count(*) > 0 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3", name, t[0], t[1]).Scan(&in)
		if err != nil {
			return nil, fmt.Errorf("read publication %q: %w", name, err)
		}
		if in {
			continue
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", quoteIdent(name), quoteTable(t[0], t[1]))); err != nil {
			return nil, fmt.Errorf("add %s.%s to publication %q: %w", t[0], t[1], name, err)
		}
		if !slices.Contains(switched, t[0]+"."+t[1]) {
			republished = append(republished, unpublishedTable{name: t[0] + "." + t[1]})
		}
	}
	return republished, nil
}

// publishViaRoot switches publication name to publishing through the partition root when some of
// tables are partitioned, and returns those (schema.table).
func publishViaRoot(ctx context.Context, conn *pgx.Conn, name string, tables [][2]string) ([]string, error) {
	var partitioned []string
	for _, t := range tables {
		var is bool
		err := conn.QueryRow(ctx, "SELECT relkind = 'p' FROM pg_class WHERE oid = $1::regclass", quoteTable(t[0], t[1])).Scan(&is)
		if err != nil {
			return nil, fmt.Errorf("look up table %s.%s: %w", t[0], t[1], err)
		}
		if is {
			partitioned = append(partitioned, t[0]+"."+t[1])
		}
	}
	if len(partitioned) == 0 {
		return nil, nil
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s SET (publish_via_partition_root = true)", quoteIdent(name))); err != nil {
		return nil, fmt.Errorf("publication %q sends the changes of partitioned table %s under its partitions' names, to topics no sink of the table reads: "+
			"run ALTER PUBLICATION %s SET (publish_via_partition_root = true) as its owner: %w", name, partitioned[0], quoteIdent(name), err)
	}
	return partitioned, nil
}

// ensureSlot makes sure the slot exists. A new slot is created with an exported snapshot when a
// snapshot is wanted: its name is returned with the slot's consistent point, and is valid only
// while repl stays idle.
func (c *Capture) ensureSlot(ctx context.Context, cat *catalog, repl *pgconn.PgConn, wantSnapshot bool) (string, pglogrepl.LSN, error) {
	var plugin string
	var confirmed *string
	err := cat.conn.QueryRow(ctx, "SELECT plugin, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", c.pg.Slot).Scan(&plugin, &confirmed)
	switch {
	case err == nil:
		if plugin != "pgoutput" {
			return "", 0, setupError{fmt.Errorf("replication slot %q uses plugin %q; capture needs pgoutput: drop it or pick another slot name", c.pg.Slot, plugin)}
		}
		var lsn pglogrepl.LSN
		if confirmed != nil {
			lsn, _ = pglogrepl.ParseLSN(*confirmed)
		}
		c.log.Info("using existing replication slot", zap.String("slot", c.pg.Slot), zap.String("confirmed_flush_lsn", lsn.String()))
		return "", lsn, nil
	case err != pgx.ErrNoRows:
		return "", 0, fmt.Errorf("look up replication slot %q: %w", c.pg.Slot, err)
	}
	action := "NOEXPORT_SNAPSHOT"
	if wantSnapshot {
		action = "EXPORT_SNAPSHOT"
	}
	stop := c.watchSlotCreation(ctx)
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, c.pg.Slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: action})
	stop()
	if err != nil {
		return "", 0, fmt.Errorf("create replication slot %q: %w", c.pg.Slot, err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return "", 0, fmt.Errorf("slot %q consistent point %q: %w", c.pg.Slot, res.ConsistentPoint, err)
	}
	c.log.Info("created replication slot", zap.String("slot", c.pg.Slot), zap.String("consistent_point", lsn.String()))
	return res.SnapshotName, lsn, nil
}

// ensureSignalTable creates the re-snapshot signal table when absent. Without the privilege to
// create it, capture runs on without re-snapshot signals and says so.
func (c *Capture) ensureSignalTable(ctx context.Context, cat *catalog) string {
	name := c.pg.SignalTable
	schema, table, ok := strings.Cut(name, ".")
	if name == "" || !ok {
		return ""
	}
	var exists bool
	if err := cat.conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", quoteTable(schema, table)).Scan(&exists); err == nil && exists {
		// CREATE … IF NOT EXISTS needs CREATE on the schema even when the table is there.
		return c.trustSignalTable(ctx, cat, name)
	}
	_, err := cat.conn.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
		id bigserial PRIMARY KEY, type text NOT NULL, data text NOT NULL DEFAULT '{}',
		created_at timestamptz NOT NULL DEFAULT now())`, quoteTable(schema, table)))
	if err != nil {
		c.log.Warn("cannot create the signal table; re-snapshots by signal are off", zap.String("table", name), zap.Error(err))
		return ""
	}
	return c.trustSignalTable(ctx, cat, name)
}
