package testenv

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MariaDB is a MariaDB (or MySQL) server started from the installed binaries in a temporary
// directory, listening on a free port of 127.0.0.1. User root, no password, all privileges (the
// grant tables are real, so privilege checks behave as in production).
type MariaDB struct {
	dir  string
	port int
	d    *daemon
	dbs  atomic.Int64 // databases made by NewDatabase
}

// StartMariaDB initializes a data directory with mariadb-install-db (or mysql_install_db) and
// starts mariadbd (or mysqld) on it. It ignores the system's my.cnf files.
func StartMariaDB(ctx context.Context) (*MariaDB, error) {
	server, install, err := findMariaDB()
	if err != nil {
		return nil, err
	}
	dir, err := makeServerDir("backflow-mariadb-*")
	if err != nil {
		return nil, err
	}
	m := &MariaDB{dir: dir}
	if err := m.install(ctx, install); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := m.startFirst(ctx, server); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return m, nil
}

// NewMariaDB is StartMariaDB for tests: it fails the test when the server cannot start and
// closes it when the test ends.
func NewMariaDB(t testing.TB) *MariaDB {
	t.Helper()
	return forTest(t, "MariaDB", 2*time.Minute, StartMariaDB)
}

// findMariaDB returns the server binary and the data directory initializer.
func findMariaDB() (server, install string, err error) {
	server = lookPath("mariadbd", "mysqld")
	install = lookPath("mariadb-install-db", "mysql_install_db")
	if server == "" || install == "" {
		return "", "", errors.New("MariaDB server binaries (mariadbd, mariadb-install-db) not found on PATH " +
			"nor in /usr/sbin, /usr/bin; install the MariaDB server package (e.g. apt-get install mariadb-server)")
	}
	return server, install, nil
}

// lookPath returns the first of names found on PATH or in /usr/sbin or /usr/bin (sbin is often
// not on a user's PATH), or "".
func lookPath(names ...string) string {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/bin"} {
			if fi, err := os.Stat(filepath.Join(dir, n)); err == nil && !fi.IsDir() {
				return filepath.Join(dir, n)
			}
		}
	}
	return ""
}

func (m *MariaDB) dataDir() string { return filepath.Join(m.dir, "data") }
func (m *MariaDB) socket() string  { return filepath.Join(m.dir, "mysqld.sock") }

// LogFile returns the path of the server log.
func (m *MariaDB) LogFile() string { return filepath.Join(m.dir, "mariadb.log") }

// userArgs runs the server as root when we are root: mariadbd refuses root unless told so,
// and this keeps the temp directory ours (PostgreSQL needs a second user; MariaDB does not).
func userArgs() []string {
	if os.Geteuid() == 0 {
		return []string{"--user=root"}
	}
	return nil
}

// install creates the system tables; root gets no password and normal (not unix socket)
// authentication, so it can log in over TCP.
func (m *MariaDB) install(ctx context.Context, install string) error {
	args := append([]string{"--no-defaults", "--datadir=" + m.dataDir(),
		"--auth-root-authentication-method=normal", "--skip-test-db"}, userArgs()...)
	cmd := exec.CommandContext(ctx, install, args...)
	cmd.Dir = m.dir
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s into %s: %w\n%s", install, m.dataDir(), err, tail(out))
	}
	return nil
}

// startFirst picks a free port and starts the server, trying another port when one was taken
// between choosing and binding it.
func (m *MariaDB) startFirst(ctx context.Context, server string) error {
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		m.port = port
		err = m.start(ctx, server)
		if err == nil || attempt == 2 || !strings.Contains(err.Error(), "Address already in use") {
			return err
		}
	}
}

func (m *MariaDB) start(ctx context.Context, server string) error {
	args := append([]string{"--no-defaults",
		"--datadir=" + m.dataDir(),
		"--socket=" + m.socket(),
		"--pid-file=" + filepath.Join(m.dir, "mariadbd.pid"),
		"--bind-address=127.0.0.1",
		"--port=" + strconv.Itoa(m.port),
		"--skip-name-resolve",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_unicode_ci",
		"--innodb-buffer-pool-size=64M",
		"--innodb-flush-log-at-trx-commit=2", // the tests need no durability across OS crashes
		"--max-connections=500",
	}, userArgs()...)
	d, err := startDaemon("MariaDB", m.LogFile(), server, args...)
	if err != nil {
		return err
	}
	m.d = d
	if err := d.waitReady(ctx, m.ping); err != nil {
		return err
	}
	return m.grantTCP(ctx)
}

// ping connects over the unix socket, which works before root@127.0.0.1 exists.
func (m *MariaDB) ping(ctx context.Context) error {
	db, err := m.open("root@unix(" + m.socket() + ")/")
	if err != nil {
		return err
	}
	defer db.Close()
	return db.PingContext(ctx)
}

// grantTCP lets root in over TCP: the server skips name resolution, so 127.0.0.1 does not match
// the root@localhost that mariadb-install-db created.
func (m *MariaDB) grantTCP(ctx context.Context) error {
	db, err := m.open("root@unix(" + m.socket() + ")/?multiStatements=true")
	if err != nil {
		return err
	}
	defer db.Close()
	const q = "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; " +
		"GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION"
	if _, err := db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("MariaDB: create root@127.0.0.1: %w", err)
	}
	return nil
}

func (m *MariaDB) open(dsn string) (*sql.DB, error) {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, fmt.Errorf("MariaDB DSN %s: %w", dsn, err)
	}
	return db, nil
}

// Close stops the server and removes its directory.
func (m *MariaDB) Close() error {
	if err := m.d.stop(); err != nil {
		return err
	}
	if err := os.RemoveAll(m.dir); err != nil {
		return fmt.Errorf("remove MariaDB dir: %w", err)
	}
	return nil
}

// Port returns the TCP port on 127.0.0.1.
func (m *MariaDB) Port() int { return m.port }

// Addr returns 127.0.0.1:port.
func (m *MariaDB) Addr() string { return fmt.Sprintf("127.0.0.1:%d", m.port) }

// DSN returns a go-sql-driver DSN for database db ("" for none) as root.
func (m *MariaDB) DSN(db string) string {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "tcp"
	cfg.Addr = m.Addr()
	cfg.DBName = db
	return cfg.FormatDSN()
}

// Exec runs statements (several allowed) as root, in no database.
func (m *MariaDB) Exec(ctx context.Context, q string, args ...any) error {
	db, err := m.open(m.DSN("") + "?multiStatements=true")
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("MariaDB exec %q: %w", q, err)
	}
	return nil
}

// NewDatabase creates a database of its own for the test, dropped when the test ends, and
// returns its name.
func (m *MariaDB) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), m.dbs.Add(1))
	ctx := context.Background()
	if err := m.Exec(ctx, "CREATE DATABASE "+quoteMySQL(name)); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Exec(ctx, "DROP DATABASE IF EXISTS "+quoteMySQL(name)); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return name
}

func quoteMySQL(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }
