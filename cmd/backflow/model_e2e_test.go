package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/observe"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestModelIntoTarget runs `backflow run` with a model refreshed on a captured table and a
// postgres sink reading the model: the target follows the query's result (inserts, updates,
// deletes) as the table changes; `backflow model run` runs it on demand beside the running
// process; `backflow status` shows each model's last run, and a model whose query fails makes
// the pipeline unhealthy, naming it.
func TestModelIntoTarget(t *testing.T) {
	ctx := context.Background()
	src, dst, kf := testenv.NewPostgres(t), testenv.NewPostgres(t), testenv.NewKafka(t)
	must(t, src.Exec(ctx, `CREATE TABLE public.w (id bigserial PRIMARY KEY, email text NOT NULL, points int NOT NULL)`))
	must(t, src.Exec(ctx, `INSERT INTO public.w (email, points) VALUES ('a@x', 1), ('a@x', 2), ('b@x', 5)`))
	must(t, dst.Exec(ctx, `CREATE TABLE public.scores (email text PRIMARY KEY, score bigint NOT NULL)`))
	config := writeConfig(t, pipelineYAML(src.URL("postgres"), kf.Brokers(), fmt.Sprintf(`models_state_dir: %s
models:
  - name: scores
    sql: SELECT email, sum(points) AS score FROM public.w GROUP BY email
    key: [email]
    refresh_on: [public.w]
    debounce: 200ms
  - name: broken
    sql: SELECT nope FROM public.w
    key: [nope]
    every: 1h
sinks:
  - name: crm
    from: [model.scores]
    connector: postgres
    with: {url: "%s", table: public.scores}
    key: [email]
    map: {email: after.email, score: after.score}
    batch: {max_records: 100, max_wait: 20ms}
`, filepath.Join(t.TempDir(), "models"), dst.URL("postgres"))))
	bin := buildBinary(t)
	p := startProcess(t, bin, "run", "-c", config)

	targetIs := func(what string, want map[string]int64) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			got := map[string]int64{}
			conn, err := dst.Connect(ctx, "postgres")
			if err == nil {
				rows, qerr := conn.Query(ctx, `SELECT email, score FROM public.scores`)
				for qerr == nil && rows.Next() {
					var e string
					var s int64
					_ = rows.Scan(&e, &s)
					got[e] = s
				}
				conn.Close(ctx)
			}
			if maps.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: target %v, want %v\n%s", what, got, want, p.tail())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	targetIs("first run", map[string]int64{"a@x": 3, "b@x": 5})
	must(t, src.Exec(ctx, `INSERT INTO public.w (email, points) VALUES ('c@x', 7), ('a@x', 10)`))
	targetIs("after inserts", map[string]int64{"a@x": 13, "b@x": 5, "c@x": 7})
	must(t, src.Exec(ctx, `DELETE FROM public.w WHERE email = 'b@x'`))
	targetIs("after a delete", map[string]int64{"a@x": 13, "c@x": 7})

	out, code := runBinary(t, bin, nil, "model", "run", "scores", "-c", config)
	if code != 0 || !strings.Contains(out, "model scores: run ") {
		t.Fatalf("model run: exit %d\n%s", code, out)
	}
	out, code = runBinary(t, bin, nil, "model", "run", "nope", "-c", config)
	if code != 2 || !strings.Contains(out, `no model named "nope"`) {
		t.Fatalf("model run of an unknown model: exit %d\n%s", code, out)
	}

	out, code = runBinary(t, bin, nil, "status", "--json", "-c", config)
	var st observe.Status
	if err := json.NewDecoder(strings.NewReader(out[strings.Index(out, "{"):])).Decode(&st); err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if code != 1 || len(st.Models) != 2 {
		t.Fatalf("status: exit %d, models %+v\n%s", code, st.Models, out)
	}
	scores, broken := st.Models[0], st.Models[1]
	if scores.Run < 3 || scores.Rows != 2 || scores.Error != "" || scores.Topic != "wh.model.scores" {
		t.Fatalf("status of scores: %+v", scores)
	}
	if broken.Run != 0 || !strings.Contains(broken.Error, "model broken: query") {
		t.Fatalf("status of broken: %+v", broken)
	}
	if !strings.Contains(strings.Join(st.Problems, "\n"), "model broken: last run failed") {
		t.Fatalf("problems: %v", st.Problems)
	}
}

// TestModelRunKilledWhilePublishing kills `backflow model run` with SIGKILL while it publishes
// its first run, deletes rows it may have published, and runs it again: the second run rebuilds
// the state from the topic, and the topic then says exactly what the query returns, deleted
// rows included.
func TestModelRunKilledWhilePublishing(t *testing.T) {
	ctx := context.Background()
	src, kf := testenv.NewPostgres(t), testenv.NewKafka(t)
	const rows = 200_000
	must(t, src.Exec(ctx, `CREATE TABLE public.w (id bigint PRIMARY KEY, v int NOT NULL)`))
	must(t, src.Exec(ctx, `INSERT INTO public.w SELECT g, g FROM generate_series(1, $1::int) g`, rows))
	config := writeConfig(t, pipelineYAML(src.URL("postgres"), kf.Brokers(), fmt.Sprintf(`models_state_dir: %s
models:
  - {name: big, sql: "SELECT id, v FROM public.w", key: [id]}
`, filepath.Join(t.TempDir(), "models"))))
	bin := buildBinary(t)
	p := startProcess(t, bin, "model", "run", "big", "-c", config)
	deadline := time.Now().Add(2 * time.Minute)
	for liveKeys(t, kf.Brokers(), "wh.model.big") < 1000 {
		if time.Now().After(deadline) {
			t.Fatalf("the first run published nothing\n%s", p.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.kill(t)
	must(t, src.Exec(ctx, `DELETE FROM public.w WHERE id <= 500`))
	out, code := runBinary(t, bin, nil, "model", "run", "big", "-c", config)
	if code != 0 || !strings.Contains(out, "state rebuilt from the topic") {
		t.Fatalf("run after the kill: exit %d\n%s", code, out)
	}
	if n := liveKeys(t, kf.Brokers(), "wh.model.big"); n != rows-500 {
		t.Fatalf("the topic holds %d live keys, want %d", n, rows-500)
	}
}

// liveKeys counts the keys of a topic whose last record is not a tombstone.
func liveKeys(t *testing.T, brokers []string, topic string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	recs, err := testenv.ConsumeAll(ctx, brokers, topic)
	if err != nil && strings.Contains(err.Error(), "UNKNOWN_TOPIC") {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{}
	for _, r := range recs {
		if r.Value == nil {
			delete(live, string(r.Key))
		} else {
			live[string(r.Key)] = true
		}
	}
	return len(live)
}
