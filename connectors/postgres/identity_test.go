package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// TestTableCreatedAgain: a target table dropped and created again, under a running connector or
// between two, makes the sink's stored offsets go back to 0 and its batch refused as fenced (the
// workers rejoin and read every partition from its start), once; the rows of the refused batch are
// not written, and batches from 0 are then taken, by upserts or by COPY alike. A table that stayed
// the same resets nothing.
func TestTableCreatedAgain(t *testing.T) {
	const ddl = `CREATE TABLE t (id int PRIMARY KEY, v int)`
	fence := func(offset int64) sink.Fence { return sink.Fence{Held: true, Offset: offset, Epoch: 1} }
	for _, tc := range []struct {
		name      string
		restart   bool // a new connector after the change, as a new process would be
		recreated bool
		copy      bool // the rows are new ones, which go by COPY
	}{
		{"while running", false, true, false},
		{"while running, by COPY", false, true, true},
		{"while down", true, true, false},
		{"unchanged across a restart", true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			row := func(id int32) sink.Record { return up(map[string]any{"id": id, "v": id}, "id") }
			if tc.copy {
				row = func(id int32) sink.Record { return created(up(map[string]any{"id": id, "v": id}, "id"))[0] }
			}
			d := newDB(t, nil)
			d.exec(ddl)
			c := d.open(map[string]any{"table": "t", "copy_inserts": tc.copy}, "id")
			b := batch(10, row(1))
			b.Fence = fence(-1)
			apply(t, c, b)
			other := batch(20, row(2))
			other.Partition, other.Fence = 1, fence(-1)
			apply(t, c, other)
			if tc.recreated {
				d.exec(`DROP TABLE t; ` + ddl)
			}
			if tc.restart {
				c = d.open(map[string]any{"table": "t", "copy_inserts": tc.copy}, "id")
			}
			next := batch(11, row(3))
			next.Fence = fence(10)
			err := c.Apply(context.Background(), next)
			if !tc.recreated {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				d.wantRows(`SELECT "partition", next_offset FROM backflow_offsets WHERE "partition" >= 0 ORDER BY 1`, "0|11", "1|20")
				return
			}
			if !tc.restart {
				// The running connector finds the table changed in the batch's transaction first.
				if !errors.Is(err, errTableChanged) || !sink.IsRetryable(err) {
					t.Fatalf("Apply = %v, want a retryable errTableChanged", err)
				}
				err = c.Apply(context.Background(), next)
			}
			if !errors.Is(err, sink.ErrFenced) {
				t.Fatalf("Apply = %v, want ErrFenced", err)
			}
			d.wantRows(`SELECT id FROM t`)
			d.wantRows(`SELECT "partition", next_offset FROM backflow_offsets WHERE "partition" >= 0 ORDER BY 1`, "0|0", "1|0")
			// The workers read from 0 again: their batches are taken, and nothing resets again.
			again := batch(1, row(1))
			again.Fence = fence(0)
			apply(t, c, again)
			d.wantRows(`SELECT id FROM t`, "1")
			d.wantRows(`SELECT "partition", next_offset FROM backflow_offsets WHERE "partition" >= 0 ORDER BY 1`, "0|1", "1|0")
			// The two batches before the change went by COPY, and the refused one tried it first.
			if tc.copy && (c.copies.Load() < 2 || c.copyFallbacks.Load() < 1) {
				t.Fatalf("%d batches went by COPY, %d fell back: want 2 or more, and 1 or more", c.copies.Load(), c.copyFallbacks.Load())
			}
		})
	}
}

// TestTableDroppedWaits: a target table dropped under a running connector fails the next batch
// as retryable, writing nothing, until it is there again.
func TestTableDroppedWaits(t *testing.T) {
	d := newDB(t, nil)
	d.exec(`CREATE TABLE t (id int PRIMARY KEY, v int)`)
	c := d.open(map[string]any{"table": "t"}, "id")
	apply(t, c, batch(1, up(map[string]any{"id": int32(1), "v": int32(1)}, "id")))
	d.exec(`DROP TABLE t`)
	for range 2 { // the check in the batch, then the catalog read
		err := c.Apply(context.Background(), batch(2, up(map[string]any{"id": int32(2), "v": int32(2)}, "id")))
		if err == nil || !sink.IsRetryable(err) {
			t.Fatalf("Apply = %v, want a retryable error", err)
		}
	}
	d.wantRows(`SELECT next_offset FROM backflow_offsets WHERE "partition" >= 0`, "1")
}

// TestTableSwappedDuringBatch: a table swapped by renames (dbt's way of rebuilding a model)
// while a batch of statements waits for the old table's lock: PostgreSQL looks the name up again
// once it has the lock, so the statements would write into the new table, after a check that
// found the old one. The check after the statements finds the new table: the batch writes
// nothing, its offset is not stored, and it is retried as errTableChanged.
func TestTableSwappedDuringBatch(t *testing.T) {
	ctx := context.Background()
	d := newDB(t, nil)
	d.exec(`CREATE TABLE t (id int PRIMARY KEY, v int); CREATE TABLE t_new (id int PRIMARY KEY, v int)`)
	c := d.open(map[string]any{"table": "t", "copy_inserts": false}, "id")
	apply(t, c, batch(10, up(map[string]any{"id": int32(1), "v": int32(1)}, "id")))

	swap, err := d.pg.Connect(ctx, d.name)
	if err != nil {
		t.Fatal(err)
	}
	defer swap.Close(ctx)
	tx, err := swap.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE t IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	applied := make(chan error, 1)
	go func() { applied <- c.Apply(ctx, batch(11, up(map[string]any{"id": int32(2), "v": int32(2)}, "id"))) }()
	// Swap once the batch waits for the lock, past its first check.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if rows := d.rows(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`); len(rows) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the batch never waited for the table's lock")
		}
	}
	if _, err := tx.Exec(ctx, `ALTER TABLE t RENAME TO t_old; ALTER TABLE t_new RENAME TO t`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-applied; !errors.Is(err, errTableChanged) || !sink.IsRetryable(err) {
		t.Fatalf("Apply = %v, want a retryable errTableChanged", err)
	}
	d.wantRows(`SELECT id FROM t`)
	d.wantRows(`SELECT id FROM t_old`, "1")
	d.wantRows(`SELECT "partition", next_offset FROM backflow_offsets WHERE "partition" >= 0`, "0|10")
}
