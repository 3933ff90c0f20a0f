//go:build !linux

package capture

import (
	"context"
	"net"
	"time"
)

// dialReplication is the DialFunc of capture's replication connection: outside Linux, pgconn's
// default dialer (see gulpconn_linux.go for what Linux gets).
func dialReplication(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: 5 * time.Minute}
	return d.DialContext(ctx, network, addr)
}
