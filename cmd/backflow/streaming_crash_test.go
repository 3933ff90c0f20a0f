package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestCaptureKilledInStreamedTransaction SIGKILLs capture while PostgreSQL streams it a large
// transaction in progress, which then commits while capture is down, beside one that rolls back.
// The restarted capture removes the spill files the killed one left and sends every committed row
// at least once, and nothing of the transaction rolled back.
func TestCaptureKilledInStreamedTransaction(t *testing.T) {
	bin := buildBinary(t)
	pg := testenv.NewPostgres(t, testenv.PGConf("logical_decoding_work_mem", "64kB"))
	kf := testenv.NewKafka(t)
	ctx := context.Background()
	if err := pg.Exec(ctx, `CREATE TABLE public.w (id int PRIMARY KEY, v int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	spillDir := t.TempDir()
	cfg := strings.Replace(pipelineYAML(pg.URL("postgres"), kf.Brokers(), ""), "    heartbeat_interval: 1s\n",
		"    heartbeat_interval: 1s\n    streaming: on\n    spill_dir: "+spillDir+"\n", 1)
	cfgPath := writeConfig(t, cfg)
	p := startProcess(t, bin, "capture", "-c", cfgPath)
	waitSlotActive(t, pg, p)

	big := beginTx(t, pg)
	execTx(t, big, `INSERT INTO public.w SELECT g, 1 FROM generate_series(1, 20000) g`)
	rolledBack := beginTx(t, pg)
	execTx(t, rolledBack, `INSERT INTO public.w SELECT g, 2 FROM generate_series(40001, 60000) g`)
	spillFiles := func() []string {
		files, _ := filepath.Glob(filepath.Join(spillDir, "*", "*.spill"))
		return files
	}
	deadline := time.Now().Add(time.Minute)
	for len(spillFiles()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the two transactions were not streamed to capture: spill files %v; log:\n%s", spillFiles(), p.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.kill(t)
	left := spillFiles()
	if len(left) != 2 {
		t.Fatalf("spill files after the kill: %v, want the two transactions'", left)
	}

	if err := pg.Exec(ctx, `INSERT INTO public.w SELECT g, 3 FROM generate_series(20001, 20010) g`); err != nil {
		t.Fatal(err)
	}
	execTx(t, big, `INSERT INTO public.w SELECT g, 1 FROM generate_series(30001, 30010) g`)
	execTx(t, big, "COMMIT")
	execTx(t, rolledBack, "ROLLBACK")

	p = startProcess(t, bin, "capture", "-c", cfgPath)
	waitSlotAt(t, pg, "backflow", currentLSN(t, pg), p)
	seen := map[int32]bool{}
	for _, r := range readTopic(t, kf.Brokers(), "wh", "wh.public.w") {
		if r.ev == nil {
			continue
		}
		id := r.ev.After["id"].(int32)
		if id > 40000 {
			t.Fatalf("id %d of the rolled-back transaction reached Kafka", id)
		}
		seen[id] = true
	}
	for _, span := range [][2]int32{{1, 20000}, {20001, 20010}, {30001, 30010}} {
		for id := span[0]; id <= span[1]; id++ {
			if !seen[id] {
				t.Fatalf("committed id %d missing from the topic", id)
			}
		}
	}
	if len(seen) != 20020 {
		t.Errorf("%d distinct ids on the topic, want 20020", len(seen))
	}
	for _, f := range left {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("spill file %s of the killed capture is still there (%v)", f, err)
		}
	}
}

// waitSlotActive waits until capture streams from its slot.
func waitSlotActive(t *testing.T, pg *testenv.Postgres, p *process) {
	t.Helper()
	conn, err := pg.Connect(context.Background(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(time.Minute)
	for {
		var active bool
		_ = conn.QueryRow(context.Background(), "SELECT active FROM pg_replication_slots WHERE slot_name = 'backflow'").Scan(&active)
		if active {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("capture does not stream from its slot; log:\n%s", p.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func beginTx(t *testing.T, pg *testenv.Postgres) *pgx.Conn {
	t.Helper()
	conn, err := pg.Connect(context.Background(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	execTx(t, conn, "BEGIN")
	return conn
}

func execTx(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}
