package capture_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/observe"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// These tests change tables under a running capture the way warehouses do (rename swaps, DROP and
// CREATE, renames away, lost slots) and check that a consumer applying the topic in order ends
// equal to the table, deletes included.

// topicState applies a topic's events per partition in offset order, keyed by the id column's
// text, holding the v column's text.
func topicState(recs []record) map[string]string {
	byPartitionOffset(recs)
	state := map[string]string{}
	for _, r := range recs {
		if r.ev == nil {
			continue
		}
		switch r.ev.Op {
		case change.OpDelete:
			delete(state, fmt.Sprint(r.ev.Before["id"]))
		case change.OpTruncate:
			clear(state)
		default:
			state[fmt.Sprint(r.ev.After["id"])] = fmt.Sprint(r.ev.After["v"])
		}
	}
	return state
}

// tableState reads id and v of a table as text.
func (e *env) tableState(table string) map[string]string {
	e.t.Helper()
	conn, err := e.pg.Connect(context.Background(), "postgres")
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), "SELECT id::text, v::text FROM "+table)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, v string
		if err := rows.Scan(&id, &v); err != nil {
			e.t.Fatal(err)
		}
		out[id] = v
	}
	return out
}

// converges waits until the topic, applied in order, equals the table.
func (e *env) converges(topic, table string) {
	e.t.Helper()
	eventually(e.t, topic+" equals "+table, func() error {
		return diffStates(topicState(e.tryEvents(topic)), e.tableState(table))
	})
}

func diffStates(got, want map[string]string) error {
	var diffs []string
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			diffs = append(diffs, fmt.Sprintf("%s: topic %q, table %q", k, got[k], v))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: topic %q, not in the table", k, v))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	sort.Strings(diffs)
	return notYet("%d differences, e.g. %s", len(diffs), strings.Join(diffs[:min(5, len(diffs))], "; "))
}

// startWith runs capture with metrics until the test ends.
func (e *env) startWith(m *observe.Metrics) func() error {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := capture.New(e.cfg, capture.WithLogger(zaptest.NewLogger(e.t)), capture.WithMetrics(m))
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	e.t.Cleanup(func() { _ = stop() })
	eventually(e.t, "replication slot exists", func() error {
		if e.slotExists() {
			return nil
		}
		return notYet("no slot")
	})
	return stop
}

// TestSwapRebuiltTableConverges rebuilds a table the way dbt's table materialization does:
// CREATE TABLE AS under a temporary name, rename the old one away, rename the new one in, drop
// the old one. The rebuilt table has changed rows, lacks some and has new ones; capture must
// follow the new relation and the topic must end equal to it, then stream later changes.
func TestSwapRebuiltTableConverges(t *testing.T) {
	e := newEnv(t, "public.m")
	e.exec(`CREATE TABLE public.m (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO public.m SELECT g, 'old' || g FROM generate_series(1, 250) g`)
	m := observe.NewMetrics()
	e.startWith(m)
	e.converges("wh.public.m", "public.m")

	e.exec(`BEGIN;
		CREATE TABLE public.m__dbt_tmp AS
			SELECT id, CASE WHEN id % 3 = 0 THEN 'new' || id ELSE v END AS v FROM public.m WHERE id > 40
			UNION ALL SELECT g, 'added' || g FROM generate_series(251, 300) g;
		ALTER TABLE public.m__dbt_tmp ALTER COLUMN id SET NOT NULL, ALTER COLUMN v SET NOT NULL;
		ALTER TABLE public.m__dbt_tmp ADD PRIMARY KEY (id);
		ALTER TABLE public.m RENAME TO m__dbt_backup;
		ALTER TABLE public.m__dbt_tmp RENAME TO m;
		DROP TABLE public.m__dbt_backup;
		COMMIT`)
	e.converges("wh.public.m", "public.m")
	if got := metricSum(t, m, "backflow_capture_tables_replaced_total"); got < 1 {
		t.Errorf("tables replaced metric = %v, want at least 1", got)
	}
	e.exec(`UPDATE public.m SET v = 'later' WHERE id = 100; DELETE FROM public.m WHERE id = 101;
		INSERT INTO public.m VALUES (1000, 'later')`)
	e.converges("wh.public.m", "public.m")
}

