package main

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"github.com/backflow-dev/backflow/pkg/testenv"
)

// rebuildTargets are the three targets of TestTargetsFollowWarehouseRebuilds, read back as
// id -> v, and with filtered the fourth: public.m_kept, which holds only the rows that pass
// keptFilter.
type rebuildTargets struct {
	t        *testing.T
	dst      *testenv.Postgres
	my       *sql.DB
	rdb      *redis.Client
	prefix   string // the Redis keys' prefix
	filtered bool
}

// keptFilter is the filter of the sink into public.m_kept, and passes the rows it keeps.
const keptFilter = `not (after.v startsWith "rebuilt")`

func passesKeptFilter(v string) bool { return !strings.HasPrefix(v, "rebuilt") }

// keptTarget names public.m_kept among the states.
const keptTarget = "postgres, filtered"

func (r *rebuildTargets) states(ctx context.Context) (map[string]map[string]string, error) {
	out := map[string]map[string]string{"postgres": {}, "mysql": {}, "redis": {}}
	pgRows := rows(r.t, r.dst, "SELECT id::text || '=' || coalesce(v, 'NULL') FROM public.m_copy")
	for _, s := range pgRows {
		id, v, _ := strings.Cut(s, "=")
		out["postgres"][id] = v
	}
	if r.filtered {
		out[keptTarget] = map[string]string{}
		for _, s := range rows(r.t, r.dst, "SELECT id::text || '=' || coalesce(v, 'NULL') FROM public.m_kept") {
			id, v, _ := strings.Cut(s, "=")
			out[keptTarget][id] = v
		}
	}
	rs, err := r.my.QueryContext(ctx, "SELECT id, coalesce(v, 'NULL') FROM m_copy")
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		var id, v string
		if err := rs.Scan(&id, &v); err != nil {
			return nil, err
		}
		out["mysql"][id] = v
	}
	keys, err := r.rdb.Keys(ctx, r.prefix+":*").Result()
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	for _, k := range keys {
		v, err := r.rdb.HGet(ctx, k, "v").Result()
		if err != nil {
			return nil, fmt.Errorf("redis %s: %w", k, err)
		}
		out["redis"][strings.TrimPrefix(k, r.prefix+":")] = v
	}
	return out, nil
}

