package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/backflow-dev/backflow/pkg/sink"
)

var _ sink.OffsetResetter = (*Connector)(nil)

// ResetOffsets sets the stored next offsets of sinkName, in one transaction, so that a group
// reset (`backflow replay --reset`) moves the target's position too.
func (c *Connector) ResetOffsets(ctx context.Context, sinkName string, next map[string]map[int32]int64) error {
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		for topic, parts := range next {
			for p, off := range parts {
				if _, err := tx.Exec(ctx, c.offUpsert, sinkName, topic, p, off); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reset offsets in %s: %w", c.offIdent, err)
	}
	return nil
}