// TestDropCreateUnderPatternConverges drops and recreates a table captured through a schema.*
// pattern, with other rows and an extra column.
func TestDropCreateUnderPatternConverges(t *testing.T) {
	e := newEnv(t, "app.*")
	e.exec(`CREATE SCHEMA app; CREATE TABLE app.items (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO app.items SELECT g, 'v' || g FROM generate_series(1, 120) g`)
	e.start()
	e.converges("wh.app.items", "app.items")

	e.exec(`DROP TABLE app.items;
		CREATE TABLE app.items (id int PRIMARY KEY, v text NOT NULL, extra int);
		INSERT INTO app.items SELECT g, 'w' || g, g FROM generate_series(60, 180) g`)
	e.converges("wh.app.items", "app.items")
	e.exec(`UPDATE app.items SET v = 'later' WHERE id = 70; DELETE FROM app.items WHERE id = 71`)
	e.converges("wh.app.items", "app.items")
}

// TestKeylessTableUnderPatternGoneIsNoLongerReported: a keyless table that appears in a
// captured schema (dbt's CREATE TABLE AS under a temporary name) is reported as one capture
// cannot follow, and no longer once it is gone (renamed in under a name capture can follow, or
// dropped): a stale report would keep status unhealthy for nothing.
func TestKeylessTableUnderPatternGoneIsNoLongerReported(t *testing.T) {
	e := newEnv(t, "app.*")
	e.exec(`CREATE SCHEMA app; CREATE TABLE app.items (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO app.items SELECT g, 'v' || g FROM generate_series(1, 10) g`)
	m := observe.NewMetrics()
	e.startWith(m)
	e.converges("wh.app.items", "app.items")
	e.exec(`CREATE TABLE app.items__dbt_tmp AS SELECT id, v || '!' AS v FROM app.items`)
	eventually(t, "keyless table reported", func() error {
		if u := m.UnfollowedTables(); len(u) != 1 || u[0].Table != "app.items__dbt_tmp" {
			return notYet("unfollowed tables %+v", u)
		}
		return nil
	})
	e.exec(`DROP TABLE app.items__dbt_tmp`)
	eventually(t, "report cleared", func() error {
		if u := m.UnfollowedTables(); len(u) != 0 {
			return notYet("unfollowed tables %+v", u)
		}
		if v := metricSum(t, m, "backflow_capture_table_missing"); v != 0 {
			return notYet("backflow_capture_table_missing = %v", v)
		}
		return nil
	})
}

// TestDbtSwapUnderPatternWithoutKey: dbt rebuilds a table of a captured schema (schema.*, a
// FOR TABLES IN SCHEMA publication, which publishes the keyless CREATE TABLE AS too) and swaps it
// in without a key. Capture goes on with the schema's other tables, reports the table, starts
// again while it is keyless, and converges once it has a key.
func TestDbtSwapUnderPatternWithoutKey(t *testing.T) {
	e := newEnv(t, "app.*")
	e.exec(`CREATE SCHEMA app; CREATE TABLE app.items (id int PRIMARY KEY, v text NOT NULL);
		CREATE TABLE app.other (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO app.items SELECT g, 'v' || g FROM generate_series(1, 20) g`)
	m := observe.NewMetrics()
	stop := e.startWith(m)
	e.converges("wh.app.items", "app.items")
	e.exec(`BEGIN; CREATE TABLE app.items__dbt_tmp AS SELECT id, v || '!' AS v FROM app.items WHERE id > 5;
		ALTER TABLE app.items RENAME TO items__dbt_backup; ALTER TABLE app.items__dbt_tmp RENAME TO items;
		DROP TABLE app.items__dbt_backup; COMMIT`)
	e.exec(`INSERT INTO app.other VALUES (1, 'still captured')`)
	e.converges("wh.app.other", "app.other")
	unfollowed := func() error {
		if u := m.UnfollowedTables(); len(u) != 1 || u[0].Table != "app.items" || !strings.Contains(u[0].Reason, "no primary key") {
			return notYet("unfollowed tables %+v", u)
		}
		return nil
	}
	eventually(t, "keyless app.items reported", unfollowed)
	if err := stop(); err != nil {
		t.Fatalf("capture stopped with %v, want nil", err)
	}

	m = observe.NewMetrics()
	e.startWith(m) // starts although a captured table has no key
	eventually(t, "keyless app.items reported after a restart", unfollowed)
	e.exec(`INSERT INTO app.other VALUES (2, 'after the restart')`)
	e.converges("wh.app.other", "app.other")
	e.exec(`ALTER TABLE app.items ADD PRIMARY KEY (id)`)
	e.converges("wh.app.items", "app.items")
	if u := m.UnfollowedTables(); len(u) != 0 {
		t.Fatalf("unfollowed tables %+v once app.items has a key, want none", u)
	}
}

