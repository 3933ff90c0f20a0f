package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PGOpt configures StartPostgres.
type PGOpt func(*pgConfig)

type pgConfig struct {
	dir         string
	port        int
	fsync       bool
	asyncCommit bool
	conf        [][2]string
}

// PGDir keeps the cluster in dir (data in dir/data, server log in dir/postgres.log) instead of a
// temporary directory: a cluster already there is started as is, and Close leaves it in place.
func PGDir(dir string) PGOpt { return func(c *pgConfig) { c.dir = dir } }

// PGPort listens on port n instead of a free port.
func PGPort(n int) PGOpt { return func(c *pgConfig) { c.port = n } }

// PGFsync keeps fsync (and full_page_writes) on; the default turns them off for speed.
func PGFsync() PGOpt { return func(c *pgConfig) { c.fsync = true } }

// PGAsyncCommit sets synchronous_commit=off.
func PGAsyncCommit() PGOpt { return func(c *pgConfig) { c.asyncCommit = true } }

// PGConf adds a server setting, e.g. PGConf("wal_level", "replica"); it wins over the defaults.
func PGConf(key, value string) PGOpt {
	return func(c *pgConfig) { c.conf = append(c.conf, [2]string{key, value}) }
}

// Postgres is a PostgreSQL cluster started from the installed server binaries, listening on
// 127.0.0.1 with trust authentication. Superuser "postgres", database "postgres".
type Postgres struct {
	mu      sync.Mutex
	cfg     pgConfig
	bin     string
	runAs   *osUser
	dir     string // base directory, owned by the server user
	sockDir string
	temp    bool // dir (and sockDir) removed by Close
	port    int
	running bool
}

// StartPostgres initializes (unless PGDir holds one already) and starts a cluster with
// wal_level=logical, 20 replication slots and WAL senders, and fsync off unless PGFsync.
func StartPostgres(ctx context.Context, opts ...PGOpt) (*Postgres, error) {
	p := &Postgres{}
	for _, o := range opts {
		o(&p.cfg)
	}
	if err := p.prepare(); err != nil {
		p.removeTemp()
		return nil, err
	}
	if err := p.initdb(ctx); err != nil {
		p.removeTemp()
		return nil, err
	}
	if err := p.startFirst(ctx); err != nil {
		p.removeTemp()
		return nil, err
	}
	return p, nil
}

// NewPostgres is StartPostgres for tests: it fails the test with the reason when the cluster
// cannot start (missing binaries included) and closes it when the test ends.
func NewPostgres(t testing.TB, opts ...PGOpt) *Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := StartPostgres(ctx, opts...)
	if err != nil {
		t.Fatalf("testenv: start PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("testenv: close PostgreSQL: %v", err)
		}
	})
	return p
}

// prepare finds the binaries and the server user and sets up the directories.
func (p *Postgres) prepare() error {
	bin, err := findPGBin()
	if err != nil {
		return err
	}
	p.bin = bin
	if p.runAs, err = serverUser(); err != nil {
		return err
	}
	if err := p.makeDir(); err != nil {
		return err
	}
	if err := p.makeSockDir(); err != nil {
		return err
	}
	return handOver(p.runAs, p.dir)
}

