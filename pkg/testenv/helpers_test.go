package testenv

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// pgconnReplication opens a replication connection and runs IDENTIFY_SYSTEM on it.
func pgconnReplication(ctx context.Context, url string) (*pgconn.PgConn, error) {
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("replication connect: %w", err)
	}
	if _, err := conn.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll(); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("IDENTIFY_SYSTEM: %w", err)
	}
	return conn, nil
}
