package mysql

import (
	"context"
	"errors"
	"testing"

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
