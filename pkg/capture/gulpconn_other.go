//go:build !linux

package capture

import (
	"context"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// dialReplication is the DialFunc of capture's replication connection: outside Linux, pgconn's
// default dialer (see gulpconn_linux.go for what Linux gets).
func dialReplication(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: 5 * time.Minute}
	return d.DialContext(ctx, network, addr)
}

// gulpConn is Linux's; elsewhere there is none.
type gulpConn struct{}

func (*gulpConn) setBulk(bool) {}

func gulpOf(*pgconn.PgConn) *gulpConn { return nil }
