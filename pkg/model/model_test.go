package model

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/observe"
)

const leadScores = `SELECT email, sum(points)::int8 AS score, count(*) AS n FROM public.events GROUP BY email`

func leadModel() config.Model {
	return config.Model{Name: "lead_scores", SQL: leadScores, Key: []string{"email"}, Debounce: 100 * time.Millisecond}
}

func seedEvents(e *env) {
	e.exec(`CREATE TABLE public.events (id bigserial PRIMARY KEY, email text NOT NULL, points int NOT NULL)`)
	e.exec(`INSERT INTO public.events (email, points) VALUES ('a@x', 10), ('a@x', 5), ('b@x', 7), ('c@x', 1)`)
}

// TestFirstRunAndDiff: the first run publishes every row as a read; later runs publish only
// inserts, updates and deletes of the result, and a run of an unchanged result publishes nothing.
func TestFirstRunAndDiff(t *testing.T) {
	e := newEnv(t, leadModel())
	seedEvents(e)
	r := e.runner()
	topic := e.cfg.ModelTopic(e.cfg.Models[0])

	res := e.mustRun(r, "lead_scores")
	if res.Run != 1 || res.Rows != 3 || res.Changes["r"] != 3 {
		t.Fatalf("first run: %+v", res)
	}
	evs := e.events(topic)
	if got, want := ops(evs), map[string]string{"a@x": "r", "b@x": "r", "c@x": "r"}; !maps.Equal(got, want) {
		t.Fatalf("first run ops %v, want %v", got, want)
	}
	for _, ev := range evs {
		if ev.ev.Source.Table != "lead_scores" || ev.ev.Source.Schema != "model" || ev.ev.Source.TxID != 1 || ev.ev.Source.LSN == 0 {
			t.Fatalf("source of a model event: %+v", ev.ev.Source)
		}
	}
	if got := evs[0].ev.After["score"]; got == nil {
		t.Fatalf("after without score: %v", evs[0].ev.After)
	}

	e.exec(`INSERT INTO public.events (email, points) VALUES ('d@x', 3), ('a@x', 1)`)
	e.exec(`DELETE FROM public.events WHERE email = 'c@x'`)
	res = e.mustRun(r, "lead_scores")
	if res.Run != 2 || res.Rows != 3 {
		t.Fatalf("second run: %+v", res)
	}
	evs = e.events(topic)
	second := ofRun(evs, 2)
	if got, want := ops(second), map[string]string{"a@x": "u", "c@x": "d", "d@x": "c"}; !maps.Equal(got, want) {
		t.Fatalf("second run ops %v, want %v", got, want)
	}
	for _, ev := range second {
		if ev.ev != nil && ev.ev.Op == "d" && ev.ev.Before["email"] != "c@x" {
			t.Fatalf("delete without its key in before: %+v", ev.ev.Before)
		}
	}
	if got, want := materialize(evs), e.want(leadScores); !maps.Equal(got, want) {
		t.Fatalf("topic as a sink sees it:\n%v\nwant\n%v", got, want)
	}

	before := len(e.events(topic))
	res = e.mustRun(r, "lead_scores")
	if len(res.Changes) != 0 || res.Run != 2 {
		t.Fatalf("unchanged run: %+v", res)
	}
	if n := len(e.events(topic)); n != before {
		t.Fatalf("unchanged run published %d records", n-before)
	}
	st, err := Statuses(context.Background(), e.cfg, r.kopts)
	if err != nil || len(st) != 1 || st[0].Run != 2 || st[0].Rows != 3 || st[0].Error != "" {
		t.Fatalf("status %+v, %v", st, err)
	}
}

