package capture_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/kafka"
)

// observeLogs makes the env's captures log to the test and to the returned observer as well.
func observeLogs(e *env) *observer.ObservedLogs {
	core, logs := observer.New(zap.InfoLevel)
	e.opts = []capture.Opt{capture.WithLogger(zap.New(zapcore.NewTee(zaptest.NewLogger(e.t).Core(), core)))}
	return logs
}

// signalRow inserts a snapshot signal straight into the signal table, as anyone allowed to could.
func (e *env) signalRow(table, where string) {
	e.t.Helper()
	data, _ := json.Marshal(map[string]string{"table": table, "where": where})
	e.exec("INSERT INTO public.backflow_signal (type, data) VALUES ('snapshot', $1)", string(data))
}

func (e *env) count(sql string) int {
	e.t.Helper()
	conn, err := e.pg.Connect(context.Background(), "postgres")
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (e *env) reSnapshots() *capture.ReSnapshots {
	e.t.Helper()
	kopts, err := kafka.ClientOpts(e.cfg.Kafka, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	st, err := capture.ReSnapshotState(context.Background(), e.cfg, kopts)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// TestSignalRefusesUnsafeRequests inserts signal rows whose where clause would run other SQL
// (a function with a side effect, a statement, a subquery) or that name a table capture does not
// capture: each is refused with a warning naming the row, nothing of it runs, nothing is queued,
// and capture streams on and still performs a plain request after them. `backflow snapshot`'s
// path refuses the same requests before writing a signal.
func TestSignalRefusesUnsafeRequests(t *testing.T) {
	e := newEnv(t, "public.r")
	e.exec(`CREATE TABLE public.r (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO public.r SELECT g, g FROM generate_series(1, 50) g;
		CREATE TABLE public.secret (id int PRIMARY KEY, card text);
		CREATE TABLE public.marker (note text);
		CREATE FUNCTION public.side_effect() RETURNS boolean LANGUAGE sql AS
			$$ INSERT INTO public.marker VALUES ('side effect ran'); SELECT true $$`)
	e.cfg.Source.Postgres.Snapshot = "never"
	e.cfg.Source.Postgres.SignalTable = "public.backflow_signal"
	logs := observeLogs(e)
	e.start()

	bad := []struct{ table, where string }{
		{"public.r", "true) OR public.side_effect() OR (true"},
		{"public.r", "true) OR pg_sleep(1) IS NULL OR (true"},
		{"public.r", "1=1; INSERT INTO public.marker VALUES ('statement ran')"},
		{"public.r", "id IN (SELECT id FROM public.r WHERE public.side_effect())"},
		{"public.r", "side_effect()"},
		{"public.r", "v = 1 OR side_effect ( ) IS NOT NULL"},
		{"public.r", "id::text = '1' OR public.side_effect()"},
		{"public.r", "id = 1 -- ) OR public.side_effect() OR (true"},
		{"public.secret", ""},
		{"public.backflow_signal", ""},
	}
	for _, b := range bad {
		e.signalRow(b.table, b.where)
	}
	e.signalRow("public.r", "id <= 10 AND v IS NOT NULL")

	eventually(t, "the plain re-snapshot done", func() error {
		if st := e.reSnapshots(); len(st.Done) == 0 {
			return notYet("state %+v", st)
		}
		return nil
	})
	st := e.reSnapshots()
	if len(st.Queue) != 0 || len(st.Done) != 1 || st.Done[0].Where != "id <= 10 AND v IS NOT NULL" || st.Done[0].Rows != 10 {
		t.Fatalf("re-snapshot state: queue %v, done %+v; want only the plain request, done with 10 rows", st.Queue, st.Done)
	}
	if n := e.count("SELECT count(*) FROM public.marker"); n != 0 {
		t.Fatalf("the marker table has %d rows: a refused where clause ran", n)
	}
	refused := logs.FilterMessage("refusing snapshot signal").All()
	if len(refused) != len(bad) {
		t.Fatalf("%d signals refused, want %d: %v", len(refused), len(bad), refused)
	}
	for i, l := range refused {
		fields := l.ContextMap()
		if fields["signal_id"] != int64(i+1) || fields["table"] != bad[i].table || fields["error"] == "" {
			t.Errorf("refusal %d logged %v; want signal_id %d, table %s and the reason", i, fields, i+1, bad[i].table)
		}
	}
	t.Logf("e.g. %v", refused[0].ContextMap()["error"])
	if msg := refused[8].ContextMap()["error"]; !strings.Contains(msg.(string), "not in source.postgres.tables") {
		t.Errorf("unconfigured table refused with %q", msg)
	}

	// Capture streams on: the re-snapshot's 10 reads and a change made after all the signals.
	e.exec("UPDATE public.r SET v = 100 WHERE id = 50")
	reads, updated := 0, false
	for _, r := range e.waitEvents("wh.public.r", 11) {
		switch {
		case r.ev == nil:
		case r.ev.Op == change.OpRead:
			reads++
			if r.ev.After["id"].(int32) > 10 {
				t.Fatalf("re-snapshot read %v, outside its condition", r.ev.After)
			}
		case r.ev.Op == change.OpUpdate && r.ev.After["v"].(int32) == 100:
			updated = true
		}
	}
	if reads != 10 || !updated {
		t.Fatalf("topic: %d re-snapshot reads (want 10), update streamed: %v", reads, updated)
	}

	// The command's path refuses the same requests, before writing a signal.
	signals := e.count("SELECT count(*) FROM public.backflow_signal")
	for _, b := range bad {
		_, err := capture.RequestSnapshot(context.Background(), e.cfg, b.table, b.where)
		if err == nil {
			t.Errorf("RequestSnapshot(%s, %q) accepted", b.table, b.where)
		}
	}
	if _, err := capture.RequestSnapshot(context.Background(), e.cfg, "public.r", "idd = 1"); err == nil ||
		!strings.Contains(err.Error(), `position 1: "idd" is neither a column of the table`) {
		t.Errorf("unknown column: %v", err)
	}
	if n := e.count("SELECT count(*) FROM public.backflow_signal"); n != signals {
		t.Fatalf("refused requests wrote %d signal rows", n-signals)
	}
	if n := e.count("SELECT count(*) FROM public.marker"); n != 0 {
		t.Fatalf("the marker table has %d rows: a refused where clause ran", n)
	}
}

// TestSignalTableWritableByOthers: a signal table PUBLIC may insert into turns signals off (an
// error at startup naming the table and the grant, each signal refused, `backflow snapshot`
// failing with the reason) while capture streams on; signal_table_shared turns them back on.
func TestSignalTableWritableByOthers(t *testing.T) {
	e := newEnv(t, "public.r")
	e.exec(`CREATE TABLE public.r (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO public.r SELECT g, g FROM generate_series(1, 20) g;
		CREATE TABLE public.backflow_signal (id bigserial PRIMARY KEY, type text NOT NULL,
			data text NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now());
		CREATE ROLE analyst;
		GRANT INSERT ON public.backflow_signal TO PUBLIC;
		GRANT UPDATE (data) ON public.backflow_signal TO analyst`)
	e.cfg.Source.Postgres.Snapshot = "never"
	e.cfg.Source.Postgres.SignalTable = "public.backflow_signal"
	logs := observeLogs(e)
	stop := e.start()

	off := logs.FilterMessage("re-snapshot signals are off").All()
	if len(off) != 1 || off[0].Level != zap.ErrorLevel {
		t.Fatalf("startup logged %v; want one error saying signals are off", off)
	}
	const grants = "PUBLIC (INSERT), analyst (UPDATE)"
	if msg := off[0].ContextMap()["error"].(string); !strings.Contains(msg, "public.backflow_signal") || !strings.Contains(msg, grants) {
		t.Fatalf("startup error %q does not name the table and %s", msg, grants)
	}
	_, err := capture.RequestSnapshot(context.Background(), e.cfg, "public.r", "")
	if err == nil || !strings.Contains(err.Error(), grants) || !strings.Contains(err.Error(), "signal_table_shared") {
		t.Fatalf("RequestSnapshot: %v; want the grants and the setting named", err)
	}
	e.signalRow("public.r", "")
	e.exec("UPDATE public.r SET v = 100 WHERE id = 1")
	eventually(t, "the signal refused", func() error {
		if len(logs.FilterMessage("refusing snapshot signal").All()) == 0 {
			return notYet("no refusal logged")
		}
		return nil
	})
	if st := e.reSnapshots(); len(st.Queue)+len(st.Done) != 0 {
		t.Fatalf("a refused signal was queued: %+v", st)
	}
	e.waitEvents("wh.public.r", 1) // the update: capture streams on
	// Let the slot confirm the refused signal, so the restart below does not see it again.
	at := e.currentLSN()
	eventually(t, "slot past the signal", func() error {
		if lsnLess(e.slotLSN(), at) {
			return notYet("slot at %s", e.slotLSN())
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	e.cfg.Source.Postgres.SignalTableShared = true
	logs = observeLogs(e)
	e.start()
	if _, err := capture.RequestSnapshot(context.Background(), e.cfg, "public.r", "id > 15"); err != nil {
		t.Fatalf("with signal_table_shared: %v", err)
	}
	eventually(t, "re-snapshot done", func() error {
		if st := e.reSnapshots(); len(st.Done) != 1 || st.Done[0].Rows != 5 {
			return notYet("state %+v", st)
		}
		return nil
	})
	if n := len(logs.FilterMessage("re-snapshot signals are off").All()); n != 0 {
		t.Fatalf("signals still off with signal_table_shared")
	}
}
