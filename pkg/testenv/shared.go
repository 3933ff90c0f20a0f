package testenv

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Shared is one server for all the tests of a test binary, started by the first test that needs
// it, so that packages whose tests do not all need it do not pay for it. Declare it beside
// TestMain and close it there after m.Run:
//
//	var mariadb = testenv.Shared[*testenv.MariaDB]{Start: testenv.StartMariaDB}
//
//	func TestMain(m *testing.M) { code := m.Run(); mariadb.Close(); os.Exit(code) }
//
// Each test then takes a database of its own from it (MariaDB.NewDatabase, Redis.NewDB,
// Postgres.CreateDatabase). The servers also end with the test binary if it is killed.
type Shared[T interface{ Close() error }] struct {
	Start func(context.Context) (T, error)

	once    sync.Once
	mu      sync.Mutex
	v       T
	err     error
	started bool
}

// Get returns the server, starting it on first use; it fails the test when it cannot start
// (every later Get fails the same way, without trying again).
func (s *Shared[T]) Get(t testing.TB) T {
	t.Helper()
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		v, err := s.Start(ctx)
		s.mu.Lock()
		s.v, s.err, s.started = v, err, err == nil
		s.mu.Unlock()
	})
	if s.err != nil {
		t.Fatalf("testenv: start shared server: %v", s.err)
	}
	return s.v
}

// Close stops the server if it was started; TestMain calls it after m.Run.
func (s *Shared[T]) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return nil
	}
	s.started = false
	return s.v.Close()
}

// forTest starts a server for one test: it fails the test when the server cannot start within
// timeout, and closes it when the test ends.
func forTest[T interface{ Close() error }](t testing.TB, name string, timeout time.Duration, start func(context.Context) (T, error)) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, err := start(ctx)
	if err != nil {
		t.Fatalf("testenv: start %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("testenv: close %s: %v", name, err)
		}
	})
	return s
}
