//go:build linux

package capture

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The replication stream is read in gulps: PostgreSQL's walsender sends every message of a
// transaction with a send() of its own, and a reader woken for each of them (a wakeup per row,
// across CPUs) costs both processes more than the rows themselves. At 20,000 changes/s on
// 2 cores this made the walsender fall behind for hundreds of milliseconds at a time, its own
// CPU half in send() (the e2e bench, see the README's "Benchmarks").
//
// So, on Linux, the replication socket keeps SO_RCVLOWAT at gulpBytes: the kernel wakes no
// reader until that much is queued. A read that finds nothing right after one that found data
// sleeps gulpLinger once and takes what arrived meanwhile; a read that still finds nothing
// lowers the mark to one byte and waits as usual, so that the first message after a quiet spell
// wakes capture at once. A message never waits more than gulpLinger for a reader that has just
// read, and never at all for an idle one.
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
	g := &gulpConn{TCPConn: tc, raw: raw, sleep: time.Sleep}
	if g.setLowat(gulpBytes) != nil {
		return conn, nil // read as usual
	}
	return g, nil
}

// gulpConn is a TCP connection read in gulps. Reads are not concurrent (pgconn reads from one
// goroutine at a time), so its state needs no lock.
type gulpConn struct {
	*net.TCPConn
	raw   syscall.RawConn
	sleep func(time.Duration) // time.Sleep; tests watch it
	// primed is set when the last read returned data: the sender is likely still sending.
	primed bool
}

func (c *gulpConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := c.readQueued(p)
	if n == 0 && err == nil && c.primed {
		c.sleep(gulpLinger)
		n, err = c.readQueued(p)
	}
	if n == 0 && err == nil { // idle: wake for the first byte
		if err := c.setLowat(1); err != nil {
			return 0, c.opError(err)
		}
		n, err = c.TCPConn.Read(p)
		if lerr := c.setLowat(gulpBytes); lerr != nil && err == nil {
			err = c.opError(lerr)
		}
	}
	c.primed = n > 0
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
