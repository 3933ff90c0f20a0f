//go:build linux

package capture

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// gulpPair returns capture's side of a loopback TCP connection, dialled as the replication
// connection is, and the server's side.
func gulpPair(t *testing.T) (*gulpConn, net.Conn) {
	t.Helper()
	conn, server := dialPair(t, dialReplication)
	g, ok := conn.(*gulpConn)
	if !ok {
		t.Fatalf("replication connection is a %T, want a *gulpConn", conn)
	}
	if err := g.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil { // a stall fails, never hangs
		t.Fatal(err)
	}
	return g, server
}

// TestGulpUnder: the stream finds the gulpConn to switch off in bulk under TLS too.
func TestGulpUnder(t *testing.T) {
	g, _ := gulpPair(t)
	if got := gulpUnder(g); got != g {
		t.Errorf("gulpUnder(plain) = %v", got)
	}
	if got := gulpUnder(tls.Client(g, &tls.Config{InsecureSkipVerify: true})); got != g {
		t.Errorf("gulpUnder(TLS over it) = %v", got)
	}
	if got := gulpUnder(&net.TCPConn{}); got != nil {
		t.Errorf("gulpUnder(a plain TCP connection) = %v, want nil", got)
	}
	var none *gulpConn
	none.setBulk(true) // a connection not read in gulps: nothing to switch, no panic
}

func lowat(t *testing.T, g *gulpConn) int {
	t.Helper()
	var v int
	var gerr error
	if err := g.raw.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT) }); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	return v
}

// TestGulpConnDeliversEverything sends bursts of messages far below the mark, each answered by
// the reader before the next (as the walsender waits for nothing, but a stall shows): every
// burst must arrive whole, in order, without waiting for more data.
func TestGulpConnDeliversEverything(t *testing.T) {
	g, server := gulpPair(t)
	var bursts [][]byte
	for i, msgs := range []int{1, 50, 1, 3, 2000, 1, 1} {
		var b []byte
		for m := range msgs {
			b = append(b, bytes.Repeat([]byte{byte('a' + (i+m)%26)}, 10+m%90)...)
		}
		bursts = append(bursts, b)
	}
	go func() {
		defer server.Close()
		ack := make([]byte, 1)
		for _, b := range bursts {
			for len(b) > 0 { // one write per message size, as a walsender sends
				n := min(len(b), 10+len(b)%90)
				if _, err := server.Write(b[:n]); err != nil {
					t.Error(err)
					return
				}
				b = b[n:]
			}
			if _, err := io.ReadFull(server, ack); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i, want := range bursts {
		got := make([]byte, len(want))
		if _, err := io.ReadFull(g, got); err != nil {
			t.Fatalf("burst %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("burst %d: read other bytes than sent", i)
		}
		if _, err := g.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := g.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read after the end = %d, %v; want EOF", n, err)
	}
}

// TestGulpConnLingers: a read right after one that returned data waits for the linger (or a
// gulp), with the kernel waking it for no less than gulpBytes meanwhile, and returns, in one
// read, what arrived meanwhile.
func TestGulpConnLingers(t *testing.T) {
	g, server := gulpPair(t)
	write := func(b []byte) {
		if _, err := server.Write(b); err != nil {
			t.Error(err)
		}
	}
	queued := func() (n int) {
		if err := g.raw.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	read := func(want int) {
		t.Helper()
		buf := make([]byte, 2*gulpBytes)
		if n, err := io.ReadAtLeast(g, buf, want); err != nil || n < want {
			t.Fatalf("read %d bytes, %v; want %d", n, err, want)
		}
	}
	var lingers []time.Duration
	linger := func(d time.Duration, lower func()) *time.Timer {
		lingers = append(lingers, d)
		if got := lowat(t, g); got != gulpBytes {
			t.Errorf("SO_RCVLOWAT while lingering = %d, want %d", got, gulpBytes)
		}
		for range 20 { // what the walsender sends meanwhile
			write([]byte("0123456789"))
		}
		for queued() < 200 {
		}
		return time.AfterFunc(0, lower) // the linger is over
	}
	g.afterFunc = linger

	write([]byte("first"))
	read(len("first"))
	read(200)
	if len(lingers) != 1 || lingers[0] != gulpLinger {
		t.Fatalf("lingers %v, want one of %s", lingers, gulpLinger)
	}
	if got := lowat(t, g); got != 1 {
		t.Errorf("SO_RCVLOWAT after lingering = %d, want 1", got)
	}

	// A gulp wakes the read before the linger ends (here: never).
	g.afterFunc = func(d time.Duration, lower func()) *time.Timer {
		lingers = append(lingers, d)
		go write(make([]byte, gulpBytes))
		return time.AfterFunc(time.Hour, lower)
	}
	read(gulpBytes)
	if len(lingers) < 2 {
		t.Fatalf("lingers %v, want a second one", lingers)
	}

	// A large transaction streaming (a stream block) is read as it comes.
	g.setBulk(true)
	seen := len(lingers)
	g.afterFunc = func(d time.Duration, lower func()) *time.Timer {
		lingers = append(lingers, d)
		return time.AfterFunc(0, lower)
	}
	write([]byte("x"))
	read(1)
	go func() {
		time.Sleep(10 * time.Millisecond) // after the read found nothing
		write([]byte("y"))
	}()
	read(1)
	if len(lingers) != seen {
		t.Errorf("lingered %d times in bulk, want none", len(lingers)-seen)
	}
}

// TestGulpConnDeadline: pgconn cancels a read by setting a past deadline; the read must end with
// a timeout, whether it waits idle or has just read.
func TestGulpConnDeadline(t *testing.T) {
	g, server := gulpPair(t)
	done := make(chan error, 1)
	go func() {
		_, err := g.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it wait
	if err := g.SetReadDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	isTimeout := func(what string, err error) {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: %v, want a timeout", what, err)
		}
	}
	isTimeout("idle read", <-done)

	if err := g.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := g.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err := g.Read(make([]byte, 10))
	isTimeout("read after data", err)
}
