//go:build linux

package capture

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"golang.org/x/sys/unix"
)

// The replication stream is read in gulps: PostgreSQL's walsender sends every message of a
// transaction with a send() of its own, and a reader woken for each of them (a wakeup per row,
// across CPUs) costs both processes more than the rows themselves. At 20,000 changes/s on
// 2 cores this made the walsender fall behind for hundreds of milliseconds at a time, its own
// CPU half in send() (the e2e bench, see the README's "Benchmarks").
//
// So, on Linux, a read of the replication socket that finds nothing right after one that found
// data raises the socket's SO_RCVLOWAT to gulpBytes, so that the kernel wakes it for no less, and
// waits for gulpBytes or gulpLinger, whichever comes first, then takes what arrived meanwhile.
// Any other read that finds nothing waits as usual, so that the first message after a quiet
// spell wakes capture at once: a message never waits more than gulpLinger for a reader that has
// just read, and never at all for an idle one. The mark is one byte but while lingering, and a
// large transaction streaming (a stream block, setBulk) is read as it comes: lingering there, or
// a mark kept high throughout, made the bench's 2,000,000-row transaction reach Kafka 10 to 25 %
// later (RESULT bigtx; the kernel's receive buffer stayed near 430 KB instead of growing to
// several MB).
const (
	gulpBytes  = 64 << 10
	gulpLinger = time.Millisecond
)

// dialReplication is the DialFunc of capture's replication connection.
func dialReplication(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: 5 * time.Minute} // pgconn's default dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc, ok := conn.(*net.TCPConn)
	if !ok { // a Unix socket wakes its reader whatever the mark
		return conn, nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return conn, nil
	}
	g := &gulpConn{TCPConn: tc, raw: raw, afterFunc: time.AfterFunc}
	if g.setLowat(1) != nil {
		return conn, nil // read as usual
	}
	return g, nil
}

// gulpConn is a TCP connection read in gulps. Reads are not concurrent (pgconn reads from one
// goroutine at a time), so its state needs no lock.
type gulpConn struct {
	*net.TCPConn
	raw       syscall.RawConn
	afterFunc func(time.Duration, func()) *time.Timer // time.AfterFunc; tests watch it
	// primed is set when the last read returned data: the sender is likely still sending.
	primed bool
	// bulk is set while a large transaction streams (a stream block): it comes as fast as the
	// walsender decodes, and reads that linger made it reach Kafka 25 % later (RESULT bigtx).
	bulk atomic.Bool
}

// setBulk turns lingering off (true) or on again. Safe on nil, for a connection not read in gulps.
func (c *gulpConn) setBulk(on bool) {
	if c != nil {
		c.bulk.Store(on)
	}
}

// gulpOf returns the gulpConn under a replication connection, nil when it is read as usual (or
// there is none, as in tests of the stream alone).
func gulpOf(conn *pgconn.PgConn) *gulpConn {
	if conn == nil {
		return nil
	}
	return gulpUnder(conn.Conn())
}

// gulpUnder returns the gulpConn nc is, or that a TLS connection nc runs over.
func gulpUnder(nc net.Conn) *gulpConn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	g, _ := nc.(*gulpConn)
	return g
}

func (c *gulpConn) Read(p []byte) (int, error) {
	if !c.primed || c.bulk.Load() {
		n, err := c.TCPConn.Read(p) // idle: wake at the first byte; in bulk: as it comes
		c.primed = n > 0
		return n, err
	}
	n, err := c.readQueued(p)
	if n == 0 && err == nil {
		n, err = c.linger(p)
	}
	c.primed = n > 0
	return n, err
}

// linger reads once gulpBytes are queued, or anything once gulpLinger has passed: a timer
// lowers the mark back to one byte, which wakes the read at once if anything is queued (the
// kernel checks on setsockopt). The read itself is net.Conn's, so deadlines (pgconn's
// cancellation) hold.
func (c *gulpConn) linger(p []byte) (int, error) {
	if c.setLowat(gulpBytes) != nil {
		return c.TCPConn.Read(p) // the mark is unchanged: read as usual
	}
	lowered := make(chan error, 1)
	timer := c.afterFunc(gulpLinger, func() { lowered <- c.setLowat(1) })
	n, err := c.TCPConn.Read(p)
	var lerr error
	if timer.Stop() {
		lerr = c.setLowat(1)
	} else {
		lerr = <-lowered
	}
	if lerr != nil && err == nil {
		err = c.opError(lerr)
	}
	return n, err
}

// readQueued reads what the socket holds without waiting: 0 and no error when it holds nothing.
// It honours the read deadline (pgconn's cancellation) as a regular read does.
func (c *gulpConn) readQueued(p []byte) (int, error) {
	var n int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), p)
			if !errors.Is(rerr, unix.EINTR) {
				return true // one try: never wait here
			}
		}
	})
	switch {
	case err != nil:
		return 0, c.opError(err)
	case errors.Is(rerr, unix.EAGAIN):
		return 0, nil
	case rerr != nil:
		return 0, c.opError(rerr)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *gulpConn) setLowat(n int) error {
	var serr error
	if err := c.raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, n)
	}); err != nil {
		return err
	}
	return serr
}

// opError wraps err as net.Conn's own reads do, so that callers see the same errors (a timeout
// is still a timeout).
func (c *gulpConn) opError(err error) error {
	if _, ok := err.(*net.OpError); ok {
		return err
	}
	return &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
