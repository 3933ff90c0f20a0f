package mysql

import (
	"context"
	"fmt"

	"github.com/backflow-dev/backflow/pkg/sink"
)

var _ sink.OffsetResetter = (*Connector)(nil)

// ResetOffsets sets the stored next offsets of sinkName in one transaction, so that a group reset
// (`backflow replay --reset`) moves the target's position too.
func (c *Connector) ResetOffsets(ctx context.Context, sinkName string, next map[string]map[int32]int64) error {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("mysql: reset offsets in %s: %w", c.offsets, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	for topic, parts := range next {
		for p, off := range parts {
			if _, err := tx.ExecContext(ctx, c.offsetSQL, sinkName, topic, p, off); err != nil {
				return fmt.Errorf("mysql: reset offsets in %s: %w", c.offsets, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("mysql: reset offsets in %s: %w", c.offsets, err)
	}
	return nil
}
