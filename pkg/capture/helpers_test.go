package capture_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// env is one warehouse and one broker for a test.
type env struct {
	t   *testing.T
	pg  *testenv.Postgres
	kf  *testenv.Kafka
	cfg *config.Pipeline
	// opts are given to every capture that start runs (a logger here replaces the test's).
	opts []capture.Opt
	// retry makes start run capture as the CLI does (RunWithRetry): a failed run starts again.
	retry bool
}

func newEnv(t *testing.T, tables ...string) *env {
	t.Helper()
	pg := testenv.NewPostgres(t)
	kf := testenv.NewKafka(t)
	return &env{t: t, pg: pg, kf: kf, cfg: pipeline(pg.URL("postgres"), kf.Brokers(), tables...)}
}

// pipeline is a validated-looking config with the defaults the loader would apply.
func pipeline(url string, brokers []string, tables ...string) *config.Pipeline {
	hb := 500 * time.Millisecond
	return &config.Pipeline{
		Source: config.Source{Postgres: config.Postgres{
			URL: url, Slot: "backflow", Publication: "backflow", Tables: tables, Snapshot: "initial",
			SnapshotChunk: 100, SnapshotParallelism: 4, StatusInterval: 200 * time.Millisecond, HeartbeatInterval: &hb, MaxInFlight: 1000,
		}},
		Kafka: config.Kafka{
			Brokers: brokers, TopicPrefix: "wh", Format: "avro",
			Topics: config.Topics{Partitions: 3, ReplicationFactor: 1, CleanupPolicy: "compact"},
		},
	}
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if err := e.pg.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("exec %q: %v", sql, err)
	}
}

// start runs capture in the background until the test ends; the returned func stops it and
// returns Run's error.
func (e *env) start() (stop func() error) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := capture.New(e.cfg, append([]capture.Opt{capture.WithLogger(zaptest.NewLogger(e.t))}, e.opts...)...)
	done := make(chan error, 1)
	run := c.Run
	if e.retry {
		run = c.RunWithRetry
	}
	go func() { done <- run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	e.t.Cleanup(func() { _ = stop() })
	// Changes made before the slot exists are not in its stream: wait for it.
	eventually(e.t, "replication slot exists", func() error {
		select {
		case err := <-done:
			done <- err // for stop, which the test's cleanup calls
			e.t.Fatalf("capture stopped: %v", err)
		default:
		}
		if e.slotExists() {
			return nil
		}
		return notYet("no slot")
	})
	return stop
}

func (e *env) slotExists() bool {
	conn, err := e.pg.Connect(context.Background(), "postgres")
	if err != nil {
		return false
	}
	defer conn.Close(context.Background())
	var n int
	_ = conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'backflow'").Scan(&n)
	return n == 1
}

// record is one decoded record: ev nil means a tombstone.
type record struct {
	key []byte
	ev  *change.Event
	rec *kgo.Record
}

// read reads a topic with the schema topic, decoding every record. The data topic is read
// first: capture publishes a schema before any record that uses it.
func (e *env) read(topic string) ([]record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs, err := testenv.ConsumeAll(ctx, e.kf.Brokers(), topic)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", topic, err)
	}
	store := codec.NewSchemaStore()
	schemas, err := testenv.ConsumeAll(ctx, e.kf.Brokers(), e.cfg.Kafka.TopicPrefix+"._schemas")
	if err != nil && len(recs) > 0 && e.cfg.Kafka.Format != config.FormatJSON {
		return nil, fmt.Errorf("read schema topic: %w", err)
	}
	for _, r := range schemas {
		if _, err := store.Add(r.Value); err != nil {
			return nil, fmt.Errorf("schema record %s: %w", r.Key, err)
		}
	}
	dec, err := codec.NewDecoder(codec.Schemas(store))
	if err != nil {
		return nil, err
	}
	out := make([]record, 0, len(recs))
	for _, r := range recs {
		ev, err := dec.Decode(ctx, topic, r.Key, r.Value)
		if err != nil {
			return nil, fmt.Errorf("decode %s/%d@%d: %w", topic, r.Partition, r.Offset, err)
		}
		out = append(out, record{key: r.Key, ev: ev, rec: r})
	}
	return out, nil
}

// waitEvents polls a topic until it holds at least n non-tombstone events.
func (e *env) waitEvents(topic string, n int) []record {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		recs := e.tryEvents(topic)
		got := 0
		for _, r := range recs {
			if r.ev != nil {
				got++
			}
		}
		if got >= n {
			return recs
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: %d events after 60s, want %d", topic, got, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tryEvents is events, but a topic not there yet is empty.
func (e *env) tryEvents(topic string) []record {
	e.t.Helper()
	recs, err := e.read(topic)
	if err != nil && strings.Contains(err.Error(), "UNKNOWN_TOPIC") {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return recs
}

// byOffset orders records of one key stream: within a partition by offset.
func byPartitionOffset(recs []record) {
	sort.SliceStable(recs, func(i, j int) bool {
		if recs[i].rec.Partition != recs[j].rec.Partition {
			return recs[i].rec.Partition < recs[j].rec.Partition
		}
		return recs[i].rec.Offset < recs[j].rec.Offset
	})
}

// slotLSN returns the slot's confirmed flush position as text.
func (e *env) slotLSN() string {
	e.t.Helper()
	conn, err := e.pg.Connect(context.Background(), "postgres")
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var lsn *string
	err = conn.QueryRow(context.Background(), "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'backflow'").Scan(&lsn)
	if err != nil || lsn == nil {
		return ""
	}
	return *lsn
}

func (e *env) currentLSN() string {
	e.t.Helper()
	conn, err := e.pg.Connect(context.Background(), "postgres")
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var lsn string
	if err := conn.QueryRow(context.Background(), "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		e.t.Fatal(err)
	}
	return lsn
}

func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: still failing after 60s: %v", what, err)
}

var errNotYet = errors.New("not yet")

func notYet(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errNotYet, fmt.Sprintf(format, args...))
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }

func toString(v any) string { return fmt.Sprint(v) }

func sameMultiset(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	count := map[string]int{}
	for _, s := range a {
		count[s]++
	}
	for _, s := range b {
		count[s]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

// inOrder reports whether want appear in list in this relative order.
func inOrder(list []string, want ...string) bool {
	i := 0
	for _, s := range list {
		if i < len(want) && s == want[i] {
			i++
		}
	}
	return i == len(want)
}

func lsnLess(a, b string) bool {
	pa, err1 := pglogrepl.ParseLSN(a)
	pb, err2 := pglogrepl.ParseLSN(b)
	return err1 == nil && err2 == nil && pa < pb
}
