package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// redisDatabases is how many logical databases the server has, so that each test of a package
// can have one of its own (NewDB).
const redisDatabases = 1024

// Redis is a redis-server started in a temporary directory, listening on a free port of
// 127.0.0.1, without persistence.
type Redis struct {
	dir  string
	port int
	d    *daemon
	dbs  atomic.Int64 // databases handed out by NewDB; 0 is left to callers of URL
}

// StartRedis starts redis-server with no snapshots and no append-only file.
func StartRedis(ctx context.Context) (*Redis, error) {
	server := lookPath("redis-server")
	if server == "" {
		return nil, errors.New("redis-server not found on PATH nor in /usr/sbin, /usr/bin; " +
			"install it (e.g. apt-get install redis-server)")
	}
	dir, err := makeServerDir("backflow-redis-*")
	if err != nil {
		return nil, err
	}
	r := &Redis{dir: dir}
	for attempt := 0; ; attempt++ {
		if r.port, err = freePort(); err != nil {
			break
		}
		err = r.start(ctx, server)
		if err == nil || attempt == 2 || !strings.Contains(err.Error(), "in use") {
			break
		}
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return r, nil
}

// NewRedis is StartRedis for tests: it fails the test when the server cannot start and closes
// it when the test ends.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	return forTest(t, "Redis", time.Minute, StartRedis)
}

func (r *Redis) start(ctx context.Context, server string) error {
	logFile := filepath.Join(r.dir, "redis.log")
	// Each start gets a fresh log, so that a bind error is not read from an earlier attempt.
	_ = os.Remove(logFile)
	d, err := startDaemon("Redis", logFile, server,
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--appendonly", "no", "--databases", strconv.Itoa(redisDatabases),
		"--daemonize", "no")
	if err != nil {
		return err
	}
	r.d = d
	return d.waitReady(ctx, r.ping)
}

func (r *Redis) ping(ctx context.Context) error {
	c := goredis.NewClient(&goredis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	return c.Ping(ctx).Err()
}

// Close stops the server and removes its directory.
func (r *Redis) Close() error {
	if err := r.d.stop(); err != nil {
		return err
	}
	if err := os.RemoveAll(r.dir); err != nil {
		return fmt.Errorf("remove Redis dir: %w", err)
	}
	return nil
}

// Addr returns host:port.
func (r *Redis) Addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

// URL returns a redis:// URL for logical database db.
func (r *Redis) URL(db int) string { return fmt.Sprintf("redis://%s/%d", r.Addr(), db) }

// NewDB hands the test a logical database of its own (1 to 1023, after that shared ones again),
// flushed when the test ends, and returns its URL.
func (r *Redis) NewDB(t testing.TB) string {
	t.Helper()
	db := 1 + int(r.dbs.Add(1)-1)%(redisDatabases-1)
	t.Cleanup(func() {
		c := goredis.NewClient(&goredis.Options{Addr: r.Addr(), DB: db})
		defer c.Close()
		if err := c.FlushDB(context.Background()).Err(); err != nil {
			t.Errorf("testenv: flush Redis db %d: %v", db, err)
		}
	})
	return r.URL(db)
}
