package mysql

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// TestTableCreatedAgain: a target table dropped and created again, under a running connector or
// between two, sets the sink's stored offsets back to 0 and refuses its batch as fenced (the
// workers rejoin and read every partition from its start), once; the refused batch writes
// nothing, and batches from 0 are then taken. A table that stayed the same resets nothing.
func TestTableCreatedAgain(t *testing.T) {
	const topic = "wh.public.again"
	key := []string{"id"}
	fenced := func(b *sink.Batch, offset int64) *sink.Batch {
		b.Fence = sink.Fence{Held: true, Offset: offset, Epoch: 1}
		return b
	}
	for _, tc := range []struct {
		name               string
		restart, recreated bool
	}{
		{"while running", false, true},
		{"while down", true, true},
		{"unchanged across a restart", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exec(t, "DROP TABLE IF EXISTS again")
			exec(t, "CREATE TABLE again (id BIGINT PRIMARY KEY, v INT)")
			c := newConn(t, "again", key, nil)
			forget := func() { exec(t, "DELETE FROM backflow_offsets WHERE topic = '"+topic+"'") }
			forget()
			t.Cleanup(forget)
			first := fenced(mkBatch(topic, key, up(map[string]any{"id": int64(1), "v": int64(1)})), -1)
			apply(t, c, first)
			if tc.recreated {
				exec(t, "DROP TABLE again")
				exec(t, "CREATE TABLE again (id BIGINT PRIMARY KEY, v INT)")
			}
			if tc.restart {
				c = restarted(t, c, key)
			}
			next := fenced(mkBatch(topic, key, up(map[string]any{"id": int64(2), "v": int64(2)})), first.NextOffset)
			err := c.Apply(context.Background(), next)
			if !tc.recreated {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				wantRows(t, "SELECT id FROM again ORDER BY id", "1", "2")
				return
			}
			if !tc.restart {
				if !errors.Is(err, errTableChanged) || !sink.IsRetryable(err) {
					t.Fatalf("Apply = %v, want a retryable errTableChanged", err)
				}
				err = c.Apply(context.Background(), next)
			}
			if !errors.Is(err, sink.ErrFenced) {
				t.Fatalf("Apply = %v, want ErrFenced", err)
			}
			wantRows(t, "SELECT id FROM again")
			if off, _ := storedOffset(t, c, topic); off != 0 {
				t.Fatalf("stored offset %d after the reset, want 0", off)
			}
			again := fenced(mkBatch(topic, key, up(map[string]any{"id": int64(1), "v": int64(1)})), 0)
			apply(t, c, again)
			wantRows(t, "SELECT id FROM again", "1")
		})
	}
}

// restarted opens the table again in a new connector, as a new process would, keeping the table
// row the old one stored (newConn forgets it).
func restarted(t *testing.T, old *Connector, key []string) *Connector {
	t.Helper()
	var id int64
	if err := old.db.QueryRow("SELECT next_offset FROM "+old.offsets.quoted()+" WHERE sink = ? AND topic = ? AND `partition` = ?",
		"test-sink", old.tableIdentity(), tableIdentityPartition).Scan(&id); err != nil {
		t.Fatalf("read the table row: %v", err)
	}
	c := newConn(t, old.table.name, key, nil)
	if _, err := c.db.Exec(c.offsetSQL, "test-sink", c.tableIdentity(), tableIdentityPartition, id); err != nil {
		t.Fatalf("restore the table row: %v", err)
	}
	return c
}