// TestCrashBetweenPublishAndCommit: a run whose changes reached Kafka but whose state was not
// committed is followed by a run that rebuilds the state from the topic: a row inserted by the
// lost run and gone since is deleted, a row changed back is changed back, and what the topic
// says at the end is the result.
func TestCrashBetweenPublishAndCommit(t *testing.T) {
	e := newEnv(t, leadModel())
	seedEvents(e)
	r := e.runner()
	topic := e.cfg.ModelTopic(e.cfg.Models[0])
	e.mustRun(r, "lead_scores")

	e.exec(`INSERT INTO public.events (email, points) VALUES ('ghost@x', 1), ('b@x', 100)`)
	r.beforeCommit = func() error { return errors.New("crash") }
	if _, err := r.Run(context.Background(), "lead_scores"); err == nil {
		t.Fatal("the crashing run succeeded")
	}
	r.beforeCommit = nil

	e.exec(`DELETE FROM public.events WHERE email = 'ghost@x' OR points = 100`) // back to run 1's result
	res := e.mustRun(r, "lead_scores")
	if !res.Rebuilt {
		t.Fatalf("the run after the crash did not rebuild its state: %+v", res)
	}
	evs := e.events(topic)
	if got, want := ops(ofRun(evs, res.Run)), map[string]string{"ghost@x": "d", "b@x": "u"}; !maps.Equal(got, want) {
		t.Fatalf("ops after the crash %v, want %v", got, want)
	}
	if got, want := materialize(evs), e.want(leadScores); !maps.Equal(got, want) {
		t.Fatalf("topic as a sink sees it:\n%v\nwant\n%v", got, want)
	}
	// And the next run is back on the fast path, with nothing to say.
	if res := e.mustRun(r, "lead_scores"); res.Rebuilt || len(res.Changes) != 0 {
		t.Fatalf("run after recovery: %+v", res)
	}
}

// TestLostState: without its state file (a new machine), a run rebuilds the state from the
// topic and publishes only what changed, deletes included.
func TestLostState(t *testing.T) {
	e := newEnv(t, leadModel())
	seedEvents(e)
	r := e.runner()
	topic := e.cfg.ModelTopic(e.cfg.Models[0])
	e.mustRun(r, "lead_scores")
	if err := os.RemoveAll(e.cfg.ModelsDir()); err != nil {
		t.Fatal(err)
	}
	e.exec(`DELETE FROM public.events WHERE email = 'b@x'`)
	res := e.mustRun(r, "lead_scores")
	if !res.Rebuilt || !maps.Equal(res.Changes, map[string]int64{"d": 1}) {
		t.Fatalf("run without state: %+v", res)
	}
	if got := ops(ofRun(e.events(topic), res.Run)); !maps.Equal(got, map[string]string{"b@x": "d"}) {
		t.Fatalf("ops %v", got)
	}
}

// TestFailingQuery: a query that fails, at once or after some rows, publishes nothing, is
// reported by Run and in status, and the next good run goes on from the last committed state.
func TestFailingQuery(t *testing.T) {
	bad := config.Model{Name: "bad", SQL: "SELECT id, 10 / (id - 500) AS q FROM generate_series(1, 1000) id", Key: []string{"id"}}
	broken := config.Model{Name: "broken", SQL: "SELECT nope FROM public.events", Key: []string{"nope"}}
	e := newEnv(t, bad, broken)
	seedEvents(e)
	r := e.runner()
	for _, m := range e.cfg.Models {
		_, err := r.Run(context.Background(), m.Name)
		if err == nil || !IsQueryError(err) || !strings.Contains(err.Error(), "model "+m.Name) {
			t.Fatalf("%s: got %v, want a query error naming the model", m.Name, err)
		}
		if evs := e.events(e.cfg.ModelTopic(m)); len(evs) != 0 {
			t.Fatalf("%s: a failing query published %d records", m.Name, len(evs))
		}
	}
	st, err := Statuses(context.Background(), e.cfg, r.kopts)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Error == "" || s.Run != 0 {
			t.Fatalf("status of a failing model: %+v", s)
		}
	}
}