// TestRenamedAwayTableIsReported renames a captured table away, while capture runs or while it
// is stopped (a listed table missing at a later start is no setup error): capture reports it
// missing in its metric and status, keeps streaming the others, and refreshes it when the name
// comes back.
func TestRenamedAwayTableIsReported(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stopped bool
	}{{"while running", false}, {"while stopped", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "public.gone", "public.other")
			e.exec(`CREATE TABLE public.gone (id int PRIMARY KEY, v text NOT NULL);
				CREATE TABLE public.other (id int PRIMARY KEY, v text NOT NULL);
				INSERT INTO public.gone SELECT g, 'v' || g FROM generate_series(1, 30) g`)
			m := observe.NewMetrics()
			stop := e.startWith(m)
			e.converges("wh.public.gone", "public.gone")
			if tc.stopped {
				if err := stop(); err != nil {
					t.Fatal(err)
				}
			}

			e.exec(`ALTER TABLE public.gone RENAME TO elsewhere`)
			if tc.stopped {
				m = observe.NewMetrics()
				e.startWith(m)
			}
			metricIs(t, m, "backflow_capture_table_missing", 1)
			if p := e.statusProblems(); !strings.Contains(p, "public.gone") {
				t.Errorf("status problems do not name the missing table: %q", p)
			}
			e.exec(`INSERT INTO public.other VALUES (1, 'still streaming')`)
			e.converges("wh.public.other", "public.other")

			e.exec(`DELETE FROM public.elsewhere WHERE id <= 10; ALTER TABLE public.elsewhere RENAME TO gone`)
			e.converges("wh.public.gone", "public.gone")
			eventually(t, "missing table cleared", func() error {
				if v := metricSum(t, m, "backflow_capture_table_missing"); v != 0 {
					return notYet("backflow_capture_table_missing = %v", v)
				}
				return nil
			})
		})
	}
}

// TestFullRefreshDeletesWhatTheTableLacks makes the topic hold keys the table lost without the
// stream saying so (a publication that did not publish deletes for a while), then asks for a
// full refresh: the topic ends equal to the table.
func TestFullRefreshDeletesWhatTheTableLacks(t *testing.T) {
	for _, format := range []string{config.FormatAvro, config.FormatJSON} {
		t.Run(format, func(t *testing.T) { testFullRefresh(t, format) })
	}
}