func (p *Postgres) makeDir() error {
	if p.cfg.dir == "" {
		dir, err := os.MkdirTemp("", "backflow-pg-")
		if err != nil {
			return fmt.Errorf("create PostgreSQL temp dir: %w", err)
		}
		p.dir, p.temp = dir, true
		return nil
	}
	dir, err := filepath.Abs(p.cfg.dir)
	if err != nil {
		return fmt.Errorf("PostgreSQL dir %s: %w", p.cfg.dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create PostgreSQL dir: %w", err)
	}
	p.dir = dir
	return nil
}

// makeSockDir uses the data directory unless its path is too long for a unix socket.
func (p *Postgres) makeSockDir() error {
	p.sockDir = p.dataDir()
	if len(p.sockDir)+len("/.s.PGSQL.65535.lock") < 100 {
		return nil
	}
	dir, err := os.MkdirTemp("", "pgsock-")
	if err != nil {
		return fmt.Errorf("create PostgreSQL socket dir: %w", err)
	}
	p.sockDir = dir
	return handOver(p.runAs, dir)
}

func (p *Postgres) dataDir() string { return filepath.Join(p.dir, "data") }
func (p *Postgres) logFile() string { return filepath.Join(p.dir, "postgres.log") }

// initdb creates the cluster unless the data directory already has one.
func (p *Postgres) initdb(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(p.dataDir(), "PG_VERSION")); err == nil {
		return nil
	}
	args := []string{"-D", p.dataDir(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"}
	if !p.cfg.fsync {
		args = append(args, "--no-sync")
	}
	if out, err := run(ctx, p.runAs, p.dir, p.bin, "initdb", args...); err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", p.dataDir(), err, tail(out))
	}
	return p.writeHBA()
}

func (p *Postgres) writeHBA() error {
	hba := "local all all trust\n" +
		"host all all 127.0.0.1/32 trust\n" +
		"local replication all trust\n" +
		"host replication all 127.0.0.1/32 trust\n"
	if err := p.writeFile(filepath.Join(p.dataDir(), "pg_hba.conf"), hba); err != nil {
		return err
	}
	conf := filepath.Join(p.dataDir(), "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open postgresql.conf: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString("\ninclude_if_exists = 'backflow.conf'\n"); err != nil {
		return fmt.Errorf("append to postgresql.conf: %w", err)
	}
	return nil
}

// writeFile writes a file in the data directory, owned by the server user.
func (p *Postgres) writeFile(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if p.runAs != nil {
		if err := os.Chown(path, p.runAs.uid, p.runAs.gid); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
	}
	return nil
}

// settings renders backflow.conf, rewritten on every start.
func (p *Postgres) settings() string {
	kv := [][2]string{
		{"listen_addresses", "127.0.0.1"},
		{"port", strconv.Itoa(p.port)},
		{"unix_socket_directories", p.sockDir},
		{"wal_level", "logical"},
		{"max_replication_slots", "20"},
		{"max_wal_senders", "20"},
	}
	if !p.cfg.fsync {
		kv = append(kv, [2]string{"fsync", "off"}, [2]string{"full_page_writes", "off"})
	}
	if p.cfg.asyncCommit {
		kv = append(kv, [2]string{"synchronous_commit", "off"})
	}
	var b strings.Builder
	for _, s := range append(kv, p.cfg.conf...) {
		fmt.Fprintf(&b, "%s = '%s'\n", s[0], strings.ReplaceAll(s[1], "'", "''"))
	}
	return b.String()
}

// startFirst picks the port and starts the server, trying other free ports when one was taken
// between choosing and binding it.
func (p *Postgres) startFirst(ctx context.Context) error {
	p.stopStale(ctx)
	for attempt := 0; ; attempt++ {
		p.port = p.cfg.port
		if p.port == 0 {
			port, err := freePort()
			if err != nil {
				return err
			}
			p.port = port
		}
		err := p.Start(ctx)
		if err == nil || p.cfg.port != 0 || attempt == 2 || !strings.Contains(err.Error(), "could not bind") {
			return err
		}
	}
}

// stopStale stops a server left running in a kept directory by a process that died.
func (p *Postgres) stopStale(ctx context.Context) {
	if _, err := os.Stat(filepath.Join(p.dataDir(), "postmaster.pid")); err != nil {
		return
	}
	_, _ = run(ctx, p.runAs, p.dir, p.bin, "pg_ctl", "-D", p.dataDir(), "-m", "fast", "-w", "stop")
}

// Start starts the server again after Stop, on the same port. It does nothing while running.
func (p *Postgres) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		return nil
	}
	if err := p.writeFile(filepath.Join(p.dataDir(), "backflow.conf"), p.settings()); err != nil {
		return err
	}
	out, err := run(ctx, p.runAs, p.dir, p.bin, "pg_ctl", "-D", p.dataDir(), "-l", p.logFile(), "-w", "-t", "60", "start")
	if err != nil {
		return fmt.Errorf("start PostgreSQL on 127.0.0.1:%d: %w\n%s\nserver log %s:\n%s",
			p.port, err, tail(out), p.logFile(), tailFile(p.logFile()))
	}
	p.running = true
	return nil
}

// Stop shuts the server down (pg_ctl stop -m fast), keeping its data. It does nothing when
// stopped.
func (p *Postgres) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		return nil
	}
	out, err := run(ctx, p.runAs, p.dir, p.bin, "pg_ctl", "-D", p.dataDir(), "-m", "fast", "-w", "-t", "60", "stop")
	if err != nil {
		return fmt.Errorf("stop PostgreSQL: %w\n%s", err, tail(out))
	}
	p.running = false
	return nil
}

// Close stops the server and removes its directory unless PGDir was given.
func (p *Postgres) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := p.Stop(ctx)
	if err == nil {
		err = p.removeTemp()
	}
	return err
}

func (p *Postgres) removeTemp() error {
	var errs []error
	if p.sockDir != "" && p.sockDir != p.dataDir() {
		errs = append(errs, os.RemoveAll(p.sockDir))
	}
	if p.temp {
		errs = append(errs, os.RemoveAll(p.dir))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove PostgreSQL dir: %w", err)
	}
	return nil
}

// Port returns the TCP port on 127.0.0.1.
func (p *Postgres) Port() int { return p.port }

// Dir returns the base directory (data in Dir()/data, server log in Dir()/postgres.log).
func (p *Postgres) Dir() string { return p.dir }

// BinDir returns the directory of the server binaries in use (pg_recvlogical, psql, … are there).
func (p *Postgres) BinDir() string { return p.bin }

// LogFile returns the path of the server log.
func (p *Postgres) LogFile() string { return p.logFile() }

// URL returns a connection URL for database db as superuser postgres.
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

// ReplicationURL returns a logical replication connection URL (replication=database) for db.
func (p *Postgres) ReplicationURL(db string) string {
	return p.URL(db) + "&replication=database"
}

// Connect opens a pgx connection to database db.
func (p *Postgres) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, p.URL(db))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", db, err)
	}
	return conn, nil
}

// Exec runs one statement in database "postgres".
func (p *Postgres) Exec(ctx context.Context, sql string, args ...any) error {
	return p.ExecIn(ctx, "postgres", sql, args...)
}

// ExecIn runs one statement in database db.
func (p *Postgres) ExecIn(ctx context.Context, db, sql string, args ...any) error {
	conn, err := p.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("exec %q: %w", sql, err)
	}
	return nil
}

// CreateDatabase creates database name.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) error {
	return p.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