// TestRefusedKeys: a result with a duplicate or a NULL key is refused, naming the model and the
// key, and publishes nothing.
func TestRefusedKeys(t *testing.T) {
	dup := config.Model{Name: "dup", SQL: "SELECT email, points FROM public.events", Key: []string{"email"}}
	null := config.Model{Name: "nullkey", SQL: "SELECT NULLIF(email, 'b@x') AS email, sum(points) AS s FROM public.events GROUP BY 1", Key: []string{"email"}}
	missing := config.Model{Name: "missing", SQL: "SELECT email FROM public.events", Key: []string{"id"}}
	e := newEnv(t, dup, null, missing)
	seedEvents(e)
	r := e.runner()
	for _, c := range []struct{ model, want string }{
		{"dup", `model dup: duplicate key email="a@x"`},
		{"nullkey", `model nullkey: key column "email" is NULL`},
		{"missing", `model missing: key column "id" is not in the result`},
	} {
		_, err := r.Run(context.Background(), c.model)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: got %v, want %q", c.model, err, c.want)
		}
		m, _ := e.cfg.Model(c.model)
		if evs := e.events(e.cfg.ModelTopic(m)); len(evs) != 0 {
			t.Fatalf("%s: a refused result published %d records", c.model, len(evs))
		}
	}
}

// TestSchemaChange: a column added to a table model's result gives a new schema version, and
// every row is published again with it; a type change too.
func TestSchemaChange(t *testing.T) {
	e := newEnv(t, config.Model{Name: "accounts", Table: "public.accounts", Key: []string{"id"}})
	e.exec(`CREATE TABLE public.accounts (id int PRIMARY KEY, name text)`)
	e.exec(`INSERT INTO public.accounts VALUES (1, 'one'), (2, 'two')`)
	r := e.runner()
	topic := "wh.model.accounts"
	e.mustRun(r, "accounts")
	e.exec(`ALTER TABLE public.accounts ADD COLUMN tier text DEFAULT 'gold'`)
	res := e.mustRun(r, "accounts")
	if res.Changes["u"] != 2 {
		t.Fatalf("after ADD COLUMN: %+v", res)
	}
	evs := e.events(topic)
	first, added := evs[0].ev.Table, evs[len(evs)-1].ev.Table
	if _, ok := added.Column("tier"); !ok || len(first.Columns) != 2 || evs[len(evs)-1].ev.After["tier"] != "gold" {
		t.Fatalf("schema after ADD COLUMN: %+v, %v", added.Columns, evs[len(evs)-1].ev.After)
	}
	e.exec(`ALTER TABLE public.accounts ALTER COLUMN id TYPE bigint`)
	e.mustRun(r, "accounts")
	evs = e.events(topic)
	if c, _ := evs[len(evs)-1].ev.Table.Column("id"); c.PGType != "int8" {
		t.Fatalf("id after the type change: %+v", c)
	}
}

// TestOneRunAtATime: a model locked by another session is not run.
func TestOneRunAtATime(t *testing.T) {
	e := newEnv(t, leadModel())
	seedEvents(e)
	ctx := context.Background()
	conn, err := e.pg.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtextextended('backflow model wh.lead_scores', 0))"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.runner().Run(ctx, "lead_scores"); !errors.Is(err, ErrBusy) {
		t.Fatalf("got %v, want ErrBusy", err)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.ModelsDir(), "lead_scores.state")); !os.IsNotExist(err) {
		t.Fatalf("a skipped run wrote state: %v", err)
	}
}

// TestMillionRows: a model of 1,000,000 rows is published whole on its first run, and a run
// after 1% of its rows changed publishes exactly those, streaming (see bench/model for time and
// memory).
func TestMillionRows(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000,000 rows")
	}
	e := newEnv(t, config.Model{Name: "big", SQL: "SELECT id, 'lead' || id || '@x' AS email, points FROM public.big", Key: []string{"id"}})
	e.exec(`CREATE TABLE public.big (id bigint PRIMARY KEY, points int NOT NULL)`)
	e.exec(`INSERT INTO public.big SELECT g, g % 1000 FROM generate_series(1, 1000000) g`)
	r := e.runner()
	if res := e.mustRun(r, "big"); res.Changes["r"] != 1_000_000 {
		t.Fatalf("first run: %+v", res)
	}
	e.exec(`UPDATE public.big SET points = points + 1 WHERE id % 100 = 0`)
	e.exec(`DELETE FROM public.big WHERE id % 100000 = 1`)
	e.exec(`INSERT INTO public.big VALUES (0, 1), (2000000, 1)`)
	res := e.mustRun(r, "big")
	if want := map[string]int64{"u": 10_000, "d": 10, "c": 2}; !maps.Equal(res.Changes, want) || res.Rows != 999_992 {
		t.Fatalf("second run: %+v, want changes %v", res, want)
	}
}