func testFullRefresh(t *testing.T, format string) {
	e := newEnv(t, "public.f")
	e.cfg.Kafka.Format = format
	e.cfg.Source.Postgres.SignalTable = "public.backflow_signal"
	e.exec(`CREATE TABLE public.f (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO public.f SELECT g, 'v' || g FROM generate_series(1, 350) g`)
	e.start()
	e.converges("wh.public.f", "public.f")
	e.exec(`ALTER PUBLICATION backflow SET (publish = 'insert, update, truncate')`)
	e.exec(`DELETE FROM public.f WHERE id % 7 = 0`)
	e.exec(`ALTER PUBLICATION backflow SET (publish = 'insert, update, delete, truncate')`)
	e.exec(`UPDATE public.f SET v = 'marker' WHERE id = 1`)
	eventually(t, "marker streamed", func() error {
		if topicState(e.tryEvents("wh.public.f"))["1"] != "marker" {
			return notYet("marker not on the topic")
		}
		return nil
	})
	if err := diffStates(topicState(e.tryEvents("wh.public.f")), e.tableState("public.f")); err == nil {
		t.Fatal("the topic should still hold the unpublished deletes' keys")
	}
	if _, err := capture.RequestSnapshot(context.Background(), e.cfg, "public.f", "", capture.FullRefresh()); err != nil {
		t.Fatal(err)
	}
	e.converges("wh.public.f", "public.f")
	kopts, err := kafka.ClientOpts(e.cfg.Kafka, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := capture.ReSnapshotState(context.Background(), e.cfg, kopts)
	if err != nil || len(st.Done) == 0 || st.Done[len(st.Done)-1].Deleted != 50 {
		t.Fatalf("re-snapshot state %+v (%v): want a done full refresh with 50 deletes", st, err)
	}
}

// slotGap changes public.s while its slot is gone or moved: what a resync must bring.
const slotGap = `DELETE FROM public.s WHERE id <= 20; UPDATE public.s SET v = 'gap' WHERE id BETWEEN 21 AND 40;
	INSERT INTO public.s SELECT g, 'gap' || g FROM generate_series(201, 230) g`

// capturedThenStopped captures a table public.s of 200 rows into its topic, then stops capture
// and waits until the server released the slot.
func capturedThenStopped(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, "public.s")
	e.exec(`CREATE TABLE public.s (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO public.s SELECT g, 'v' || g FROM generate_series(1, 200) g`)
	stop := e.start()
	e.converges("wh.public.s", "public.s")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.slotActive(false)
	return e
}

// TestSlotLoss drops the slot while capture is down and changes the table meanwhile: with
// on_slot_loss fail, capture refuses to start and names the slot; with resync it creates a new
// slot and the topic ends equal to the table, with the inserts, updates and deletes of the gap.
func TestSlotLoss(t *testing.T) {
	e := capturedThenStopped(t)
	e.exec(`SELECT pg_drop_replication_slot('backflow')`)
	e.exec(slotGap)

	e.cfg.Source.Postgres.OnSlotLoss = config.OnSlotLossFail
	err := capture.New(e.cfg, capture.WithLogger(zaptest.NewLogger(t))).Run(context.Background())
	if err == nil || !capture.IsSetupError(err) || !strings.Contains(err.Error(), `"backflow"`) || !strings.Contains(err.Error(), "on_slot_loss: resync") {
		t.Fatalf("with on_slot_loss fail: %v; want a setup error naming the slot and the way out", err)
	}
	if e.slotExists() {
		t.Fatal("on_slot_loss fail created a slot")
	}

	e.cfg.Source.Postgres.OnSlotLoss = config.OnSlotLossResync
	e.start()
	e.converges("wh.public.s", "public.s")
	e.exec(`UPDATE public.s SET v = 'after' WHERE id = 50; DELETE FROM public.s WHERE id = 51`)
	e.converges("wh.public.s", "public.s")
}

// TestSlotMovedWhileStopped: a slot dropped and created again under the same name, or advanced
// by hand, while capture is stopped starts past changes capture never read. Capture finds the
// slot past the position it confirmed when it stopped, says so, and refreshes every table, so the
// topic ends equal to the table. A slot left alone is not taken for one that moved.
func TestSlotMovedWhileStopped(t *testing.T) {
	for _, tc := range []struct {
		name, before, after string
		moved               bool
	}{
		{"dropped and created again", `SELECT pg_drop_replication_slot('backflow')`,
			`SELECT pg_create_logical_replication_slot('backflow', 'pgoutput')`, true},
		{"advanced", "", `SELECT pg_replication_slot_advance('backflow', pg_current_wal_lsn())`, true},
		{"left alone", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := capturedThenStopped(t)
			e.cfg.Source.Postgres.OnSlotLoss = config.OnSlotLossResync
			for _, sql := range []string{tc.before, slotGap, tc.after} {
				if sql != "" {
					e.exec(sql)
				}
			}
			core, logs := observer.New(zap.WarnLevel)
			e.opts = append(e.opts, capture.WithLogger(zap.New(core)))
			stop := e.start()
			if tc.moved {
				e.converges("wh.public.s", "public.s")
			}
			e.exec(`UPDATE public.s SET v = 'after' WHERE id = 50; DELETE FROM public.s WHERE id = 51`)
			e.converges("wh.public.s", "public.s")
			if !tc.moved {
				// Stopped as soon as it streams, twice: a run that confirms nothing of its own
				// records the slot's position all the same.
				for range 2 {
					if err := stop(); err != nil {
						t.Fatal(err)
					}
					e.slotActive(false)
					stop = e.start()
					e.slotActive(true)
				}
				e.exec(`UPDATE public.s SET v = 'last' WHERE id = 52`)
				e.converges("wh.public.s", "public.s")
			}
			if said := logs.FilterMessageSnippet("past where capture confirmed it when it stopped").Len() > 0; said != tc.moved {
				t.Errorf("capture said the slot moved: %v, want %v; warnings: %v", said, tc.moved, logs.All())
			}
		})
	}
}

