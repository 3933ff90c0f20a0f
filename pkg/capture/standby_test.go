package capture_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/observe"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// instance is one capture process of a standby test: its Run in the background, its logs and its
// metrics.
type instance struct {
	name    string
	logs    *observer.ObservedLogs
	metrics *observe.Metrics
	done    chan error
	cancel  context.CancelFunc
}

func (e *env) startInstance(name string) *instance {
	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(e.t).Core(), core)).With(zap.String("test_instance", name))
	in := &instance{name: name, logs: logs, metrics: observe.NewMetrics(), done: make(chan error, 1)}
	c := capture.New(e.cfg, capture.WithLogger(log), capture.WithMetrics(in.metrics), capture.WithInstance(name))
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	go func() { in.done <- c.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-in.done })
	return in
}

// active reads the instance's backflow_capture_active gauge: -1 when not set yet.
func (in *instance) active(t *testing.T) float64 {
	t.Helper()
	families, err := in.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "backflow_capture_active" {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// activeInstance is what `backflow status` shows as the slot's capture.
func (e *env) activeInstance() string {
	e.t.Helper()
	return e.status().Capture.Instance
}

// TestStandbyWaitsForTheLock: while another session holds the slot's capture lock, a capture
// waits as a standby and touches nothing (no publication, slot, signal table or state topic);
// it takes over when the lock is released. A second capture then waits behind it, and takes over
// when the first loses its lock's session, which stops the first.
func TestStandbyWaitsForTheLock(t *testing.T) {
	e := newEnv(t, "public.r")
	e.exec(`CREATE TABLE public.r (id int PRIMARY KEY, v int NOT NULL)`)
	e.cfg.Source.Postgres.SignalTable = "public.backflow_signal"
	ctx := context.Background()
	holder, err := e.pg.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	if _, err := holder.Exec(ctx, "SET application_name = 'backflow capture elsewhere:1'"); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", observe.CaptureLockKey("backflow")); err != nil {
		t.Fatal(err)
	}

	b := e.startInstance("b")
	eventually(t, "b waits as a standby", func() error {
		if b.logs.FilterMessage("standby: slot backflow is captured by backflow capture elsewhere:1").Len() != 1 || b.active(t) != 0 {
			return notYet("b: active gauge %v, logs %v", b.active(t), b.logs.All())
		}
		return nil
	})
	time.Sleep(3 * time.Second) // a few more polls
	if n := b.logs.FilterMessageSnippet("standby:").Len(); n != 1 {
		t.Fatalf("the standby logged %d times; want once per holder", n)
	}
	untouched := map[string]string{
		"slot":          "SELECT count(*) FROM pg_replication_slots",
		"publication":   "SELECT count(*) FROM pg_publication",
		"signal table":  "SELECT count(*) FROM pg_class WHERE relname = 'backflow_signal'",
		"walsender":     "SELECT count(*) FROM pg_stat_replication",
		"b's sessions":  "SELECT count(*) - 1 FROM pg_stat_activity WHERE application_name = 'backflow capture b'",
		"b's snapshots": "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'backflow capture b' AND backend_xmin IS NOT NULL",
	}
	for what, q := range untouched {
		if n := e.count(q); n != 0 {
			t.Errorf("the standby touched the %s (%s: %d)", what, q, n)
		}
	}
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if recs, err := testenv.ConsumeAll(kctx, e.kf.Brokers(), "wh._capture"); err == nil && len(recs) > 0 {
		t.Errorf("the standby wrote capture state: %d records", len(recs))
	}
	if got := e.activeInstance(); got != "backflow capture elsewhere:1" {
		t.Errorf("status shows %q as the active capture", got)
	}

	holder.Close(ctx) // the holder's session ends: its lock goes with it
	eventually(t, "b takes over", func() error {
		if !e.slotExists() || b.active(t) != 1 || e.activeInstance() != "backflow capture b" {
			return notYet("slot %v, b's gauge %v, status shows %q", e.slotExists(), b.active(t), e.activeInstance())
		}
		return nil
	})

	a := e.startInstance("a")
	eventually(t, "a waits behind b", func() error {
		if a.logs.FilterMessage("standby: slot backflow is captured by backflow capture b").Len() != 1 {
			return notYet("a's logs %v", a.logs.All())
		}
		return nil
	})
	e.exec("INSERT INTO public.r VALUES (1, 1)")
	e.waitEvents("wh.public.r", 1)

	// b's lock session dies (a network cut, an administrator): b must stop, and a take over.
	pid, _, err := observe.CaptureHolder(ctx, mustConnect(t, e), "backflow")
	if err != nil || pid == 0 {
		t.Fatalf("lock holder: pid %d, %v", pid, err)
	}
	e.exec("SELECT pg_terminate_backend($1)", pid)
	select {
	case err := <-b.done:
		if err == nil || !strings.Contains(err.Error(), "lost the session holding the capture lock") {
			t.Fatalf("b stopped with %v; want the lost lock", err)
		}
		b.done <- err // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("b still runs 30s after its lock's session was terminated")
	}
	eventually(t, "a takes over", func() error {
		if a.active(t) != 1 || e.activeInstance() != "backflow capture a" {
			return notYet("a's gauge %v, status shows %q", a.active(t), e.activeInstance())
		}
		return nil
	})
	if b.active(t) != 0 {
		t.Errorf("b's gauge is %v after it stopped", b.active(t))
	}
	e.exec("INSERT INTO public.r VALUES (2, 2)")
	e.waitEvents("wh.public.r", 2)
}

func mustConnect(t *testing.T, e *env) *pgx.Conn {
	t.Helper()
	conn, err := e.pg.Connect(context.Background(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