// TestDamagedOrStaleState: a state file cut short, or one of an older run (a restored backup),
// is noticed by its checksum and rebuilt from the topic: the topic ends equal to the result.
func TestDamagedOrStaleState(t *testing.T) {
	for _, damage := range []string{"truncated", "stale"} {
		t.Run(damage, func(t *testing.T) {
			e := newEnv(t, leadModel())
			seedEvents(e)
			r := e.runner()
			topic := e.cfg.ModelTopic(e.cfg.Models[0])
			path := filepath.Join(e.cfg.ModelsDir(), "lead_scores.state")
			e.mustRun(r, "lead_scores")
			old, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			e.exec(`INSERT INTO public.events (email, points) VALUES ('z@x', 1)`)
			e.mustRun(r, "lead_scores")
			switch damage {
			case "truncated":
				cur, _ := os.ReadFile(path)
				err = os.WriteFile(path, cur[:len(cur)-5], 0o600)
			case "stale":
				err = os.WriteFile(path, old, 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			e.exec(`DELETE FROM public.events WHERE email IN ('z@x', 'a@x')`)
			res := e.mustRun(r, "lead_scores")
			if !res.Rebuilt || !maps.Equal(res.Changes, map[string]int64{"d": 2}) {
				t.Fatalf("run after the damage: %+v", res)
			}
			if got, want := materialize(e.events(topic)), e.want(leadScores); !maps.Equal(got, want) {
				t.Fatalf("topic as a sink sees it:\n%v\nwant\n%v", got, want)
			}
		})
	}
}

// TestManyBuckets: a text-keyed model read into many buckets diffs exactly; a state written
// by an earlier version (version 1, text keys in key order) is converted, not rebuilt from the
// topic, and written back in hash order.
func TestManyBuckets(t *testing.T) {
	e := newEnv(t, leadModel())
	e.exec(`CREATE TABLE public.events (id bigserial PRIMARY KEY, email text NOT NULL, points int NOT NULL)`)
	e.exec(`INSERT INTO public.events (email, points) SELECT 'u' || (g % 700) || '@x', g FROM generate_series(1, 2000) g`)
	r := e.runner()
	r.bucketRows = 50 // 16 buckets
	topic := e.cfg.ModelTopic(e.cfg.Models[0])
	if res := e.mustRun(r, "lead_scores"); res.Changes["r"] != 700 {
		t.Fatalf("first run: %+v", res)
	}
	e.exec(`UPDATE public.events SET points = points + 1 WHERE id % 700 BETWEEN 100 AND 126`)
	e.exec(`DELETE FROM public.events WHERE email IN ('u1@x', 'u2@x', 'u300@x')`)
	e.exec(`INSERT INTO public.events (email, points) VALUES ('new1@x', 1), ('new2@x', 2)`)
	res := e.mustRun(r, "lead_scores")
	if want := map[string]int64{"u": 27, "d": 3, "c": 2}; !maps.Equal(res.Changes, want) {
		t.Fatalf("second run: %+v, want %v", res.Changes, want)
	}
	if got, want := materialize(e.events(topic)), e.want(leadScores); !maps.Equal(got, want) {
		t.Fatalf("topic as a sink sees it differs from the result (%d and %d keys)", len(got), len(want))
	}

	// The state as an earlier version kept it, committed as such.
	path := filepath.Join(e.cfg.ModelsDir(), "lead_scores.state")
	sr, err := openState(path)
	if err != nil {
		t.Fatal(err)
	}
	var entries []entry
	for ; !sr.done; err = sr.next() {
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, entry{key: bytes.Clone(sr.cur.key), hash: sr.cur.hash})
	}
	sr.close()
	writeKeyOrderedState(t, path, sr.enc, entries)
	sum, rows, err := fileChecksum(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := commitRecord{Run: res.Run, Committed: true, Rows: rows, Checksum: sum, At: time.Now().UTC()}
	if err := writeRecord(context.Background(), r.client, r.state, commitKey("lead_scores"), rec); err != nil {
		t.Fatal(err)
	}
	e.exec(`DELETE FROM public.events WHERE email = 'u5@x'`)
	res = e.mustRun(r, "lead_scores")
	if want := map[string]int64{"d": 1}; res.Rebuilt || !maps.Equal(res.Changes, want) {
		t.Fatalf("run on a version 1 state: %+v, want changes %v and no rebuild", res, want)
	}
	if sr, err = openState(path); err != nil || !sr.hashed {
		t.Fatalf("state after the run: hashed %v, %v", sr != nil && sr.hashed, err)
	}
	sr.close()
	if got, want := materialize(e.events(topic)), e.want(leadScores); !maps.Equal(got, want) {
		t.Fatal("topic as a sink sees it differs from the result")
	}
}

// TestGrownTopicShows: partitions added to a model's topic between runs move its keys to other
// partitions. The next run reports it (metrics, log) from the count its last commit kept, even
// when it has nothing to publish; the runs after that, with the new count kept, report nothing.
// (Partitions added while a run publishes are its producer's to see: kafka.TestPartitionsGrew,
// capture's TestGrownTopicShows.)
func TestGrownTopicShows(t *testing.T) {
	e := newEnv(t, leadModel())
	seedEvents(e)
	topic := e.cfg.ModelTopic(e.cfg.Models[0])
	r := e.runner()
	e.mustRun(r, "lead_scores")
	had, err := kafka.TopicPartitions(context.Background(), r.admin, topic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.admin.CreatePartitions(context.Background(), 2, topic); err != nil {
		t.Fatal(err)
	}

	m := observe.NewMetrics()
	if res := e.mustRun(e.runner(WithMetrics(m)), "lead_scores"); len(res.Changes) != 0 {
		t.Fatalf("a run of the same result published %v", res.Changes)
	}
	g := m.GrownTopics()
	if len(g) != 1 || g[0].Topic != topic || g[0].From != int(had) || g[0].To != int(had)+2 || g[0].NotRunning != "model lead_scores" {
		t.Fatalf("growth reported as %+v, want %s from %d to %d while model lead_scores was not running", g, topic, had, had+2)
	}

	m = observe.NewMetrics()
	r = e.runner(WithMetrics(m))
	e.mustRun(r, "lead_scores")
	e.exec(`INSERT INTO public.events (email, points) VALUES ('d@x', 3)`)
	if res := e.mustRun(r, "lead_scores"); res.Changes["c"] != 1 {
		t.Fatalf("run after an insert published %v, want one create", res.Changes)
	}
	if g := m.GrownTopics(); len(g) != 0 {
		t.Fatalf("growth reported again after it was kept: %+v", g)
	}
}

// TestPartitionsKeptWhenUnread: a run that could not read its topic's partitions at its start
// commits the count the last commit kept, so that the next run checks again; one that read them
// keeps what it read when the broker cannot say more at the commit.
func TestPartitionsKeptWhenUnread(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	cl.Close() // every request fails at once
	r := &Runner{admin: kadm.NewClient(cl), log: zaptest.NewLogger(t)}
	last := commitRecord{Run: 4, Committed: true, Partitions: 3}
	for _, tc := range []struct {
		name        string
		parts, want int32
	}{{"not read at the start", 0, 3}, {"read at the start", 5, 5}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.partitionsToKeep(context.Background(), "wh.model.m", tc.parts, last); got != tc.want {
				t.Errorf("kept %d partitions, want %d", got, tc.want)
			}
		})
	}
}