// TestDatabaseRestored: the warehouse is restored from a snapshot of its disk (a cloud volume
// snapshot, pg_replslot included) taken before changes capture published. The slot comes back
// at its older position, and nothing would ever take those changes back out of the topic: rows
// inserted since stay, rows deleted since stay deleted. Capture finds the server's WAL behind
// the position it confirmed, says so, and refreshes every table, so the topic ends equal to the
// table as restored.
func TestDatabaseRestored(t *testing.T) {
	ctx := context.Background()
	e := capturedThenStopped(t)
	data := filepath.Join(e.pg.Dir(), "data")
	if err := e.pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", data, data+".snapshot").CombinedOutput(); err != nil {
		t.Fatalf("copy the data directory: %v\n%s", err, out)
	}
	if err := e.pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stop := e.start()
	e.exec(slotGap)
	e.converges("wh.public.s", "public.s")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.slotActive(false)

	if err := e.pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(data+".snapshot", data); err != nil {
		t.Fatal(err)
	}
	if err := e.pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.WarnLevel)
	e.opts = append(e.opts, capture.WithLogger(zap.New(core)))
	e.start()
	e.converges("wh.public.s", "public.s")
	if logs.FilterMessageSnippet("the database was restored from a backup").Len() == 0 {
		t.Errorf("no error says the database was restored; warnings: %v", logs.All())
	}
}

