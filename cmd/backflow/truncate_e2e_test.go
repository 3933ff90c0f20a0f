package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestTruncateReloadsAcrossPartitions reloads a table again and again (BEGIN; TRUNCATE; INSERT
// …; COMMIT) while a writer keeps changing it, on a topic of 6 partitions read by two workers of
// each of three sinks (postgres, mysql, redis) without a version column. Each truncate must take
// effect at its place in every partition: at the end every target equals the table, rows of the
// last reload and of the writer included, rows from before it gone.
func TestTruncateReloadsAcrossPartitions(t *testing.T) {
	ctx := context.Background()
	bin := buildBinary(t)
	src, dst, kf := testenv.NewPostgres(t), testenv.NewPostgres(t), testenv.NewKafka(t)
	must(t, src.Exec(ctx, `CREATE TABLE public.m (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO public.m SELECT g, 'old' || g FROM generate_series(1, 300) g`))
	must(t, dst.Exec(ctx, `CREATE TABLE public.m_copy (id int PRIMARY KEY, v text)`))
	targets, myDSN, redisURL := sqlRedisTargets(t, dst, fmt.Sprintf("trunc%d", time.Now().UnixNano()%1_000_000_000))

	config := writeConfig(t, fmt.Sprintf(`source:
  postgres:
    url: %s
    tables: [public.m]
    status_interval: 200ms
    heartbeat_interval: 1s
kafka:
  brokers: [%s]
  topic_prefix: wh
  topics: {partitions: 6}
  session_timeout: 6s
log: {format: json, level: info}
sinks:
  - name: m-pg
    from: [public.m]
    connector: postgres
    with: {url: "%s", table: public.m_copy}
    key: [id]
    batch: {max_records: 40, max_wait: 5ms}
  - name: m-mysql
    from: [public.m]
    connector: mysql
    with: {dsn: "%s", table: m_copy}
    key: [id]
    batch: {max_records: 40, max_wait: 5ms}
  - name: m-redis
    from: [public.m]
    connector: redis
    with: {url: "%s", key: "%s:{id}"}
    key: [id]
    batch: {max_records: 40, max_wait: 5ms}
`, src.URL("postgres"), strings.Join(kf.Brokers(), ", "), dst.URL("postgres"), myDSN, redisURL, targets.prefix))

	capt := startProcess(t, bin, "capture", "-c", config)
	workers := []*process{startProcess(t, bin, "sink", "-c", config), startProcess(t, bin, "sink", "-c", config)}
	converge := func(what string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			err := targets.equalTo(ctx, sourceState(t, src))
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: targets still differ from the table after 2 minutes: %v\ncapture:\n%s\nworker 1:\n%s\nworker 2:\n%s",
					what, err, capt.tail(), workers[0].tail(), workers[1].tail())
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	converge("initial snapshot")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); writeUntil(t, src, stop) }()
	all := append([]*process{}, workers...)
	for i := range 6 {
		must(t, src.Exec(ctx, fmt.Sprintf(`BEGIN; TRUNCATE public.m;
			INSERT INTO public.m SELECT g, 'reload%d-' || g FROM generate_series(1, %d) g; COMMIT`, i, 300+40*i)))
		time.Sleep(time.Duration(200+rand.IntN(400)) * time.Millisecond)
		switch i {
		case 2: // a worker dies at or near a barrier; its partitions move, its successor joins
			workers[0].kill(t)
			workers[0] = startProcess(t, bin, "sink", "-c", config)
			all = append(all, workers[0])
		case 4: // capture dies: a restart may write a truncate's copies again
			capt.kill(t)
			capt = startProcess(t, bin, "capture", "-c", config)
		}
	}
	close(stop)
	wg.Wait()
	converge("reloads under a concurrent writer")

	// The truncates went through the barriers, with partitions held by both workers.
	applied, holding := 0, 0
	for _, p := range all {
		log := logOf(p)
		applied += strings.Count(log, "applied a truncate every partition reached")
		if strings.Contains(log, "partition reached a truncate") {
			holding++
		}
	}
	if applied == 0 || holding < 2 {
		t.Errorf("truncates applied through barriers: %d, workers that held partitions at one: %d", applied, holding)
	}

	// A replay from earliest into emptied targets orders the truncates the same way.
	for _, w := range workers {
		w.kill(t)
	}
	targets.empty(ctx)
	for _, name := range []string{"m-pg", "m-mysql", "m-redis"} {
		if out, code := runBinary(t, bin, nil, "replay", "-c", config, "--sink", name, "--from", "earliest"); code != 0 {
			t.Fatalf("replay %s: exit %d:\n%s", name, code, out)
		}
	}
	if err := targets.equalTo(ctx, sourceState(t, src)); err != nil {
		t.Errorf("after a replay from earliest: %v", err)
	}
}

// empty removes every row of the three targets.
func (r *rebuildTargets) empty(ctx context.Context) {
	must(r.t, r.dst.Exec(ctx, "TRUNCATE public.m_copy"))
	_, err := r.my.ExecContext(ctx, "DELETE FROM m_copy")
	must(r.t, err)
	keys, err := r.rdb.Keys(ctx, r.prefix+":*").Result()
	must(r.t, err)
	if len(keys) > 0 {
		must(r.t, r.rdb.Del(ctx, keys...).Err())
	}
}

// writeUntil changes public.m in small transactions until stop is closed: updates, inserts of
// new ids and deletes, so that every partition has records around each truncate.
func writeUntil(t *testing.T, src *testenv.Postgres, stop <-chan struct{}) {
	ctx := context.Background()
	conn, err := src.Connect(ctx, "postgres")
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close(ctx)
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		id := 1 + rand.IntN(700)
		var q string
		switch n % 3 {
		case 0:
			q = `INSERT INTO public.m VALUES ($1, 'w' || $2) ON CONFLICT (id) DO UPDATE SET v = excluded.v`
		case 1:
			q = `UPDATE public.m SET v = 'u' || $2 WHERE id = $1`
		default:
			q = `DELETE FROM public.m WHERE id = $1 AND $2 <> ''`
		}
		if _, err := conn.Exec(ctx, q, id, fmt.Sprint(n)); err != nil {
			t.Errorf("writer: %v", err)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}
