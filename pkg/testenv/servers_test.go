package testenv

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

func TestMariaDBPrivilegesAndDatabases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := NewMariaDB(t)
	name := m.NewDatabase(t)
	db, err := sql.Open("mysql", m.DSN(name))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))"); err != nil {
		t.Fatal(err)
	}
	// Real grant tables: a user without privileges is refused.
	if err := m.Exec(ctx, "CREATE USER 'reader'@'127.0.0.1'"); err != nil {
		t.Fatal(err)
	}
	reader, err := sql.Open("mysql", "reader@tcp("+m.Addr()+")/"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if _, err := reader.ExecContext(ctx, "INSERT INTO t VALUES (1, 'x')"); err == nil {
		t.Fatal("a user without privileges could insert: the grant tables are not enforced")
	}
}

func TestRedisOwnDatabases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := NewRedis(t)
	a, b := r.NewDB(t), r.NewDB(t)
	if a == b {
		t.Fatalf("two tests got the same database %s", a)
	}
	oa, _ := goredis.ParseURL(a)
	ob, _ := goredis.ParseURL(b)
	ca, cb := goredis.NewClient(oa), goredis.NewClient(ob)
	defer ca.Close()
	defer cb.Close()
	if err := ca.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n := cb.Exists(ctx, "k").Val(); n != 0 {
		t.Fatalf("key written in %s is visible in %s", a, b)
	}
}

func TestSharedStartsOnceAndCloses(t *testing.T) {
	s := Shared[*Redis]{Start: StartRedis}
	r1, r2 := s.Get(t), s.Get(t)
	if r1 != r2 {
		t.Fatal("Get started a second server")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r1.ping(context.Background()); err == nil {
		t.Fatal("server still answers after Close")
	}
}

func TestStaleServerDirsAreSwept(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale, err := os.MkdirTemp("", "backflow-redis-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(stale) })
	if err := os.WriteFile(filepath.Join(stale, ownerFile), []byte(strconv.Itoa(dead.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	r := NewRedis(t)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("the directory of a dead process is still there: %v", err)
	}
	if _, err := os.Stat(r.dir); err != nil {
		t.Fatalf("the running server's directory: %v", err)
	}
}
