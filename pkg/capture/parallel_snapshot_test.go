package capture_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// The tables of the parallel snapshot tests: every row carries a version n that each update
// raises by one, so a key's events on its topic must read n, n+1, n+2 … from the snapshot read
// on. big has a composite key with a text column, so its ranges cut a (text, int) key space.
const parallelSchema = `
CREATE TABLE public.big (region text NOT NULL, id int NOT NULL, n int NOT NULL DEFAULT 0, PRIMARY KEY (region, id));
INSERT INTO public.big SELECT 'r' || lpad((g %% 13)::text, 2, '0'), g, 0 FROM generate_series(1, %d) g;
CREATE TABLE public.s1 (region text NOT NULL, id int NOT NULL, n int NOT NULL DEFAULT 0, PRIMARY KEY (region, id));
INSERT INTO public.s1 SELECT 'x', g, 0 FROM generate_series(1, 1500) g;
CREATE TABLE public.s2 (region text NOT NULL, id int NOT NULL, n int NOT NULL DEFAULT 0, PRIMARY KEY (region, id));
INSERT INTO public.s2 SELECT 'y', g, 0 FROM generate_series(1, 1500) g;
ANALYZE public.big, public.s1, public.s2;`

var parallelTables = []string{"public.big", "public.s1", "public.s2"}

// TestParallelSnapshotUnderConcurrentWrites snapshots three tables, the largest in key ranges,
// with four readers while a writer updates, deletes and inserts rows of all three. Per key the
// topic must hold at most one snapshot read (ranges do not overlap), as the key's first event
// (a key the stream changes first would be one the snapshot missed), versions without gap after
// it, and end at the table's final state (nothing missing).
func TestParallelSnapshotUnderConcurrentWrites(t *testing.T) {
	e := newEnv(t, parallelTables...)
	e.exec(fmt.Sprintf(parallelSchema, 20000))
	e.cfg.Source.Postgres.SnapshotChunk = 100
	e.cfg.Source.Postgres.SnapshotParallelism = 4
	core, logs := observer.New(zapcore.InfoLevel)
	// Chunks of 100 rows go out in pieces of about 15 rows.
	e.opts = append(e.opts, capture.WithLogger(zap.New(core)), capture.WithPieceBytes(1000))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var writes atomic.Int64
	writerDone := make(chan error, 1)
	go func() { writerDone <- writeVersions(ctx, e, &writes) }()
	eventually(t, "the writer is writing", func() error {
		if writes.Load() < 20 {
			return notYet("%d writes", writes.Load())
		}
		return nil
	})
	e.start()
	eventually(t, "initial snapshot done", func() error {
		if logs.FilterMessage("initial snapshot done").Len() == 0 {
			return notYet("not yet")
		}
		return nil
	})
	during := writes.Load()
	time.Sleep(300 * time.Millisecond) // writes after the snapshot too
	cancel()
	if err := <-writerDone; err != nil {
		t.Fatalf("writer: %v", err)
	}
	if writes.Load() == during {
		t.Fatalf("the writer stopped before the snapshot ended")
	}
	for _, l := range logs.FilterMessage("snapshot table").AllUntimed() {
		if f := l.ContextMap(); f["table"] == "public.big" && f["ranges"].(int64) < 2 {
			t.Fatalf("public.big read in %d range(s), want several", f["ranges"])
		}
	}
	e.exec(`INSERT INTO public.s1 VALUES ('z', 0, 0)`) // a marker: the stream is past the writer
	for _, tbl := range parallelTables {
		checkVersions(t, e, tbl, tbl == "public.s1", false)
	}
}

// writeVersions updates (n = n + 1), deletes and inserts rows of the parallel tables until ctx
// ends. Inserted keys are new ones, so a key's versions never start over.
func writeVersions(ctx context.Context, e *env, writes *atomic.Int64) error {
	conn, err := e.pg.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; ctx.Err() == nil; i++ {
		tbl := parallelTables[rng.IntN(len(parallelTables))]
		var sql string
		var args []any
		switch rng.IntN(6) {
		case 0:
			sql, args = "DELETE FROM "+tbl+" WHERE id = $1", []any{1 + rng.IntN(1500)}
		case 1:
			sql, args = "INSERT INTO "+tbl+" VALUES ('new', $1, 0)", []any{i}
		default:
			sql, args = "UPDATE "+tbl+" SET n = n + 1 WHERE id = $1 OR id = $2", []any{1 + rng.IntN(1500), 1 + rng.IntN(20000)}
		}
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%s %v: %w", sql, args, err)
		}
		writes.Add(1)
	}
	return nil
}

