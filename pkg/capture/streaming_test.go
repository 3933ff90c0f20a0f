package capture_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/observe"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// bigRows is enough rows for PostgreSQL to stream a transaction past a 64kB
// logical_decoding_work_mem many times over.
const bigRows = 20000

// newStreamEnv is newEnv on a server that streams every transaction above 64kB of changes, with
// the spill directory in the test's temp dir.
func newStreamEnv(t *testing.T, streaming string, tables ...string) *env {
	t.Helper()
	pg := testenv.NewPostgres(t, testenv.PGConf("logical_decoding_work_mem", "64kB"))
	kf := testenv.NewKafka(t)
	e := &env{t: t, pg: pg, kf: kf, cfg: pipeline(pg.URL("postgres"), kf.Brokers(), tables...)}
	e.cfg.Source.Postgres.Streaming = streaming
	e.cfg.Source.Postgres.SpillDir = t.TempDir()
	e.cfg.Source.Postgres.Snapshot = "never"
	e.exec(`CREATE TABLE public.s (id int PRIMARY KEY, v text)`)
	return e
}

// txn is a transaction left open on its own connection.
type txn struct {
	t    *testing.T
	conn *pgx.Conn
}

func (e *env) begin() *txn {
	e.t.Helper()
	conn, err := e.pg.Connect(context.Background(), "postgres")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close(context.Background()) })
	tx := &txn{t: e.t, conn: conn}
	tx.exec("BEGIN")
	return tx
}

func (tx *txn) exec(sql string, args ...any) {
	tx.t.Helper()
	if _, err := tx.conn.Exec(context.Background(), sql, args...); err != nil {
		tx.t.Fatalf("exec %q: %v", sql, err)
	}
}

func (tx *txn) insert(from, to int, v string) {
	tx.t.Helper()
	tx.exec(`INSERT INTO public.s SELECT g, $3 FROM generate_series($1::int, $2::int) g`, from, to, v)
}

// spillFiles lists the spill files of streamed transactions open in capture.
func (e *env) spillFiles() []string {
	files, _ := filepath.Glob(filepath.Join(e.cfg.Source.Postgres.SpillDir, "*", "*.spill"))
	return files
}

// waitStreamed waits until capture holds a streamed transaction on disk: PostgreSQL streamed it
// before its end.
func (e *env) waitStreamed() {
	e.t.Helper()
	eventually(e.t, "a transaction streamed to the spill directory", func() error {
		if len(e.spillFiles()) == 0 {
			return notYet("no spill file")
		}
		return nil
	})
}

// idCounts returns how many times each id is on the topic.
func idCounts(recs []record) map[int32]int {
	n := map[int32]int{}
	for _, r := range recs {
		if r.ev != nil {
			n[r.ev.After["id"].(int32)]++
		}
	}
	return n
}

// TestStreamedTransactionRolledBack: a large transaction streamed to capture and rolled back
// sends nothing, its spill file goes, and while it was open keepalives did not move the slot, nor
// had they moved it past the transaction's end. (Before PostgreSQL streams it, a keepalive may
// confirm the WAL it has decoded of the transaction, as for any transaction in progress:
// PostgreSQL sends it whole all the same.)
func TestStreamedTransactionRolledBack(t *testing.T) {
	e := newStreamEnv(t, config.StreamingAuto, "public.s")
	off := time.Duration(0)
	e.cfg.Source.Postgres.HeartbeatInterval = &off // the slot moves on keepalives only
	e.start()
	tx := e.begin()
	tx.insert(1, bigRows, "rolled back")
	var end string
	if err := tx.conn.QueryRow(context.Background(), "SELECT pg_current_wal_insert_lsn()::text").Scan(&end); err != nil {
		t.Fatal(err)
	}
	e.waitStreamed()
	time.Sleep(e.cfg.Source.Postgres.StatusInterval) // a status update sent before it arrives
	open := e.slotLSN()
	for range 10 { // keepalives come after each status update; 10 status intervals
		if now := e.slotLSN(); now != open || !lsnLess(now, end) {
			t.Fatalf("slot confirmed %s (%s when the transaction streamed), which ends at %s, while it was open", now, open, end)
		}
		time.Sleep(e.cfg.Source.Postgres.StatusInterval)
	}
	tx.exec("ROLLBACK")
	e.exec(`INSERT INTO public.s VALUES (0, 'after')`)
	got := idCounts(e.waitEvents("wh.public.s", 1))
	if len(got) != 1 || got[0] != 1 {
		t.Errorf("topic holds ids %v, want only 0 once: a rolled-back transaction reached Kafka", got)
	}
	eventually(t, "spill file removed", func() error {
		if files := e.spillFiles(); len(files) > 0 {
			return notYet("still %v", files)
		}
		return nil
	})
}

