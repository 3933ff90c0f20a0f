package capture_test

import (
	"context"
	"crypto/md5"
	"fmt"
	"strings"
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

// movedSchema is a table read by pages whose doc column is stored out of line, uncompressed, so
// that an UPDATE of n alone leaves doc out of the change (unchanged TOAST); n is indexed, so such
// an UPDATE is not HOT and writes the row's new version on whichever page has room.
const movedSchema = `
CREATE TABLE public.moved (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, doc text NOT NULL);
ALTER TABLE public.moved ALTER COLUMN doc SET STORAGE EXTERNAL;
CREATE INDEX moved_n ON public.moved (n);
INSERT INTO public.moved SELECT g, 0, repeat(md5(g::text), 80) FROM generate_series(1, %d) g;
ANALYZE public.moved;`

const movedRows = 10000

// stopHalfway starts capture on public.moved, one reader, and stops it once Kafka has
// acknowledged part of the snapshot; it returns how many rows that was.
func stopHalfway(t *testing.T, e *env) float64 {
	t.Helper()
	e.exec(fmt.Sprintf(movedSchema, movedRows))
	e.cfg.Source.Postgres.SnapshotChunk = 100
	e.cfg.Source.Postgres.SnapshotParallelism = 1 // one range: the pages done are the first ones
	m := observe.NewMetrics()
	e.opts = append(e.opts, capture.WithMetrics(m), capture.WithKafkaOpts(kgo.WithHooks(slowProducer{every: 300 * time.Microsecond})))
	stop := e.start()
	eventually(t, "part of the snapshot acknowledged", func() error {
		if done := metricSum(t, m, "backflow_snapshot_rows_total"); done < 1500 {
			return notYet("%v rows", done)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatalf("first run: %v", err)
	}
	first := metricSum(t, m, "backflow_snapshot_rows_total")
	if first > movedRows*0.9 {
		t.Fatalf("the first run snapshotted %v of %d rows before it was stopped: too many for this test", first, movedRows)
	}
	return first
}

// resume starts capture again and waits until its snapshot is done; it returns the run's logs
// and metrics.
func resume(t *testing.T, e *env) (*observer.ObservedLogs, *observe.Metrics) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	m := observe.NewMetrics()
	e.opts = []capture.Opt{capture.WithMetrics(m), capture.WithLogger(zap.New(core))}
	e.start()
	eventually(t, "the second run finishes the snapshot", func() error {
		if logs.FilterMessage("initial snapshot done").Len() == 0 {
			return notYet("not yet")
		}
		return nil
	})
	return logs, m
}

// movedReads returns, per id, the doc of every snapshot read of public.moved on its topic.
func movedReads(t *testing.T, e *env) map[int32][]string {
	t.Helper()
	recs, err := e.read("wh.public.moved")
	if err != nil {
		t.Fatal(err)
	}
	reads := map[int32][]string{}
	for _, r := range recs {
		if r.ev != nil && r.ev.Op == change.OpRead {
			id := r.ev.After["id"].(int32)
			doc, _ := r.ev.After["doc"].(string)
			reads[id] = append(reads[id], doc)
		}
	}
	return reads
}

func movedDoc(id int32) string {
	return strings.Repeat(fmt.Sprintf("%x", md5.Sum([]byte(fmt.Sprint(id)))), 80)
}

// TestPageSnapshotResumeRereadsMovedRows stops a snapshot read by pages halfway; while capture is
// down, rows on pages not read yet move, by an UPDATE that leaves their TOASTed column out of
// the change, onto pages already done. The resumed run must still read them whole (its recheck
// of the pages done), without reading the table again.
func TestPageSnapshotResumeRereadsMovedRows(t *testing.T) {
	e := newEnv(t, "public.moved")
	first := stopHalfway(t, e)

	// Room on the first pages (read by the first run), then updates of the last rows (not read).
	e.exec(`DELETE FROM public.moved WHERE id <= 300`)
	e.exec(`VACUUM public.moved`)
	e.exec(`UPDATE public.moved SET n = n + 1 WHERE id > $1`, movedRows-100)
	conn, err := e.pg.Connect(context.Background(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	var moved int
	err = conn.QueryRow(context.Background(), `SELECT count(*) FROM public.moved
		WHERE id > $1 AND (ctid::text::point)[0] < 3`, movedRows-100).Scan(&moved)
	conn.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if moved == 0 {
		t.Fatalf("no updated row moved onto the first pages: the test's premise does not hold")
	}

	logs, m := resume(t, e)
	if again := metricSum(t, m, "backflow_snapshot_rows_total"); again+first > movedRows*1.5 {
		t.Errorf("the second run read %v rows after the first's %v of %d: it started over", again, first, movedRows)
	}
	if l := logs.FilterMessageSnippet("rewritten").Len(); l > 0 {
		t.Errorf("a table only updated was reported rewritten")
	}
	e.waitEvents("wh.public.moved", 1) // the stream's updates follow the snapshot
	eventually(t, "the updates are streamed", func() error {
		n := 0
		for _, r := range e.tryEvents("wh.public.moved") {
			if r.ev != nil && r.ev.Op == change.OpUpdate {
				n++
			}
		}
		if n < 100 {
			return notYet("%d updates", n)
		}
		return nil
	})
	reads := movedReads(t, e)
	for id := int32(301); id <= movedRows; id++ {
		docs := reads[id]
		if len(docs) == 0 {
			t.Fatalf("id %d never read by the snapshot", id)
		}
		if docs[len(docs)-1] != movedDoc(id) {
			t.Fatalf("id %d read with doc %.20q…, want the whole value", id, docs[len(docs)-1])
		}
	}
}

// TestPageSnapshotResumeAfterRewrite: a table rewritten while capture is down (VACUUM FULL) has
// its rows on other pages; the resumed run reads it again from the start, and says so.
func TestPageSnapshotResumeAfterRewrite(t *testing.T) {
	e := newEnv(t, "public.moved")
	stopHalfway(t, e)
	e.exec(`DELETE FROM public.moved WHERE id <= 3000`)
	e.exec(`VACUUM FULL public.moved`)
	logs, m := resume(t, e)
	if logs.FilterMessageSnippet("rewritten").Len() != 1 {
		t.Errorf("the rewrite was not reported: %v", logs.AllUntimed())
	}
	if again := metricSum(t, m, "backflow_snapshot_rows_total"); again != movedRows-3000 {
		t.Errorf("the second run read %v rows, want the table's %d", again, movedRows-3000)
	}
	reads := movedReads(t, e)
	for id := int32(3001); id <= movedRows; id++ {
		if len(reads[id]) == 0 {
			t.Fatalf("id %d never read by the snapshot", id)
		}
	}
}