// checkVersions waits until a table's topic ends at the table's state (withMarker: once the
// marker row is there), then checks every key's history (see
// TestParallelSnapshotUnderConcurrentWrites) and returns the number of snapshot reads.
func checkVersions(t *testing.T, e *env, table string, withMarker, rereads bool) int {
	t.Helper()
	topic := "wh." + table
	var reads int
	eventually(t, table+": the topic ends at the table's state", func() error {
		// Read each time: the writer's last statement, cancelled, may still commit.
		want := tableVersions(t, e, table)
		recs := e.tryEvents(topic)
		byPartitionOffset(recs)
		hist := map[string][]*change.Event{}
		var order []string
		for _, r := range recs {
			if r.ev == nil {
				continue
			}
			row := r.ev.After
			if r.ev.Op == change.OpDelete {
				row = r.ev.Before
			}
			k := fmt.Sprint(row["region"], "/", row["id"])
			if hist[k] == nil {
				order = append(order, k)
			}
			hist[k] = append(hist[k], r.ev)
		}
		if withMarker && hist["z/0"] == nil {
			return notYet("marker not streamed yet")
		}
		got := map[string]int32{}
		reads = 0
		for _, k := range order {
			v, n, err := keyHistory(hist[k], rereads)
			if err != nil {
				t.Fatalf("%s key %s: %v", table, k, err)
			}
			reads += n
			if v >= 0 {
				got[k] = v
			}
		}
		if len(got) != len(want) {
			return notYet("topic holds %d live keys, table %d", len(got), len(want))
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				return notYet("key %s: topic says %d (present %v), table %d", k, g, ok, v)
			}
		}
		return nil
	})
	return reads
}

// keyHistory checks one key's events: at most one snapshot read (rereads: the same read again
// right after it, from a run that resumed), first if any; an insert only first; versions one
// apart; nothing after a delete. It returns the final version (-1: deleted) and the number of
// reads.
func keyHistory(evs []*change.Event, rereads bool) (int32, int, error) {
	v, reads := int32(-1), 0
	for i, ev := range evs {
		switch ev.Op {
		case change.OpRead, change.OpCreate:
			again := rereads && ev.Op == change.OpRead && i == reads && ev.After["n"].(int32) == v
			if i > 0 && !again {
				return 0, 0, fmt.Errorf("%s at position %d of %d events: read twice or missed by the snapshot", ev.Op, i, len(evs))
			}
			if ev.Op == change.OpRead {
				reads++
			}
			v = ev.After["n"].(int32)
		case change.OpUpdate:
			if i == 0 {
				return 0, 0, fmt.Errorf("first event is an update: the snapshot missed the key")
			}
			if n := ev.After["n"].(int32); n != v+1 {
				return 0, 0, fmt.Errorf("version %d after %d: gap or overlap between the snapshot and the stream", n, v)
			}
			v++
		case change.OpDelete:
			if i == 0 {
				return 0, 0, fmt.Errorf("first event is a delete: the snapshot missed the key")
			}
			if i != len(evs)-1 {
				return 0, 0, fmt.Errorf("events after a delete")
			}
			v = -1
		}
	}
	return v, reads, nil
}

func tableVersions(t *testing.T, e *env, table string) map[string]int32 {
	t.Helper()
	conn, err := e.pg.Connect(context.Background(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), "SELECT region, id, n FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int32{}
	for rows.Next() {
		var region string
		var id, n int32
		if err := rows.Scan(&region, &id, &n); err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprint(region, "/", id)] = n
	}
	return out
}

// slowProducer delays every record handed to Kafka a little, so that a snapshot takes long
// enough to be watched and stopped halfway.
type slowProducer struct{ every time.Duration }

func (s slowProducer) OnProduceRecordBuffered(*kgo.Record) { time.Sleep(s.every) }

