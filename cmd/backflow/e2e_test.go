package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// buildBinary compiles the backflow command once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "backflow")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is a backflow child process whose output goes to a log file.
type process struct {
	cmd *exec.Cmd
	log string
}

func startProcess(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "backflow-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start backflow: %v", err)
	}
	p := &process{cmd: cmd, log: logf.Name()}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		logf.Close()
	})
	return p
}

func (p *process) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill backflow: %v", err)
	}
	_, _ = p.cmd.Process.Wait()
}

// dump stops a process that seems stuck with SIGQUIT, which makes Go print every goroutine, and
// returns the last lines of its log and then that dump: the dump alone can fill the output and
// push out the log lines that say what happened.
func (p *process) dump() string {
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	_, _ = p.cmd.Process.Wait()
	b, _ := os.ReadFile(p.log)
	var logLines, stacks []string
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "{") {
			logLines = append(logLines, line)
		} else {
			stacks = append(stacks, line)
		}
	}
	logLines = logLines[max(len(logLines)-150, 0):]
	out := strings.Join(logLines, "") + strings.Join(stacks, "")
	if len(out) > 80000 {
		out = out[:80000]
	}
	return out
}

func (p *process) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// decodedRecord is a record with its decoded event (nil for tombstones).
type decodedRecord struct {
	rec *kgo.Record
	ev  *change.Event
}

// readTopic decodes every record of topic, with the schemas from the <prefix>._schemas topic.
func readTopic(t *testing.T, brokers []string, prefix, topic string) []decodedRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	store := codec.NewSchemaStore()
	schemas, err := testenv.ConsumeAll(ctx, brokers, prefix+"._schemas")
	if err != nil {
		t.Fatalf("read schemas: %v", err)
	}
	for _, r := range schemas {
		if _, err := store.Add(r.Value); err != nil {
			t.Fatal(err)
		}
	}
	dec, err := codec.NewDecoder(codec.Schemas(store))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := testenv.ConsumeAll(ctx, brokers, topic)
	if err != nil {
		t.Fatalf("read %s: %v", topic, err)
	}
	out := make([]decodedRecord, len(recs))
	for i, r := range recs {
		ev, err := dec.Decode(ctx, topic, r.Key, r.Value)
		if err != nil {
			t.Fatalf("decode %s/%d@%d: %v", topic, r.Partition, r.Offset, err)
		}
		out[i] = decodedRecord{rec: r, ev: ev}
	}
	return out
}

// waitSlotAt waits until the slot has confirmed at least lsn, failing with the process log.
func waitSlotAt(t *testing.T, pg *testenv.Postgres, slot string, lsn pglogrepl.LSN, p *process) {
	t.Helper()
	conn, err := pg.Connect(context.Background(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var s *string
		_ = conn.QueryRow(context.Background(), "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&s)
		if s != nil {
			if got, err := pglogrepl.ParseLSN(*s); err == nil && got >= lsn {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s did not reach %s (at %v); backflow log:\n%s", slot, lsn, deref(s), p.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}

func currentLSN(t *testing.T, pg *testenv.Postgres) pglogrepl.LSN {
	t.Helper()
	conn, err := pg.Connect(context.Background(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var s string
	if err := conn.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

func pipelineYAML(pgURL string, brokers []string, extra string) string {
	return fmt.Sprintf(`source:
  postgres:
    url: %s
    tables: [public.w]
    snapshot_chunk: 1000
    status_interval: 200ms
    heartbeat_interval: 1s
kafka:
  brokers: [%s]
  topic_prefix: wh
  topics: {partitions: 4}
  session_timeout: 6s
log: {format: json, level: warn}
%s`, pgURL, strings.Join(brokers, ", "), extra)
}
