package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// A target table dropped and created again (a migration, a restore, an operator's rebuild) is
// empty, or holds other rows, while the offsets stored beside it say it has everything up to
// them: the sink would go on from there, and the rows it wrote before would be missing for good.
// So the offsets count in one table: the InnoDB table id, which a new table gets (and a TRUNCATE
// TABLE too; the sink's own truncates are DELETEs), is stored by each sink name in a row of the
// offsets table of its own (tableIdentity).
//
//   - Every batch reads the id first in its transaction, and again after its writes, under the
//     metadata lock they took (a table swapped by RENAME TABLE while the batch waited for that
//     lock takes its writes); another id than the one the connector read fails the batch, which
//     writes nothing, and the table is read again.
//   - Before its first batch on a table, a sink name compares the id with the one it stored
//     (verifyTable). Another id sets its stored offsets back to 0 and refuses the batch as fenced,
//     so every worker of the sink rejoins and reads every partition from its start, and the error
//     log says so. The first batch of a sink name with nothing stored records the id.
//
// The id is read from information_schema.INNODB_TABLES (MySQL 8) or INNODB_SYS_TABLES (MariaDB),
// which need the PROCESS privilege; without it, or for a name InnoDB encodes (characters other
// than letters, digits and _), the check is off and the connector says so once.

// tableIdentityPartition is the partition of the table rows in the offsets table.
const tableIdentityPartition = -1

// tableIdentity is the topic under which a sink name's row for the table is kept: no Kafka topic
// has a space in its name.
func (c *Connector) tableIdentity() string {
	return "table " + c.table.schema + "." + c.table.name
}

// errTableChanged is a batch that found another table, or none, under the configured name.
var errTableChanged = errors.New("the target table is not the one the sink read: dropped, or created again")

// innodbTableViews are where the server lists InnoDB's tables and their ids, newest first.
var innodbTableViews = []string{"information_schema.INNODB_TABLES", "information_schema.INNODB_SYS_TABLES"}

// innodbName is the table's name as InnoDB lists it, or "" when InnoDB encodes it.
func (c *Connector) innodbName() string {
	valid := func(s string) bool {
		return s != "" && strings.IndexFunc(s, func(r rune) bool {
			return !(r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}) < 0
	}
	if !valid(c.table.schema) || !valid(c.table.name) {
		return ""
	}
	return c.table.schema + "/" + c.table.name
}

// readTableID returns the table's InnoDB id and the query that reads it, or 0 and "" when the
// server does not show it to this user (the check is then off; the reason is logged once).
func (c *Connector) readTableID(ctx context.Context) (int64, string) {
	name := c.innodbName()
	if name == "" {
		c.idWarned.Do(func() {
			c.log.Warn("the target table's name has characters InnoDB encodes: a table dropped and created again under it will not be noticed")
		})
		return 0, ""
	}
	var errs []string
	for _, view := range innodbTableViews {
		q := "SELECT TABLE_ID FROM " + view + " WHERE NAME = ?"
		var id int64
		err := c.db.QueryRowContext(ctx, q, name).Scan(&id)
		if err == nil {
			return id, q
		}
		errs = append(errs, err.Error())
	}
	c.idWarned.Do(func() {
		c.log.Warn("cannot read the target table's InnoDB id (it needs the PROCESS privilege): a table dropped and created again "+
			"under its name will not be noticed", zap.Strings("errors", errs))
	})
	return 0, ""
}

// checkIdentity fails a batch's transaction (first thing, and after its writes) when the table is
// not the one read.
func (c *Connector) checkIdentity(ctx context.Context, tx *sql.Tx, meta *tableMeta) error {
	if meta.id == 0 {
		return nil
	}
	var id int64
	err := tx.QueryRowContext(ctx, meta.idSQL, c.innodbName()).Scan(&id)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("mysql: check table %s: %w", c.table, err)
	}
	if id != meta.id {
		c.stale.Store(true)
		c.log.Warn("the target table changed under the sink; reading it again", zap.Int64("table_id", meta.id))
		return sink.Retryable(fmt.Errorf("mysql: %s: %w", c.table, errTableChanged))
	}
	return nil
}

// verifyTable makes sure the offsets of sinkName count in the table of meta (see above); it
// returns an error wrapping sink.ErrFenced when it has just set them back to 0.
func (c *Connector) verifyTable(ctx context.Context, sinkName string, meta *tableMeta) error {
	if meta.id == 0 {
		return nil
	}
	if id, ok := c.verified.Load(sinkName); ok && id.(int64) == meta.id {
		return nil
	}
	was, reset, err := c.storeTableID(ctx, sinkName, meta.id)
	if err != nil {
		return classify(ctx, fmt.Errorf("mysql: check the table the offsets in %s count in: %w", c.offsets, err))
	}
	c.verified.Store(sinkName, meta.id)
	if !reset {
		return nil
	}
	c.log.Error("the target table was created again since the sink last wrote to it: the rows it wrote before are gone "+
		"from it; every partition is read again from its start to fill it", zap.String("sink", sinkName),
		zap.Int64("old_table_id", was), zap.Int64("table_id", meta.id))
	return fmt.Errorf("mysql: %s was created again, so the offsets stored for sink %s were set back to 0: %w", c.table, sinkName, sink.ErrFenced)
}

// storeTableID records id as the table sinkName's offsets count in, setting them back to 0 when
// another was stored (reset); was is the id stored before.
func (c *Connector) storeTableID(ctx context.Context, sinkName string, id int64) (was int64, reset bool, err error) {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, err
	}
	defer tx.Rollback() //nolint:errcheck // after a commit, a no-op
	err = tx.QueryRowContext(ctx, c.fenceSQL, sinkName, c.tableIdentity(), tableIdentityPartition).Scan(&was)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return 0, false, err
	case was == id:
		return was, false, tx.Commit()
	default:
		reset = true
		q := "UPDATE " + c.offsets.quoted() + " SET `next_offset` = 0, `updated_at` = UTC_TIMESTAMP(6) WHERE `sink` = ? AND `partition` >= 0"
		if _, err := tx.ExecContext(ctx, q, sinkName); err != nil {
			return 0, false, err
		}
	}
	if _, err := tx.ExecContext(ctx, c.offsetSQL, sinkName, c.tableIdentity(), tableIdentityPartition, id); err != nil {
		return 0, false, err
	}
	return was, reset, tx.Commit()
}
