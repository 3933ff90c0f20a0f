package testenv

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestPostgresLogicalAndRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg := NewPostgres(t)

	conn, err := pg.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	var level string
	if err := conn.QueryRow(ctx, "SELECT current_setting('wal_level')").Scan(&level); err != nil {
		t.Fatal(err)
	}
	if level != "logical" {
		t.Fatalf("wal_level = %q, want logical", level)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot('s1', 'pgoutput')"); err != nil {
		t.Fatalf("create logical slot: %v", err)
	}
	conn.Close(ctx)

	if err := pg.CreateDatabase(ctx, "warehouse"); err != nil {
		t.Fatal(err)
	}
	if err := pg.ExecIn(ctx, "warehouse", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	port := pg.Port()
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("Exec succeeded while stopped")
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if pg.Port() != port {
		t.Fatalf("port changed from %d to %d", port, pg.Port())
	}
	conn, err = pg.Connect(ctx, "warehouse")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows after restart = %d, %v; want 2", n, err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 's1'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("slot after restart: %d, %v", n, err)
	}
}

func TestPostgresReplicationConnection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg := NewPostgres(t)
	if !strings.Contains(pg.ReplicationURL("postgres"), "replication=database") {
		t.Fatalf("ReplicationURL = %s", pg.ReplicationURL("postgres"))
	}
	conn, err := pgconnReplication(ctx, pg.ReplicationURL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
}

func TestPostgresConfAndKeptDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	pg, err := StartPostgres(ctx, PGDir(dir), PGConf("wal_level", "replica"), PGAsyncCommit())
	if err != nil {
		t.Fatal(err)
	}
	if got := setting(ctx, t, pg, "wal_level"); got != "replica" {
		t.Errorf("wal_level = %q, want replica", got)
	}
	if got := setting(ctx, t, pg, "synchronous_commit"); got != "off" {
		t.Errorf("synchronous_commit = %q, want off", got)
	}
	if err := pg.Exec(ctx, "CREATE TABLE kept (x int)"); err != nil {
		t.Fatal(err)
	}
	if err := pg.Close(); err != nil {
		t.Fatal(err)
	}

	pg = NewPostgres(t, PGDir(dir))
	if got := setting(ctx, t, pg, "wal_level"); got != "logical" {
		t.Errorf("wal_level on reuse = %q, want logical", got)
	}
	if err := pg.Exec(ctx, "SELECT * FROM kept"); err != nil {
		t.Fatalf("table not kept in %s: %v", dir, err)
	}
}

func setting(ctx context.Context, t *testing.T, pg *Postgres, name string) string {
	t.Helper()
	conn, err := pg.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestPostgresStartFailureShowsLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg, err := StartPostgres(ctx, PGConf("wal_level", "bogus"))
	if err == nil {
		_ = pg.Close()
		t.Fatal("started with wal_level=bogus")
	}
	if !strings.Contains(err.Error(), "wal_level") {
		t.Fatalf("error does not show the server log: %v", err)
	}
	t.Logf("expected error: %v", err)
}
