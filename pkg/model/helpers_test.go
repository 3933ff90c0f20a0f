package model

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/observe"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// env is one warehouse, one broker and a pipeline with models for a test.
type env struct {
	t   *testing.T
	pg  *testenv.Postgres
	kf  *testenv.Kafka
	cfg *config.Pipeline
}

func newEnv(t *testing.T, models ...config.Model) *env {
	t.Helper()
	pg := testenv.NewPostgres(t)
	kf := testenv.NewKafka(t)
	hb := 500 * time.Millisecond
	cfg := &config.Pipeline{
		Source: config.Source{Postgres: config.Postgres{
			URL: pg.URL("postgres"), Slot: "backflow", Publication: "backflow", Tables: []string{"public.events"}, Snapshot: "initial",
			SnapshotChunk: 100, StatusInterval: 200 * time.Millisecond, HeartbeatInterval: &hb, MaxInFlight: 1000,
			StatementTimeout: time.Minute,
		}},
		Kafka: config.Kafka{
			Brokers: kf.Brokers(), TopicPrefix: "wh", Format: "avro",
			Topics: config.Topics{Partitions: 3, ReplicationFactor: 1, CleanupPolicy: "compact"},
		},
		Models:         models,
		ModelsStateDir: filepath.Join(t.TempDir(), "models"),
	}
	return &env{t: t, pg: pg, kf: kf, cfg: cfg}
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if err := e.pg.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("exec %q: %v", sql, err)
	}
}

func (e *env) runner(opts ...Opt) *Runner {
	e.t.Helper()
	r, err := NewRunner(e.cfg, append([]Opt{WithLogger(zaptest.NewLogger(e.t)), WithMetrics(observe.NewMetrics())}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(r.Close)
	return r
}

// mustRun runs a model and fails the test if the run fails.
func (e *env) mustRun(r *Runner, name string) Result {
	e.t.Helper()
	res, err := r.Run(context.Background(), name)
	if err != nil {
		e.t.Fatalf("run %s: %v", name, err)
	}
	return res
}

// event is one decoded record of a model topic; ev nil is a tombstone.
type event struct {
	key string // the state key header
	ev  *change.Event
}

// events reads and decodes a whole topic.
func (e *env) events(topic string) []event {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs, err := testenv.ConsumeAll(ctx, e.kf.Brokers(), topic)
	if err != nil && strings.Contains(err.Error(), "UNKNOWN_TOPIC") {
		return nil // not created yet
	}
	if err != nil {
		e.t.Fatalf("read %s: %v", topic, err)
	}
	store := codec.NewSchemaStore()
	schemas, err := testenv.ConsumeAll(ctx, e.kf.Brokers(), "wh._schemas")
	if err != nil && len(recs) > 0 && !strings.HasSuffix(e.cfg.Kafka.Format, "json") { // JSON carries its schema
		e.t.Fatalf("read schemas: %v", err)
	}
	for _, r := range schemas {
		if _, err := store.Add(r.Value); err != nil {
			e.t.Fatal(err)
		}
	}
	dec, err := codec.NewDecoder(codec.Schemas(store))
	if err != nil {
		e.t.Fatal(err)
	}
	var out []event
	for _, r := range recs {
		ev, err := dec.Decode(ctx, topic, r.Key, r.Value)
		if err != nil {
			e.t.Fatalf("decode %s@%d: %v", topic, r.Offset, err)
		}
		var key string
		for _, h := range r.Headers {
			if h.Key == HeaderKey { // text keys in these tests: their columns' text, each ended by 0x00
				key = strings.ReplaceAll(strings.TrimSuffix(string(h.Value), "\x00"), "\x00", "|")
			}
		}
		out = append(out, event{key: key, ev: ev})
	}
	return out
}

// ops summarises the events after skip: "op:key" sorted by key within the order of the topic's
// partitions, so compare as sets.
func ops(evs []event) map[string]string {
	out := map[string]string{}
	for _, e := range evs {
		if e.ev == nil {
			continue
		}
		out[e.key] = string(e.ev.Op)
	}
	return out
}

// ofRun keeps the events of one run (tombstones are left out).
func ofRun(evs []event, run int64) []event {
	var out []event
	for _, e := range evs {
		if e.ev != nil && e.ev.Source.TxID == run {
			out = append(out, e)
		}
	}
	return out
}

// materialize applies a topic's events the way a sink would: the last after-image per key.
func materialize(evs []event) map[string]string {
	out := map[string]string{}
	for _, e := range evs {
		switch {
		case e.ev == nil:
		case e.ev.Op == change.OpDelete:
			delete(out, e.key)
		default:
			out[e.key] = rowText(e.ev.After)
		}
	}
	return out
}

func rowText(r change.Row) string {
	return fmt.Sprintf("%v", map[string]any(r))
}

// want is what the model's query returns now, in the form of materialize.
func (e *env) want(query string) map[string]string {
	e.t.Helper()
	ctx := context.Background()
	conn, err := e.pg.Connect(ctx, "postgres")
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT email, score::int8, n::int8 FROM ("+query+") q")
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var email string
		var score, n int64
		if err := rows.Scan(&email, &score, &n); err != nil {
			e.t.Fatal(err)
		}
		out[email] = rowText(change.Row{"email": email, "score": score, "n": n})
	}
	return out
}
