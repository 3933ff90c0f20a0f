package sink_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap/zaptest"

	"github.com/backflow-dev/backflow/connectors/postgres"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestNoKeyMovesBackwardsAcrossRebalances: workers join and leave a sink's group while its
// PostgreSQL target is slow to reach, some applies taking longer than the group's rebalance
// timeout. A worker removed from the group while it applies must not write for its old
// partitions again (fences), so no row of the target ever goes back to an older version: a
// trigger records every update that lowers a row's version, in the transaction of the write.
func TestNoKeyMovesBackwardsAcrossRebalances(t *testing.T) {
	h := newHarness(t, kfake.GroupMinSessionTimeout(500*time.Millisecond))
	pg := testenv.NewPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, sql := range []string{
		`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, note text)`,
		`CREATE TABLE backwards (id int, old_v int, new_v int)`,
		`CREATE FUNCTION guard() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF TG_OP = 'UPDATE' AND NEW.v < OLD.v THEN INSERT INTO backwards VALUES (NEW.id, OLD.v, NEW.v); END IF;
			RETURN NEW;
		END $$`,
		`CREATE TRIGGER guard BEFORE INSERT OR UPDATE ON t FOR EACH ROW EXECUTE FUNCTION guard()`,
	} {
		if err := pg.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	h.cfg.Kafka.SessionTimeout = 2 * time.Second // rebalances wait 2 s; some applies take 6 s
	sc := h.sinkConfig(func(s *config.Sink) {
		s.Name, s.Connector = "fenced", "postgres"
		s.With = map[string]any{"url": pg.URL("postgres"), "table": "t"}
		s.Batch.MaxRecords = 40
	})
	h.cfg.Sinks = append(h.cfg.Sinks, sc)
	worker := func() (stop func()) {
		s, err := sink.New(ctx, h.cfg, sc, map[string]sink.Factory{"postgres": slowPostgres}, sink.WithLogger(zaptest.NewLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Run(wctx) }()
		return func() {
			wcancel()
			if err := <-done; err != nil {
				t.Errorf("worker: %v", err)
			}
			_ = s.Close()
		}
	}

	const keys, rounds = 30, 60
	produced := make(chan int, rounds)
	go func() {
		defer close(produced)
		for r := 1; r <= rounds; r++ {
			for id := int32(1); id <= keys; id++ {
				note := fmt.Sprintf("round %d", r)
				if (r*keys+int(id))%197 == 0 {
					note = "slow"
				}
				h.produce(upsert(id, int32(r), note))
			}
			produced <- r
			time.Sleep(40 * time.Millisecond)
		}
	}()
	stop1 := worker()
	defer stop1()
	var stop2, stop3 func()
	for r := range produced {
		switch r {
		case rounds / 5:
			stop2 = worker()
		case rounds / 2:
			stop3 = worker()
		case rounds * 7 / 10:
			stop3() // leaves while the others apply
		}
	}
	defer stop2()

	conn, err := pg.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// Workers cut again and again wait longer and longer before they rejoin (rejoinPacer), until
	// one of them finishes a 6 s apply: that can take a few rounds of 2 s rebalances.
	waitForWithin(t, 2*time.Minute, "every row at its last version", func() bool {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM t WHERE v = $1`, rounds).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == keys
	})
	var back []string
	rows, err := conn.Query(ctx, `SELECT format('%s: %s -> %s', id, old_v, new_v) FROM backwards`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		back = append(back, s)
	}
	if len(back) > 0 {
		t.Fatalf("%d updates moved a row to an older version: %v", len(back), back)
	}
}

// slowTarget is a PostgreSQL target that takes 6 s to reach for batches holding a record noted
// "slow" (a saturated pool, a slow network): the wait holds no lock in the target, so the new
// owner of a partition writes meanwhile.
type slowTarget struct{ *postgres.Connector }

func slowPostgres(ctx context.Context, p sink.Params) (sink.Connector, error) {
	c, err := postgres.New(ctx, p)
	if err != nil {
		return nil, err
	}
	return slowTarget{c.(*postgres.Connector)}, nil
}

func (s slowTarget) Apply(ctx context.Context, b *sink.Batch) error {
	for _, r := range b.Records {
		if r.Fields["note"] == "slow" {
			select {
			case <-time.After(6 * time.Second):
			case <-ctx.Done():
				return ctx.Err()
			}
			break
		}
	}
	return s.Connector.Apply(ctx, b)
}

// RowBuffer keeps every batch on Apply.
func (slowTarget) RowBuffer() {}