// TestStreamedTransactionCommitted: a large transaction streamed while other transactions
// commit reaches Kafka only at its commit, whole, in order, after those transactions, with its
// commit's position and its xid as protocol 1 gives them.
func TestStreamedTransactionCommitted(t *testing.T) {
	e := newStreamEnv(t, config.StreamingOn, "public.s")
	e.start()
	tx := e.begin()
	var xid int64
	if err := tx.conn.QueryRow(context.Background(), "SELECT txid_current()").Scan(&xid); err != nil {
		t.Fatal(err)
	}
	tx.insert(1, bigRows, "big")
	e.waitStreamed()
	e.exec(`INSERT INTO public.s VALUES (-1, 'other')`) // commits while the big one is open
	got := idCounts(e.waitEvents("wh.public.s", 1))
	if len(got) != 1 || got[-1] != 1 {
		t.Fatalf("before the big transaction commits the topic holds %d ids, want only -1", len(got))
	}
	tx.insert(bigRows+1, bigRows+1, "big")
	tx.exec("COMMIT")

	recs := e.waitEvents("wh.public.s", bigRows+2)
	byPartitionOffset(recs)
	got = idCounts(recs)
	if len(got) != bigRows+2 {
		t.Errorf("%d distinct ids on the topic, want %d", len(got), bigRows+2)
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("id %d on the topic %d times", id, n)
		}
	}
	var otherLSN, bigLSN int64
	lastBig := map[int32]int32{} // per partition, the last id of the big transaction
	for _, r := range recs {
		id, p := r.ev.After["id"].(int32), r.rec.Partition
		if id == -1 {
			otherLSN = r.ev.Source.LSN
			if prev, ok := lastBig[p]; ok {
				t.Errorf("partition %d: the other transaction's row after id %d of the big one", p, prev)
			}
			continue
		}
		if prev, ok := lastBig[p]; ok && prev >= id {
			t.Errorf("partition %d: id %d after id %d", p, id, prev)
		}
		lastBig[p] = id
		if bigLSN == 0 {
			bigLSN = r.ev.Source.LSN
		}
		if r.ev.Source.LSN != bigLSN || r.ev.Source.TxID != xid {
			t.Fatalf("id %d: source lsn %d txId %d, want the transaction's commit lsn %d and xid %d",
				id, r.ev.Source.LSN, r.ev.Source.TxID, bigLSN, xid)
		}
	}
	if bigLSN <= otherLSN {
		t.Errorf("big transaction's source.lsn %d not after the other's %d", bigLSN, otherLSN)
	}
	conn, err := e.pg.Connect(context.Background(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var streamed int64
	err = conn.QueryRow(context.Background(), "SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = 'backflow'").Scan(&streamed)
	if err != nil || streamed < 1 {
		t.Errorf("pg_stat_replication_slots.stream_txns = %d (%v): PostgreSQL did not stream the transaction", streamed, err)
	}
}

// TestStreamedSubtransactionRolledBack: in a streamed transaction, the rows of a subtransaction
// rolled back (ROLLBACK TO SAVEPOINT) are left out and the others arrive, those of a table first
// described in the rolled-back subtransaction too.
func TestStreamedSubtransactionRolledBack(t *testing.T) {
	e := newStreamEnv(t, config.StreamingAuto, "public.s", "public.s2")
	e.exec(`CREATE TABLE public.s2 (id int PRIMARY KEY)`)
	e.start()
	tx := e.begin()
	tx.insert(1, 10000, "kept")
	tx.exec("SAVEPOINT a")
	tx.exec("INSERT INTO public.s2 VALUES (1)") // public.s2 is first described in this subtransaction
	tx.insert(10001, 20000, "rolled back")
	tx.exec("SAVEPOINT b")
	tx.insert(20001, 20100, "rolled back with its parent")
	tx.exec("RELEASE b")
	e.waitStreamed()
	tx.exec("ROLLBACK TO a")
	tx.exec("INSERT INTO public.s2 VALUES (2)")
	tx.insert(30001, 40000, "kept")
	tx.exec("SAVEPOINT c")
	tx.insert(40001, 40010, "kept")
	tx.exec("RELEASE c")
	tx.exec("COMMIT")
	e.exec(`INSERT INTO public.s VALUES (0, 'after')`)

	eventually(t, "the row committed after the transaction", func() error {
		if idCounts(e.tryEvents("wh.public.s"))[0] == 0 {
			return notYet("row 0 not there")
		}
		return nil
	})
	got := idCounts(e.tryEvents("wh.public.s"))
	want := 1 + 10000 + 10000 + 10
	if len(got) != want {
		t.Errorf("%d ids on the topic, want %d", len(got), want)
	}
	for id := range got {
		if id > 10000 && id <= 30000 {
			t.Fatalf("id %d of a rolled-back subtransaction reached Kafka", id)
		}
	}
	for _, id := range []int32{1, 10000, 30001, 40000, 40001, 40010} {
		if got[id] == 0 {
			t.Errorf("id %d missing", id)
		}
	}
	if s2 := idCounts(e.waitEvents("wh.public.s2", 1)); len(s2) != 1 || s2[2] != 1 {
		t.Errorf("public.s2 holds ids %v, want 2 only", s2)
	}
}

// TestStreamedTransactionAcrossRestart: capture stops while a streamed transaction is open; the
// transaction commits; a new capture (which removes spill files an earlier run left) sends all of
// it, and nothing that did not commit.
func TestStreamedTransactionAcrossRestart(t *testing.T) {
	e := newStreamEnv(t, config.StreamingAuto, "public.s")
	stop := e.start()
	tx := e.begin()
	tx.insert(1, bigRows, "big")
	e.waitStreamed()
	rolledBack := e.begin()
	rolledBack.insert(-bigRows, -1, "rolled back")
	dirs, _ := filepath.Glob(filepath.Join(e.cfg.Source.Postgres.SpillDir, "*"))
	if len(dirs) != 1 {
		t.Fatalf("spill directories %v, want one", dirs)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(idCounts(e.tryEvents("wh.public.s"))); n > 0 {
		t.Fatalf("%d rows of an open transaction reached Kafka", n)
	}
	// As a crashed run would leave it.
	left := filepath.Join(dirs[0], "4242.spill") // as a crash leaves it, the directory with it
	if err := os.MkdirAll(dirs[0], 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(left, []byte("not a spill file"), 0o600); err != nil {
		t.Fatal(err)
	}
	tx.insert(bigRows+1, bigRows+1, "big")
	tx.exec("COMMIT")
	rolledBack.exec("ROLLBACK")
	e.exec(`INSERT INTO public.s VALUES (0, 'after')`)

	e.start()
	recs := e.waitEvents("wh.public.s", bigRows+2)
	got := idCounts(recs)
	for id := int32(0); id <= bigRows+1; id++ {
		if got[id] == 0 {
			t.Fatalf("id %d missing after the restart", id)
		}
	}
	if len(got) != bigRows+2 {
		t.Errorf("%d distinct ids, want %d: rows of the rolled-back transaction reached Kafka", len(got), bigRows+2)
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Errorf("spill file left by an earlier run still there: %v", err)
	}
}

// TestStreamingOffKeepsProtocol1: with streaming off, a large transaction is not streamed (no
// spill file while it is open) and arrives whole at its commit.
func TestStreamingOffKeepsProtocol1(t *testing.T) {
	e := newStreamEnv(t, config.StreamingOff, "public.s")
	e.start()
	tx := e.begin()
	tx.insert(1, bigRows, "big")
	e.exec(`INSERT INTO public.s VALUES (0, 'other')`)
	e.waitEvents("wh.public.s", 1)
	if files := e.spillFiles(); len(files) > 0 {
		t.Errorf("spill files %v with streaming off", files)
	}
	tx.exec("COMMIT")
	if got := idCounts(e.waitEvents("wh.public.s", bigRows+1)); len(got) != bigRows+1 {
		t.Errorf("%d distinct ids, want %d", len(got), bigRows+1)
	}
}

// TestStreamedMatchesProtocol1: a streamed transaction whose changes capture encodes as they
// stream (its tables known from earlier transactions) reaches Kafka exactly as protocol 1 sends
// it, but for its position, time and xid: inserts, updates, an update moving rows to other keys,
// deletes, an unchanged TOASTed column, a rolled-back subtransaction and a column added in the
// middle of the transaction, in Avro and JSON.
func TestStreamedMatchesProtocol1(t *testing.T) {
	for _, format := range []string{config.FormatAvro, config.FormatJSON} {
		t.Run(format, func(t *testing.T) {
			proto1 := streamWorkload(t, config.StreamingOff, format)
			streamed := streamWorkload(t, config.StreamingOn, format)
			for topic, want := range proto1 {
				got := streamed[topic]
				if len(got) != len(want) {
					t.Errorf("%s: %d records streamed, %d with protocol 1; streamed only: %v; protocol 1 only: %v",
						topic, len(got), len(want), missingFrom(want, got), missingFrom(got, want))
					continue
				}
				for i := range want {
					if got[i] != want[i] {
						t.Errorf("%s: record %d streamed\n%s\nwith protocol 1\n%s", topic, i, got[i], want[i])
						break
					}
				}
			}
		})
	}
}

// distinctViews waits for n distinct events on topic and returns its records' views in partition
// and offset order. At least once: a session that restarts under load sends again what the slot
// had not confirmed. Every record of the workload is distinct, so a repeat is such a duplicate;
// only its first copy counts, and the wait goes on until n distinct events are there.
func distinctViews(t *testing.T, e *env, topic string, n int) []string {
	t.Helper()
	for want := n; ; {
		recs := e.waitEvents(topic, want)
		byPartitionOffset(recs)
		var views []string
		seen := map[string]bool{}
		events, distinct := 0, 0
		for _, r := range recs {
			if r.ev != nil {
				events++
			}
			v := recordView(r)
			if seen[v] {
				continue
			}
			seen[v] = true
			views = append(views, v)
			if r.ev != nil {
				distinct++
			}
		}
		if len(views) < len(recs) {
			t.Logf("%s: %d duplicate record(s) (at least once)", topic, len(recs)-len(views))
		}
		if distinct >= n {
			return views
		}
		want = n + events - distinct // as many more as there were duplicates
	}
}

// missingFrom returns, at most three, the records of a (as a multiset) that b lacks.
func missingFrom(b, a []string) []string {
	left := map[string]int{}
	for _, r := range b {
		left[r]++
	}
	var out []string
	for _, r := range a {
		if left[r] > 0 {
			left[r]--
		} else if len(out) < 3 {
			out = append(out, r)
		}
	}
	return out
}

// streamWorkload runs the workload of TestStreamedMatchesProtocol1 with streaming set so and
// returns, per topic, its records in partition and offset order, without the fields that differ
// between two runs (positions, times and xids).
func streamWorkload(t *testing.T, streaming, format string) map[string][]string {
	e := newStreamEnv(t, streaming, "public.s", "public.w")
	e.cfg.Kafka.Format = format
	// The workload adds a column with a default; a re-snapshot of it (on_column_change) would put
	// reads on the topic at a moment that differs between the two runs compared.
	e.cfg.Source.Postgres.OnColumnChange = config.OnColumnChangeWarn
	core, logs := observer.New(zapcore.InfoLevel)
	e.opts = append(e.opts, capture.WithLogger(zap.New(core)))
	e.exec(`CREATE TABLE public.w (id int PRIMARY KEY, k int, big text)`)
	e.exec(`ALTER TABLE public.w ALTER COLUMN big SET STORAGE EXTERNAL`) // TOASTed, not compressed
	e.start()
	// Known tables: their relation messages come before the big transaction.
	e.exec(`INSERT INTO public.s VALUES (0, 'known')`)
	e.exec(`INSERT INTO public.w SELECT g, g, repeat(md5(g::text), 100) FROM generate_series(1, 3) g`)
	e.waitEvents("wh.public.w", 3)
	tx := e.begin()
	tx.insert(1, bigRows, "big")
	tx.exec(`UPDATE public.s SET v = 'updated' WHERE id <= 100`)
	tx.exec(`UPDATE public.s SET id = id + 1000000 WHERE id BETWEEN 101 AND 110`)
	tx.exec(`DELETE FROM public.s WHERE id BETWEEN 111 AND 120`)
	tx.exec(`UPDATE public.w SET k = k + 10`) // big is unchanged and TOASTed
	tx.exec("SAVEPOINT a")
	tx.insert(-1000, -1, "rolled back")
	tx.exec("ROLLBACK TO a")
	tx.exec(`ALTER TABLE public.s ADD COLUMN extra int DEFAULT 7`)
	tx.insert(bigRows+1, bigRows+100, "after the new column")
	tx.exec("COMMIT")
	e.exec(`INSERT INTO public.s VALUES (-1, 'last')`)
	// Events of public.s: rows 0 and -1, the inserts, the updates (rows 0 to 100), key moves (a
	// delete and a create each) and deletes, the inserts after the new column. Counting one
	// short let a run stop waiting before row -1 arrived, and the two runs differ by it.
	n := 2 + bigRows + 101 + 2*10 + 10 + 100
	out := map[string][]string{}
	for topic, want := range map[string]int{"wh.public.s": n, "wh.public.w": 6} {
		out[topic] = distinctViews(t, e, topic, want)
	}
	if toast := out["wh.public.w"][len(out["wh.public.w"])-1]; !strings.Contains(toast, "toast [big]") {
		t.Errorf("the last update of public.w has no unchanged TOASTed column: %s", toast)
	}
	if streaming == config.StreamingOn {
		encoded := 0
		for _, l := range logs.FilterMessage("streamed transaction committed and handed to Kafka").All() {
			encoded += int(l.ContextMap()["encoded_while_streaming"].(int64))
		}
		if encoded < bigRows {
			t.Errorf("%d changes encoded while the transaction streamed, want at least %d", encoded, bigRows)
		}
	}
	return out
}

// recordView prints a record without its position, times and xid.
func recordView(r record) string {
	if r.ev == nil {
		return fmt.Sprintf("partition %d key %q: tombstone", r.rec.Partition, r.key)
	}
	ev := *r.ev
	ev.Source.LSN, ev.Source.TxID, ev.Source.TsMs, ev.TsMs = 0, 0, 0, 0
	return fmt.Sprintf("partition %d key %q: %s before %v after %v toast %v source %+v columns %+v",
		r.rec.Partition, r.key, ev.Op, ev.Before, ev.After, ev.UnchangedToast, ev.Source, ev.Table.Columns)
}

// TestSpillDirFailure: spill_dir fails while capture runs, and the next large transaction cannot
// be kept there. Removed (a temp-file cleaner), the next run makes it again and goes on
// streaming. Replaced by a file (a disk gone read-only or full fails the same way every time),
// it fails the next run too: capture says so once (an error, the backflow_capture_spill_failed
// gauge, the reason for status) and goes on from the slot with protocol 1 rather than failing at
// the same place run after run. Either way every row of the transaction arrives.
func TestSpillDirFailure(t *testing.T) {
	for _, tc := range []struct {
		name     string
		breakDir func(dir string) error
		fallBack bool
	}{
		{"removed", os.RemoveAll, false},
		{"replaced by a file", func(dir string) error {
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
			return os.WriteFile(dir, []byte("not a directory"), 0o600)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newStreamEnv(t, config.StreamingOn, "public.s")
			m := observe.NewMetrics()
			core, logs := observer.New(zapcore.WarnLevel)
			ctx, cancel := context.WithCancel(context.Background())
			c := capture.New(e.cfg, capture.WithMetrics(m), capture.WithLogger(zap.New(core)))
			done := make(chan error, 1)
			go func() { done <- c.RunWithRetry(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			var dirs []string
			eventually(t, "capture streaming, its spill directory made", func() error {
				if dirs, _ = filepath.Glob(filepath.Join(e.cfg.Source.Postgres.SpillDir, "backflow-*")); len(dirs) != 1 || !e.slotExists() {
					return notYet("spill directories %v", dirs)
				}
				return nil
			})
			if err := tc.breakDir(dirs[0]); err != nil {
				t.Fatal(err)
			}
			tx := e.begin()
			tx.insert(1, bigRows, "big")
			tx.exec("COMMIT")

			got := idCounts(e.waitEvents("wh.public.s", bigRows))
			for id := int32(1); id <= bigRows; id++ {
				if got[id] == 0 {
					t.Fatalf("id %d never reached the topic (%d distinct ids)", id, len(got))
				}
			}
			gauge, reason := metricSum(t, m, "backflow_capture_spill_failed"), m.SpillFailure()
			fellBack := logs.FilterMessageSnippet("spill_dir failed again").Len()
			if !tc.fallBack {
				if gauge != 0 || reason != "" || fellBack != 0 {
					t.Fatalf("a passing failure stopped streaming: gauge %v, reason %q, %d errors", gauge, reason, fellBack)
				}
				if n := logs.FilterMessageSnippet("spill_dir failed; capture tries it again").Len(); n != 1 {
					t.Errorf("%d warnings of the failed spill_dir, want 1", n)
				}
				return
			}
			if gauge != 1 || !strings.Contains(reason, "spill") || fellBack != 1 {
				t.Errorf("after spill_dir failed twice: gauge %v, reason %q, %d errors saying so; want 1, the error, 1", gauge, reason, fellBack)
			}
		})
	}
}

// TestStreamedTypesRoundTrip: every supported type and NULLs through a transaction streamed
// while in progress, whose changes capture encodes as they come, decode back from Kafka as the
// snapshot and protocol 1 write them (TestTypesRoundTrip).
func TestStreamedTypesRoundTrip(t *testing.T) {
	e := newStreamEnv(t, config.StreamingOn, "public.types")
	e.exec(typesTable)
	e.start()
	// A change committed first: capture knows the table's shape from it, which it needs to
	// encode a streamed transaction's changes as they come.
	e.exec("INSERT INTO public.types VALUES " + strings.Replace(typesRow, "%d", "1", 1))
	e.waitEvents("wh.public.types", 1)
	tx := e.begin()
	tx.exec("INSERT INTO public.types (id) VALUES (2)")
	// Enough rows past logical_decoding_work_mem for PostgreSQL to stream the transaction.
	tx.exec(`INSERT INTO public.types SELECT g, i2, i8, num, f4, f8, b, t, vc, ch, by, d, tm, ts, tstz, iv, u, j, jb, m, ai, at, am, an, ip
		FROM public.types, generate_series(3, 3000) g WHERE id = 1`)
	e.waitStreamed()
	tx.exec("COMMIT")
	recs := e.waitEvents("wh.public.types", 3000)
	got := map[int32]*change.Event{}
	for _, r := range recs {
		got[r.ev.After["id"].(int32)] = r.ev
	}
	for _, id := range []int32{3, 3000} {
		ev := got[id]
		if ev == nil || ev.Op != change.OpCreate {
			t.Fatalf("id %d: event %+v, want an insert", id, ev)
		}
		for col, w := range typesWant(id) {
			if g := ev.After[col]; !reflect.DeepEqual(g, w) {
				t.Errorf("id %d column %s = %#v (%T), want %#v (%T)", id, col, g, g, w, w)
			}
		}
		if src := ev.Source; src.TxID == 0 || src.LSN == 0 || src.TsMs == 0 || src.Snapshot != "false" {
			t.Errorf("id %d: source block %+v, want the commit's", id, src)
		}
	}
	for col, v := range got[2].After {
		if col != "id" && v != nil {
			t.Errorf("NULL column %s decoded as %#v", col, v)
		}
	}
}