// equalTo reports the first differences between each target and want (the rows of want that
// pass keptFilter for the filtered target).
func (r *rebuildTargets) equalTo(ctx context.Context, want map[string]string) error {
	states, err := r.states(ctx)
	if err != nil {
		return err
	}
	var diffs []string
	for name, got := range states {
		want := want
		if name == keptTarget {
			want = maps.Clone(want)
			maps.DeleteFunc(want, func(_, v string) bool { return !passesKeptFilter(v) })
		}
		for id, v := range want {
			if got[id] != v {
				diffs = append(diffs, fmt.Sprintf("%s: id %s is %q, table has %q", name, id, got[id], v))
			}
		}
		for id := range got {
			if _, ok := want[id]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s: id %s is not in the table", name, id))
			}
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	sort.Strings(diffs)
	return fmt.Errorf("%d differences, e.g. %s", len(diffs), strings.Join(diffs[:min(6, len(diffs))], "; "))
}

func sourceState(t *testing.T, src *testenv.Postgres) map[string]string {
	out := map[string]string{}
	for _, s := range rows(t, src, "SELECT id::text || '=' || v FROM public.m") {
		id, v, _ := strings.Cut(s, "=")
		out[id] = v
	}
	return out
}

// TestTargetsFollowWarehouseRebuilds runs capture and three sinks (postgres, mysql, redis) on one
// table, then does to the table what warehouses do: a dbt-style rebuild by rename swap, and a lost
// replication slot while the pipeline is down, with rows inserted, updated and deleted meanwhile.
// Each time every target ends equal to the table, rows that are gone included. A fourth sink
// filters rows (keptFilter): the rows the rebuild changes so that they no longer pass leave its
// target, as the re-snapshot reads them.
func TestTargetsFollowWarehouseRebuilds(t *testing.T) {
	ctx := context.Background()
	bin := buildBinary(t)
	src, dst, kf := testenv.NewPostgres(t), testenv.NewPostgres(t), testenv.NewKafka(t)
	must(t, src.Exec(ctx, `CREATE TABLE public.m (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO public.m SELECT g, 'old' || g FROM generate_series(1, 300) g`))
	must(t, dst.Exec(ctx, `CREATE TABLE public.m_copy (id int PRIMARY KEY, v text);
		CREATE TABLE public.m_kept (id int PRIMARY KEY, v text)`))

	tag := fmt.Sprintf("rebuild%d", time.Now().UnixNano()%1_000_000_000)
	targets, myDSN, redisURL := sqlRedisTargets(t, dst, tag)
	targets.filtered = true

	config := writeConfig(t, fmt.Sprintf(`source:
  postgres:
    url: %s
    tables: [public.m]
    status_interval: 200ms
    heartbeat_interval: 1s
kafka:
  brokers: [%s]
  topic_prefix: wh
  topics: {partitions: 4}
  session_timeout: 6s
log: {format: json, level: info}
sinks:
  - name: m-pg
    from: [public.m]
    connector: postgres
    with: {url: "%s", table: public.m_copy}
    key: [id]
    batch: {max_wait: 20ms}
  - name: m-mysql
    from: [public.m]
    connector: mysql
    with: {dsn: "%s", table: m_copy}
    key: [id]
    batch: {max_wait: 20ms}
  - name: m-redis
    from: [public.m]
    connector: redis
    with: {url: "%s", key: "%s:{id}"}
    key: [id]
    batch: {max_wait: 20ms}
  - name: m-kept
    from: [public.m]
    connector: postgres
    with: {url: "%s", table: public.m_kept}
    key: [id]
    filter: '%s'
    batch: {max_wait: 20ms}
`, src.URL("postgres"), strings.Join(kf.Brokers(), ", "), dst.URL("postgres"), myDSN, redisURL, tag, dst.URL("postgres"), keptFilter))

	converge := func(p *process, what string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			err := targets.equalTo(ctx, sourceState(t, src))
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: targets still differ from the table after 2 minutes: %v\nlog:\n%s", what, err, p.tail())
			}
			time.Sleep(300 * time.Millisecond)
		}
	}

	p := startProcess(t, bin, "run", "-c", config)
	converge(p, "initial snapshot")

	must(t, src.Exec(ctx, `BEGIN;
		CREATE TABLE public.m__dbt_tmp AS
			SELECT id, CASE WHEN id % 4 = 0 THEN 'rebuilt' || id ELSE v END AS v FROM public.m WHERE id > 50
			UNION ALL SELECT g, 'added' || g FROM generate_series(301, 340) g;
		ALTER TABLE public.m__dbt_tmp ALTER COLUMN v SET NOT NULL, ADD PRIMARY KEY (id);
		ALTER TABLE public.m RENAME TO m__dbt_backup;
		ALTER TABLE public.m__dbt_tmp RENAME TO m;
		DROP TABLE public.m__dbt_backup;
		COMMIT`))
	converge(p, "dbt-style swap")
	must(t, src.Exec(ctx, `UPDATE public.m SET v = 'after swap' WHERE id = 60; DELETE FROM public.m WHERE id = 61`))
	converge(p, "changes after the swap")

	// The slot is lost while the pipeline is down; the default on_slot_loss resyncs.
	p.kill(t)
	deadline := time.Now().Add(30 * time.Second)
	for src.Exec(ctx, `SELECT pg_drop_replication_slot('backflow')`) != nil {
		if time.Now().After(deadline) {
			t.Fatal("could not drop the replication slot")
		}
		time.Sleep(200 * time.Millisecond)
	}
	must(t, src.Exec(ctx, `DELETE FROM public.m WHERE id BETWEEN 70 AND 89;
		UPDATE public.m SET v = 'gap' WHERE id BETWEEN 90 AND 99;
		INSERT INTO public.m SELECT g, 'gap' || g FROM generate_series(400, 420) g`))
	p = startProcess(t, bin, "run", "-c", config)
	converge(p, "resync after the slot was lost")
	if !strings.Contains(logOf(p), "resyncing") {
		t.Errorf("the log does not say the slot was lost and resynced:\n%s", p.tail())
	}

	// Deletes the stream never carried (a publication that leaves them out) are repaired on
	// demand by a full refresh, which sends them itself. (Once the publication publishes
	// deletes again, capture refreshes every table in full on its own too: the command runs
	// before, or it would race that refresh for the same keys.)
	must(t, src.Exec(ctx, `ALTER PUBLICATION backflow SET (publish = 'insert, update, truncate')`))
	must(t, src.Exec(ctx, `DELETE FROM public.m WHERE id BETWEEN 100 AND 104`))
	out, code := runBinary(t, bin, nil, "snapshot", "-c", config, "--table", "public.m", "--full-refresh")
	if code != 0 || !strings.Contains(out, "5 keys the table no longer has deleted") {
		t.Fatalf("snapshot --full-refresh: exit %d:\n%s", code, out)
	}
	converge(p, "full refresh on demand")
	must(t, src.Exec(ctx, `ALTER PUBLICATION backflow SET (publish = 'insert, update, delete, truncate')`))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func logOf(p *process) string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}