// TestTableIDNeedsProcess: a user without the PROCESS privilege cannot read InnoDB's table ids;
// the check is then off, which a warning says once, and batches are written as before.
func TestTableIDNeedsProcess(t *testing.T) {
	exec(t, "DROP TABLE IF EXISTS noproc")
	exec(t, "CREATE TABLE noproc (id BIGINT PRIMARY KEY, v INT)")
	newConn(t, "noproc", []string{"id"}, nil) // creates the offsets table as the admin
	weak := weakUser(t, "bfnp_", "SELECT, INSERT, UPDATE, DELETE")
	core, logs := observer.New(zap.WarnLevel)
	c, err := New(context.Background(), sink.Params{Sink: "test-sink", Key: []string{"id"}, Log: zap.New(core),
		With: map[string]any{"dsn": weak.FormatDSN(), "table": "noproc"}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	for i := range 2 {
		apply(t, c.(*Connector), mkBatch("wh.public.noproc", []string{"id"}, up(map[string]any{"id": int64(i), "v": int64(i)})))
	}
	wantRows(t, "SELECT id FROM noproc ORDER BY id", "0", "1")
	if n := logs.FilterMessageSnippet("PROCESS privilege").Len(); n != 1 {
		t.Errorf("%d warnings about the PROCESS privilege, want 1", n)
	}
}

// TestTableSwappedDuringBatch: a table swapped by RENAME TABLE (dbt's way of rebuilding a model)
// while a batch waits for the old table's metadata lock: the server opens the name again once
// it has the lock, so the batch would write into the new table, after a check that found the
// old one. The check after the writes finds the new table: the batch writes nothing, its offset
// is not stored, and it is retried as errTableChanged.
func TestTableSwappedDuringBatch(t *testing.T) {
	const topic = "wh.public.swapped"
	ctx := context.Background()
	key := []string{"id"}
	exec(t, "DROP TABLE IF EXISTS swapped, swapped_new, swapped_old")
	exec(t, "CREATE TABLE swapped (id BIGINT PRIMARY KEY, v INT)")
	exec(t, "CREATE TABLE swapped_new (id BIGINT PRIMARY KEY, v INT)")
	t.Cleanup(func() { exec(t, "DROP TABLE IF EXISTS swapped, swapped_new, swapped_old") })
	c := newConn(t, "swapped", key, nil)
	forget := func() { exec(t, "DELETE FROM backflow_offsets WHERE topic = '"+topic+"'") }
	forget()
	t.Cleanup(forget)
	apply(t, c, mkBatch(topic, key, up(map[string]any{"id": int64(1), "v": int64(1)})))
	stored, _ := storedOffset(t, c, topic)

	db, err := sql.Open("mysql", dsn())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	holder, err := db.BeginTx(ctx, nil) // holds the table's metadata lock until it ends
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Rollback() }()
	if _, err := holder.ExecContext(ctx, "SELECT * FROM swapped"); err != nil {
		t.Fatal(err)
	}
	renamed := make(chan error, 1)
	go func() {
		_, err := db.ExecContext(ctx, "RENAME TABLE swapped TO swapped_old, swapped_new TO swapped")
		renamed <- err
	}()
	waiting := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if len(rows(t, "SELECT ID FROM information_schema.PROCESSLIST WHERE STATE LIKE 'Waiting for table metadata lock'")) >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("fewer than %d sessions waited for the table's metadata lock", n)
			}
		}
	}
	waiting(1) // the rename, behind the holder
	applied := make(chan error, 1)
	go func() {
		applied <- c.Apply(ctx, mkBatch(topic, key, up(map[string]any{"id": int64(2), "v": int64(2)})))
	}()
	waiting(2) // the batch, past its first check, behind the rename
	if err := holder.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-renamed; err != nil {
		t.Fatal(err)
	}
	if err := <-applied; !errors.Is(err, errTableChanged) || !sink.IsRetryable(err) {
		t.Fatalf("Apply = %v, want a retryable errTableChanged", err)
	}
	wantRows(t, "SELECT id FROM swapped")
	wantRows(t, "SELECT id FROM swapped_old", "1")
	if off, _ := storedOffset(t, c, topic); off != stored {
		t.Fatalf("stored offset %d, want %d: the refused batch stored its offset", off, stored)
	}
}