// slotActive waits until the slot is read by a capture (active), or released by the last one:
// the server ends a stopped capture's WAL sender a moment after its connection closes.
func (e *env) slotActive(active bool) {
	e.t.Helper()
	eventually(e.t, fmt.Sprintf("the slot active: %v", active), func() error {
		err := e.pg.Exec(context.Background(), fmt.Sprintf(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_replication_slots
			WHERE slot_name = 'backflow' AND active = %t) THEN RAISE EXCEPTION 'not yet'; END IF; END $$`, active))
		if err != nil {
			return notYet("%v", err)
		}
		return nil
	})
}

// metricSum adds up every series of a metric family.
func metricSum(t *testing.T, m *observe.Metrics, name string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, mt := range f.GetMetric() {
			sum += mt.GetCounter().GetValue() + mt.GetGauge().GetValue()
		}
	}
	return sum
}

// TestSlowChunkKeepsStreaming re-snapshots a table another session holds locked, so the chunk
// read waits, on a server that drops replication connections silent for 2s: the stream keeps
// delivering other tables' changes meanwhile, the connection survives, and the re-snapshot
// finishes once the lock is gone.
func TestSlowChunkKeepsStreaming(t *testing.T) {
	pg := testenv.NewPostgres(t, testenv.PGConf("wal_sender_timeout", "2s"))
	kf := testenv.NewKafka(t)
	e := &env{t: t, pg: pg, kf: kf, cfg: pipeline(pg.URL("postgres"), kf.Brokers(), "public.r", "public.other")}
	e.cfg.Source.Postgres.Snapshot = "never"
	e.cfg.Source.Postgres.SignalTable = "public.backflow_signal"
	e.exec(`CREATE TABLE public.r (id int PRIMARY KEY, v text NOT NULL);
		CREATE TABLE public.other (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO public.r SELECT g, 'v' || g FROM generate_series(1, 150) g`)
	stop := e.start()

	ctx := context.Background()
	locker, err := pg.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(ctx)
	if _, err := locker.Exec(ctx, "BEGIN; LOCK TABLE public.r IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	e.exec(`INSERT INTO public.backflow_signal (type, data) VALUES ('snapshot', '{"table": "public.r"}')`)
	deadline := time.Now().Add(6 * time.Second)
	for i := 1; time.Now().Before(deadline); i++ {
		e.exec(`INSERT INTO public.other VALUES ($1, 'while locked')`, i)
		time.Sleep(300 * time.Millisecond)
	}
	if got := len(topicState(e.tryEvents("wh.public.other"))); got == 0 {
		t.Fatal("no change of public.other arrived while the chunk read waited for the lock")
	}
	if got := len(topicState(e.tryEvents("wh.public.r"))); got != 0 {
		t.Fatalf("%d rows of the locked table on the topic before the lock was released", got)
	}
	if _, err := locker.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	e.converges("wh.public.r", "public.r")
	e.converges("wh.public.other", "public.other")
	if err := stop(); err != nil {
		t.Fatalf("capture failed: %v", err)
	}
}

// TestFullRefreshUnderConcurrentWrites runs a full refresh of a table that a writer keeps
// updating, deleting and re-inserting, after the topic was made to hold keys the table lost
// silently: no delete the refresh emits may remove a row the table has, and none of the lost
// keys may stay.
func TestFullRefreshUnderConcurrentWrites(t *testing.T) {
	e := newEnv(t, "public.r")
	e.cfg.Source.Postgres.SignalTable = "public.backflow_signal"
	e.exec(`CREATE TABLE public.r (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO public.r SELECT g, 0 FROM generate_series(1, 2000) g`)
	e.start()
	e.exec(`ALTER PUBLICATION backflow SET (publish = 'insert, update, truncate')`)
	e.exec(`DELETE FROM public.r WHERE id % 5 = 0`)
	e.exec(`ALTER PUBLICATION backflow SET (publish = 'insert, update, delete, truncate')`)

	reSnapshotUnderChurn(t, e, 2000, capture.FullRefresh())
	e.converges("wh.public.r", "public.r")
}

// TestInvalidatedSlotResyncs lets max_slot_wal_keep_size invalidate the slot while capture is
// down (wal_status lost): capture drops it, creates a new one and refreshes the table.
func TestInvalidatedSlotResyncs(t *testing.T) {
	pg := testenv.NewPostgres(t, testenv.PGConf("max_slot_wal_keep_size", "1MB"), testenv.PGConf("min_wal_size", "32MB"))
	kf := testenv.NewKafka(t)
	e := &env{t: t, pg: pg, kf: kf, cfg: pipeline(pg.URL("postgres"), kf.Brokers(), "public.s")}
	e.exec(`CREATE TABLE public.s (id int PRIMARY KEY, v text NOT NULL);
		CREATE TABLE public.filler (b text);
		INSERT INTO public.s SELECT g, 'v' || g FROM generate_series(1, 100) g`)
	stop := e.start()
	e.converges("wh.public.s", "public.s")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.exec(`DELETE FROM public.s WHERE id <= 10; UPDATE public.s SET v = 'gap' WHERE id BETWEEN 11 AND 20`)
	eventually(t, "slot invalidated", func() error {
		e.exec(`INSERT INTO public.filler SELECT repeat(md5(g::text), 64) FROM generate_series(1, 4000) g; SELECT pg_switch_wal(); CHECKPOINT`)
		conn, err := pg.Connect(context.Background(), "postgres")
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		var status string
		if err := conn.QueryRow(context.Background(), "SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = 'backflow'").Scan(&status); err != nil {
			return err
		}
		if status != "lost" {
			return notYet("wal_status %q", status)
		}
		return nil
	})
	e.start()
	e.converges("wh.public.s", "public.s")
}

// TestSwapWithoutKeyIsRefusedLoudly rebuilds a table by CREATE TABLE AS without a primary key:
// capture does not publish it (PostgreSQL would then refuse the table's UPDATEs and DELETEs),
// reports it missing with the reason, and follows it once it gets a key.
func TestSwapWithoutKeyIsRefusedLoudly(t *testing.T) {
	e := newEnv(t, "public.k")
	e.exec(`CREATE TABLE public.k (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO public.k SELECT g, 'v' || g FROM generate_series(1, 20) g`)
	m := observe.NewMetrics()
	e.startWith(m)
	e.converges("wh.public.k", "public.k")
	e.exec(`BEGIN; CREATE TABLE public.k_new AS SELECT id, v || '!' AS v FROM public.k WHERE id > 5;
		DROP TABLE public.k; ALTER TABLE public.k_new RENAME TO k; COMMIT`)
	eventually(t, "keyless table reported", func() error {
		if v := metricSum(t, m, "backflow_capture_table_missing"); v != 1 {
			return notYet("backflow_capture_table_missing = %v", v)
		}
		return nil
	})
	// The status page names it with the reason, through the running process's metrics.
	if u := m.UnfollowedTables(); len(u) != 1 || u[0].Table != "public.k" || !strings.Contains(u[0].Reason, "no primary key") {
		t.Fatalf("unfollowed tables %+v, want public.k with no primary key", u)
	}
	e.exec(`UPDATE public.k SET v = 'still writable' WHERE id = 6`) // not published, so not refused
	e.exec(`ALTER TABLE public.k ADD PRIMARY KEY (id)`)
	e.converges("wh.public.k", "public.k")
	if u := m.UnfollowedTables(); len(u) != 0 {
		t.Fatalf("unfollowed tables %+v once the table has a key, want none", u)
	}
}

// TestPartitionedTableUnderItsOwnName: the changes of a partitioned table come under its own name
// (its topic, which its sinks read), whether it is listed or matched by a pattern, and a pattern
// does not capture its partitions apart; a publication made without publish_via_partition_root
// (changes under the partitions' names) is switched to it.
func TestPartitionedTableUnderItsOwnName(t *testing.T) {
	for _, tc := range []struct {
		name, entry string
		ownPub      bool
	}{
		{"listed, publication made by hand", "app.ev", true},
		{"pattern", "app.*", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.entry)
			e.exec(`CREATE SCHEMA app;
				CREATE TABLE app.ev (id int, day date, v text NOT NULL, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
				CREATE TABLE app.ev_2024 PARTITION OF app.ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
				CREATE TABLE app.ev_2025 PARTITION OF app.ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
				INSERT INTO app.ev VALUES (1, '2024-05-01', 'a'), (2, '2025-05-01', 'b')`)
			if tc.ownPub {
				e.exec(`CREATE PUBLICATION backflow FOR TABLE app.ev`)
			}
			e.start()
			e.converges("wh.app.ev", "app.ev")
			e.exec(`INSERT INTO app.ev VALUES (3, '2024-06-01', 'c'), (4, '2025-06-01', 'd');
				UPDATE app.ev SET v = 'bb' WHERE id = 2; DELETE FROM app.ev WHERE id = 1`)
			e.converges("wh.app.ev", "app.ev")
			for _, part := range []string{"wh.app.ev_2024", "wh.app.ev_2025"} {
				if recs := e.tryEvents(part); len(recs) != 0 {
					t.Errorf("%s has %d records, want none: the changes belong to wh.app.ev", part, len(recs))
				}
			}
		})
	}
}

// TestGeneratedColumnsNotPublished: PostgreSQL does not send generated columns in changes, so the
// snapshot leaves them out too. Published by the snapshot only, a generated value would stay in
// the target, stale, after the row's first update.
func TestGeneratedColumnsNotPublished(t *testing.T) {
	e := newEnv(t, "public.g")
	e.exec(`CREATE TABLE public.g (id int PRIMARY KEY, qty int NOT NULL, price numeric NOT NULL,
			total numeric GENERATED ALWAYS AS (qty * price) STORED, v text);
		INSERT INTO public.g (id, qty, price, v) VALUES (1, 2, 3, 'a')`)
	e.start()
	e.waitEvents("wh.public.g", 1)
	e.exec(`UPDATE public.g SET qty = 10 WHERE id = 1; INSERT INTO public.g (id, qty, price, v) VALUES (2, 1, 1, 'b')`)
	recs := e.waitEvents("wh.public.g", 3)
	ops := ""
	for _, r := range recs {
		if r.ev == nil {
			continue
		}
		ops += string(r.ev.Op)
		if _, ok := r.ev.After["total"]; ok {
			t.Errorf("%s event carries the generated column: %v", r.ev.Op, r.ev.After)
		}
		if r.ev.After["qty"] == nil {
			t.Errorf("%s event lacks qty: %v", r.ev.Op, r.ev.After)
		}
	}
	if !strings.Contains(ops, "r") || !strings.Contains(ops, "u") || !strings.Contains(ops, "c") {
		t.Fatalf("ops %q, want a snapshot read, an update and an insert", ops)
	}
}

// TestKeyDroppedWhileDownIsRefreshedOnceKeyed: a captured table loses its primary key while
// capture is down and gets a row meanwhile. Capture starts, leaves the table out and reports it;
// once the table has a key again, a full refresh publishes the row its changes left out.
func TestKeyDroppedWhileDownIsRefreshedOnceKeyed(t *testing.T) {
	e := newEnv(t, "public.k", "public.other")
	e.exec(`CREATE TABLE public.k (id int CONSTRAINT k_pkey PRIMARY KEY, v text NOT NULL);
		CREATE TABLE public.other (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO public.k SELECT g, 'v' || g FROM generate_series(1, 10) g`)
	stop := e.startWith(observe.NewMetrics())
	e.converges("wh.public.k", "public.k")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.exec(`ALTER TABLE public.k DROP CONSTRAINT k_pkey; INSERT INTO public.k VALUES (11, 'while keyless')`)
	m := observe.NewMetrics()
	e.startWith(m)
	eventually(t, "keyless public.k reported", func() error {
		if u := m.UnfollowedTables(); len(u) != 1 || u[0].Table != "public.k" {
			return notYet("unfollowed tables %+v", u)
		}
		return nil
	})
	e.exec(`INSERT INTO public.other VALUES (1, 'streams on')`)
	e.converges("wh.public.other", "public.other")
	e.exec(`ALTER TABLE public.k ADD PRIMARY KEY (id)`)
	e.converges("wh.public.k", "public.k")
}

// TestKeyDroppedWhileRunning: a captured table loses its primary key while capture runs and gets
// rows meanwhile (inserts are all PostgreSQL allows then). Capture leaves them out and reports
// the table; once it has a key again, a full refresh publishes them.
func TestKeyDroppedWhileRunning(t *testing.T) {
	e := newEnv(t, "public.k")
	e.exec(`CREATE TABLE public.k (id int CONSTRAINT k_pkey PRIMARY KEY, v text NOT NULL);
		INSERT INTO public.k SELECT g, 'v' || g FROM generate_series(1, 10) g`)
	m := observe.NewMetrics()
	e.startWith(m)
	e.converges("wh.public.k", "public.k")
	e.exec(`ALTER TABLE public.k DROP CONSTRAINT k_pkey; INSERT INTO public.k VALUES (11, 'while keyless')`)
	eventually(t, "keyless public.k reported", func() error {
		if u := m.UnfollowedTables(); len(u) != 1 || u[0].Table != "public.k" {
			return notYet("unfollowed tables %+v", u)
		}
		return nil
	})
	e.exec(`ALTER TABLE public.k ADD PRIMARY KEY (id)`)
	e.exec(`INSERT INTO public.k VALUES (12, 'keyed again')`)
	e.converges("wh.public.k", "public.k")
	if u := m.UnfollowedTables(); len(u) != 0 {
		t.Fatalf("unfollowed tables %+v once public.k has a key, want none", u)
	}
}

// metricIs waits until the values of the metric called name sum to want.
func metricIs(t *testing.T, m *observe.Metrics, name string, want float64) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s at %v", name, want), func() error {
		if v := metricSum(t, m, name); v != want {
			return notYet("%s sums to %v", name, v)
		}
		return nil
	})
}

// status collects the pipeline's status as `backflow status` does.
func (e *env) status() *observe.Status {
	e.t.Helper()
	kopts, err := kafka.ClientOpts(e.cfg.Kafka, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	st, err := observe.Collect(context.Background(), e.cfg, kopts, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// statusProblems is the status's problems, one per line.
func (e *env) statusProblems() string {
	e.t.Helper()
	return strings.Join(e.status().Problems, "\n")
}
