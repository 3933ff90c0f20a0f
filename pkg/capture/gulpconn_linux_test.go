//go:build linux

package capture

import (
	"bytes"
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

// TestGulpConnLingers: a read right after one that returned data sleeps once and returns, in one
// read, what arrived meanwhile; between reads the kernel wakes no reader for less than gulpBytes.
func TestGulpConnLingers(t *testing.T) {
	g, server := gulpPair(t)
	var slept int
	g.sleep = func(time.Duration) {
		slept++
		for range 20 {
			if _, err := server.Write([]byte("0123456789")); err != nil {
				t.Error(err)
			}
		}
		// Wait until the kernel holds all 200 bytes.
		for queued := 0; queued < 200; {
			if err := g.raw.Control(func(fd uintptr) { queued, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := server.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1024)
	if n, err := g.Read(buf); err != nil || string(buf[:n]) != "first" {
		t.Fatalf("first read = %q, %v", buf[:n], err)
	}
	if got := lowat(t, g); got != gulpBytes {
		t.Errorf("SO_RCVLOWAT between reads = %d, want %d", got, gulpBytes)
	}
	n, err := g.Read(buf)
	if err != nil || n != 200 || slept != 1 {
		t.Fatalf("read after data = %d bytes, %v, after %d lingers; want the 200 bytes sent meanwhile, after 1", n, err, slept)
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
