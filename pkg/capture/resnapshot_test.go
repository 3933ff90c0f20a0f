package capture_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/kafka"
)

// TestReSnapshotUnderConcurrentWrites re-snapshots a table (rows that were never streamed)
// while a writer updates, deletes and inserts rows of it. Afterwards a consumer that applies the
// topic in order ends equal to the source table: no change lost or reordered by the re-snapshot.
func TestReSnapshotUnderConcurrentWrites(t *testing.T) {
	e := newEnv(t, "public.r")
	e.exec(`CREATE TABLE public.r (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO public.r SELECT g, 0 FROM generate_series(1, 3000) g`)
	e.cfg.Source.Postgres.Snapshot = "never"
	e.cfg.Source.Postgres.SnapshotChunk = 100
	e.cfg.Source.Postgres.SignalTable = "public.backflow_signal"
	e.start()

	reSnapshotUnderChurn(t, e, 3000)
	e.exec(`UPDATE public.r SET v = v + 1 WHERE id = 1`) // a marker: the stream is past the writer
	eventually(t, "topic equals the table", func() error {
		got := applyInOrder(e.tryEvents("wh.public.r"))
		want := map[int32]int32{}
		for _, r := range rowsOf(t, e) {
			want[r[0]] = r[1]
		}
		if len(got) != len(want) {
			return notYet("topic holds %d live rows, table %d", len(got), len(want))
		}
		for id, v := range want {
			if got[id] != v {
				return notYet("row %d: topic says %d, table %d", id, got[id], v)
			}
		}
		return nil
	})
}

// reSnapshotUnderChurn re-snapshots public.r (n rows) while churn writes to it, and returns once
// the re-snapshot is done and the writer has stopped.
func reSnapshotUnderChurn(t *testing.T, e *env, n int, opts ...capture.RequestOpt) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writerDone := make(chan error, 1)
	go func() { writerDone <- churn(ctx, e, n) }()
	time.Sleep(200 * time.Millisecond)
	if _, err := capture.RequestSnapshot(context.Background(), e.cfg, "public.r", "", opts...); err != nil {
		t.Fatal(err)
	}
	kopts, err := kafka.ClientOpts(e.cfg.Kafka, nil)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "re-snapshot done", func() error {
		st, err := capture.ReSnapshotState(context.Background(), e.cfg, kopts)
		if err != nil || len(st.Done) == 0 {
			return notYet("state %+v (%v)", st, err)
		}
		return nil
	})
	cancel()
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
}

// churn updates, deletes and inserts rows of public.r until ctx ends.
func churn(ctx context.Context, e *env, n int) error {
	conn, err := e.pg.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; ctx.Err() == nil; i++ {
		id := 1 + rng.IntN(n+500)
		var sql string
		switch rng.IntN(4) {
		case 0:
			sql = fmt.Sprintf("DELETE FROM public.r WHERE id = %d", id)
		case 1:
			sql = fmt.Sprintf("INSERT INTO public.r VALUES (%d, %d) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v", id, i)
		default:
			sql = fmt.Sprintf("UPDATE public.r SET v = %d WHERE id = %d", i, id)
		}
		if _, err := conn.Exec(ctx, sql); err != nil && ctx.Err() == nil {
			return err
		}
	}
	return nil
}

// applyInOrder applies a topic's events per partition in offset order, like a sink.
func applyInOrder(recs []record) map[int32]int32 {
	byPartitionOffset(recs)
	state := map[int32]int32{}
	for _, r := range recs {
		if r.ev == nil {
			continue
		}
		switch r.ev.Op {
		case change.OpDelete:
			delete(state, r.ev.Before["id"].(int32))
		default:
			state[r.ev.After["id"].(int32)] = r.ev.After["v"].(int32)
		}
	}
	return state
}

func rowsOf(t *testing.T, e *env) [][2]int32 {
	t.Helper()
	conn, err := e.pg.Connect(context.Background(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), "SELECT id, v FROM public.r")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][2]int32
	for rows.Next() {
		var r [2]int32
		_ = rows.Scan(&r[0], &r[1])
		out = append(out, r)
	}
	return out
}
