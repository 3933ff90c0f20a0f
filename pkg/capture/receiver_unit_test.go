package capture

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	var d net.Dialer
	return dialPair(t, d.DialContext)
}

// dialPair returns the two ends of a loopback TCP connection, the client's dialled by dial.
func dialPair(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	if client, err = dial(context.Background(), "tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// readErr reads one byte from c in the background.
func readErr(c net.Conn) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	return done
}

func waitErr(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the read still blocks", what)
		return nil
	}
}

// The receiver's deadline ends reads that wait for nothing, leaves the connection usable, and
// ctx ending ends a read blocked far from its deadline, also when the deadline is set after.
func TestReceiver(t *testing.T) {
	client, server := tcpPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	rc := newReceiver(ctx, client)
	rc.until(time.Now().Add(50 * time.Millisecond))
	if err := waitErr(t, readErr(client), "deadline"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	rc.until(time.Now().Add(time.Hour))
	if _, err := server.Write([]byte{7}); err != nil {
		t.Fatal(err)
	}
	if err := waitErr(t, readErr(client), "data"); err != nil {
		t.Fatalf("read after a timeout: %v", err)
	}
	done := readErr(client)
	cancel()
	if err := waitErr(t, done, "cancel"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read when ctx ended: %v, want it interrupted", err)
	}
	rc.until(time.Now().Add(time.Hour)) // a status period starting after ctx ended
	if err := waitErr(t, readErr(client), "deadline after cancel"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read when ctx had ended before the deadline was set: %v", err)
	}
	rc.close()
	if _, err := server.Write([]byte{8}); err != nil {
		t.Fatal(err)
	}
	if err := waitErr(t, readErr(client), "after close"); err != nil {
		t.Fatalf("read after close (no deadline left): %v", err)
	}
}