// TestParallelSnapshotResumesAfterStop stops capture halfway through a parallel snapshot of a
// table in ranges, and starts it again: the second run resumes the ranges after what Kafka
// acknowledged (it does not start over), and the topic ends holding every row exactly as in the
// table, no key read more than twice (once per run at most).
func TestParallelSnapshotResumesAfterStop(t *testing.T) {
	const rows = 20000
	e := newEnv(t, "public.big")
	e.exec(strings.SplitN(fmt.Sprintf(parallelSchema, rows), "CREATE TABLE public.s1", 2)[0] + "ANALYZE public.big;")
	e.cfg.Source.Postgres.SnapshotChunk = 100
	e.cfg.Source.Postgres.SnapshotParallelism = 3
	m := observe.NewMetrics()
	e.opts = append(e.opts, capture.WithMetrics(m), capture.WithKafkaOpts(kgo.WithHooks(slowProducer{every: 100 * time.Microsecond})),
		capture.WithPieceBytes(1000)) // the stop may come between the pieces of a chunk
	stop := e.start()
	eventually(t, "part of the snapshot acknowledged", func() error {
		if done := metricSum(t, m, "backflow_snapshot_rows_total"); done < rows/4 {
			return notYet("%v rows", done)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatalf("first run: %v", err)
	}
	first := metricSum(t, m, "backflow_snapshot_rows_total")
	if first >= rows {
		t.Fatalf("the first run snapshotted all %v rows before it was stopped", first)
	}

	core, logs := observer.New(zapcore.InfoLevel)
	m2 := observe.NewMetrics()
	e.opts = []capture.Opt{capture.WithMetrics(m2), capture.WithLogger(zap.New(core)), capture.WithPieceBytes(1000)}
	e.start()
	eventually(t, "the second run finishes the snapshot", func() error {
		if logs.FilterMessage("initial snapshot done").Len() == 0 {
			return notYet("not yet")
		}
		return nil
	})
	started := logs.FilterMessage("snapshot table").AllUntimed()
	if len(started) != 1 {
		t.Fatalf("snapshot table logs %+v", started)
	}
	f := started[0].ContextMap()
	if done := f["rows_done"].(int64); done <= 0 || done > int64(first) {
		t.Errorf("second run resumes with %d rows done, want some, at most the %v the first run counted", done, first)
	}
	if f["ranges"].(int64) < 2 {
		t.Errorf("table read in %d range(s), want several", f["ranges"])
	}
	if again := metricSum(t, m2, "backflow_snapshot_rows_total"); again >= rows {
		t.Errorf("the second run read %v rows of %d: it started over", again, rows)
	}
	reads := checkVersions(t, e, "public.big", false, true)
	if reads < rows || reads > 2*rows {
		t.Errorf("%d snapshot reads of %d rows", reads, rows)
	}
}

// TestReSnapshotProgress: a re-snapshot while streaming shows in the snapshot metrics and the
// status while it runs, and counts every row of the table once done.
func TestReSnapshotProgress(t *testing.T) {
	const rows = 3000
	e := newEnv(t, "public.r")
	e.exec(`CREATE TABLE public.r (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO public.r SELECT g, 0 FROM generate_series(1, 3000) g; ANALYZE public.r`)
	e.cfg.Source.Postgres.Snapshot = "never"
	e.cfg.Source.Postgres.SnapshotChunk = 100
	e.cfg.Source.Postgres.SignalTable = "public.backflow_signal"
	m := observe.NewMetrics()
	e.opts = append(e.opts, capture.WithMetrics(m), capture.WithKafkaOpts(kgo.WithHooks(slowProducer{every: 200 * time.Microsecond})))
	e.start()
	if _, err := capture.RequestSnapshot(context.Background(), e.cfg, "public.r", ""); err != nil {
		t.Fatal(err)
	}
	var seen observe.SnapshotProgress
	eventually(t, "the re-snapshot in the status, part done", func() error {
		for _, p := range m.Snapshots() {
			if p.Table == "public.r" && p.Done > 0 && p.Done < rows {
				seen = p
				return nil
			}
		}
		return notYet("snapshots %+v", m.Snapshots())
	})
	if seen.Estimated != rows {
		t.Errorf("re-snapshot progress %+v, want the table's estimate %d", seen, rows)
	}
	eventually(t, "the re-snapshot counted and done", func() error {
		done, left := metricSum(t, m, "backflow_snapshot_rows_total"), metricSum(t, m, "backflow_snapshot_rows_remaining")
		if done != rows || left != 0 || len(m.Snapshots()) != 0 {
			return notYet("rows %v, remaining %v, in progress %+v", done, left, m.Snapshots())
		}
		return nil
	})
}
