package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// A target table dropped and created again (a migration, a restore, an operator's rebuild) is
// empty, or holds other rows, while the offsets stored beside it say it has everything up to
// them: the sink would go on from there, and the rows it wrote before would be missing for good,
// with nothing to say so. So the offsets count in one table, the one whose oid each sink name
// stored in the offsets table, in a row of its own (tableIdentity):
//
//   - Every batch checks, in its own transaction, that the table under the configured name is
//     still the one the connector read (tableCheckSQL). If not, the batch writes nothing, and
//     the connector reads the table again.
//   - Before its first batch on a table, a sink name compares the table with the one it stored
//     (verifyTable). Another table means the rows it wrote are gone: its stored offsets go back
//     to 0 and the batch is refused as fenced, so every worker of the sink, in any process,
//     rejoins and reads every partition from its start (what Kafka still has; a compacted topic
//     holds every key's last change), and the error log says so. The first batch of a sink name
//     with nothing stored records the table.

// tableIdentity is the topic under which a sink name's row for table t is kept, in partition
// tableIdentityPartition: no Kafka topic has a space in its name.
func tableIdentity(t *target) string { return "table " + t.qualifiedName() }

// tableIdentityPartition is the partition of the table rows (partition -1 of a real topic holds
// that topic's identity).
const tableIdentityPartition = -1

// tableCheckSQL fails with division_by_zero when the table named $1 is not the relation $2
// (dropped, or created again). It runs in every batch's transaction: before and after the
// statements of a batch of statements (exec), after the COPY in a COPY batch (copyTx). The check
// after runs under the lock the writes took, on the table they wrote: a table swapped by renames
// while a batch waited for its lock takes the batch's writes, since PostgreSQL looks a name up
// again after such a wait.
const tableCheckSQL = `SELECT 1 / coalesce((to_regclass($1)::oid = $2::int8::oid)::int, 0)`

// errTableChanged is a batch that found another table, or none, under the configured name.
var errTableChanged = errors.New("the target table is not the one the sink read: dropped, or created again")

// checkStatement returns the table check of t, for a batch's transaction.
func checkStatement(t *target) (string, []any) {
	return tableCheckSQL, []any{t.ident, int64(t.oid)}
}

// tableChanged handles the failure of a batch's table check: the table is read again before the
// next try, which then finds the new table (and verifyTable resets the offsets) or none.
func (c *Connector) tableChanged(t *target, b *sink.Batch, err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "22012" {
		return c.batchError(b, "check table "+t.qualifiedName(), err)
	}
	c.stale.Store(true)
	c.log.Warn("the target table changed under the sink; reading it again", zap.String("topic", b.Topic),
		zap.Int32("partition", b.Partition), zap.Uint32("oid", t.oid))
	return sink.Retryable(fmt.Errorf("%s: %w", t.qualifiedName(), errTableChanged))
}

// verifyTable makes sure the offsets of sinkName count in table t (see above); it returns an
// error wrapping sink.ErrFenced when it has just set them back to 0.
func (c *Connector) verifyTable(ctx context.Context, sinkName string, t *target, b *sink.Batch) error {
	verified := sinkName + "\x00" + t.qualifiedName()
	if oid, ok := c.verified.Load(verified); ok && oid.(uint32) == t.oid {
		return nil
	}
	var was int64
	reset := false
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, c.offIdentity, sinkName, tableIdentity(t), int32(tableIdentityPartition)).Scan(&was)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		case uint32(was) == t.oid:
			return nil
		default:
			reset = true
			if _, err := tx.Exec(ctx, c.offRewind, sinkName); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, c.offUpsert, sinkName, tableIdentity(t), int32(tableIdentityPartition), int64(t.oid))
		return err
	})
	if err != nil {
		return c.batchError(b, "check the table the offsets in "+c.cfg.offSchema+"."+c.cfg.offTable+" count in", err)
	}
	c.verified.Store(verified, t.oid)
	if !reset {
		return nil
	}
	c.log.Error("the target table was created again since the sink last wrote to it: the rows it wrote before are gone "+
		"from it; every partition is read again from its start to fill it", zap.String("sink", sinkName),
		zap.Uint32("old_oid", uint32(was)), zap.Uint32("oid", t.oid))
	return fmt.Errorf("%s was created again, so the offsets stored for sink %s were set back to 0: %w",
		t.qualifiedName(), sinkName, sink.ErrFenced)
}

// offsetsIdentitySQL reads, and locks, one row of the offsets table.
func offsetsIdentitySQL(ident string) string {
	return `SELECT next_offset FROM ` + ident + ` WHERE sink = $1 AND topic = $2 AND "partition" = $3 FOR UPDATE`
}

// offsetsRewindSQL sets every stored offset of a sink name back to 0 (its identity rows, under
// negative partitions, stay).
func offsetsRewindSQL(ident string) string {
	return `UPDATE ` + ident + ` SET next_offset = 0, updated_at = now() WHERE sink = $1 AND "partition" >= 0`
}
