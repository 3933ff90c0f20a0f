// Command model benchmarks a run of a warehouse model: `backflow model run` diffing a
// 1,000,000-row result in which 1% of the rows changed, against `COPY (query) TO STDOUT` of the
// same query, timed in the same run on the same database (see the README, "Models").
//
// One run: start a throwaway PostgreSQL and a kfake broker in this process, create
// public.leads with -rows rows, run the model once (its first run publishes every row, op r),
// update -changed rows, time COPY (query) TO STDOUT into nothing, then time the second run of the
// backflow binary as a child process (from exec to exit: connection, state checks, query,
// diff, publishing and commit). The topic must then hold exactly rows + changed events. The last
// line printed (to stdout) is
//
//	RESULT model key=… rows=… changed=… diff_s=… copy_s=… ratio=… rss_mb=…
//
// with key the model's key (-key id, an integer the query reads in its index's order, or -key
// email, text, read unordered and partitioned by its hash), ratio = diff_s / copy_s and rss_mb the diffing run's peak RSS; first_s and first_rss_mb
// are the first run's, rebuild_s and rebuild_rss_mb those of a last run without its state
// directory (it rebuilds the state from the topic). With -rounds N (default 3) other rows change and both are timed N times,
// alternately, and the fastest of each counts. Progress goes to stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/bench/internal/child"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// query is the model: a table of leads with a score computed in the query.
const query = `SELECT id, email, segment, points, points * 2 + length(email) AS score, updated_at FROM public.leads`

type options struct {
	rows, changed int
	rounds        int
	key           string
	keep          bool
	bin           string
	timeout       time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.rows, "rows", 1_000_000, "rows in the model's result")
	flag.IntVar(&o.changed, "changed", 0, "rows changed before the second run (default 1% of -rows)")
	flag.IntVar(&o.rounds, "rounds", 3, "change -changed other rows, time COPY and a run this many times, and report the fastest of each "+
		"(for a busy machine)")
	flag.StringVar(&o.key, "key", "id", "the model's key: id (an integer, read in its index's order) or email (text, read unordered)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (binary, pipeline file, logs)")
	flag.StringVar(&o.bin, "bin", "", "run this backflow binary instead of building ./cmd/backflow")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
	flag.Parse()
	if o.changed == 0 {
		o.changed = o.rows / 100
	}
	if o.key != "id" && o.key != "email" {
		fmt.Fprintln(os.Stderr, "bench: -key must be id or email")
		os.Exit(2)
	}
	if o.rows < 100 || o.changed < 1 || o.changed > o.rows || o.rounds < 1 || o.rounds > o.rows/o.changed {
		fmt.Fprintln(os.Stderr, "bench: -rows must be at least 100, -changed between 1 and -rows, -rounds between 1 and -rows/-changed")
		os.Exit(2)
	}
	child.Main(o.timeout, func(ctx context.Context) error { return run(ctx, o) })
}

func run(ctx context.Context, o options) error {
	work, bin, cleanup, err := child.Setup(ctx, "backflow-bench-model-", o.keep, o.bin)
	if err != nil {
		return err
	}
	defer cleanup()
	child.Progress("starting PostgreSQL and the broker")
	pg, err := testenv.StartPostgres(ctx, testenv.PGAsyncCommit(), testenv.PGConf("autovacuum", "off"))
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	defer pg.Close()
	kf, err := testenv.StartKafka()
	if err != nil {
		return fmt.Errorf("start kafka: %w", err)
	}
	defer kf.Close()
	if err := prefill(ctx, pg, o.rows); err != nil {
		return err
	}
	cfgPath := filepath.Join(work, "pipeline.yaml")
	if err := writePipeline(cfgPath, pg.URL("postgres"), kf.Brokers(), filepath.Join(work, "models"), o.key); err != nil {
		return err
	}
	child.Progress("first run: every row")
	first, err := modelRun(ctx, bin, cfgPath, filepath.Join(work, "first.log"))
	if err != nil {
		return err
	}
	child.Progress("first run took %s, peak RSS %d MB", first.took.Round(time.Millisecond), first.rss>>20)
	every := o.rows / o.changed
	changed := o.rows / every
	var copyTook time.Duration
	var second measured
	for round := range o.rounds {
		c, m, err := diffRound(ctx, pg, bin, cfgPath, filepath.Join(work, fmt.Sprintf("round%d.log", round+1)), every, round)
		if err != nil {
			return err
		}
		if round == 0 || c < copyTook {
			copyTook = c
		}
		if round == 0 || m.took < second.took {
			second = m
		}
	}
	// A lost state directory (a new machine): the run rebuilds the state from the topic first.
	if err := os.RemoveAll(filepath.Join(work, "models")); err != nil {
		return err
	}
	rebuilt, err := modelRun(ctx, bin, cfgPath, filepath.Join(work, "rebuild.log"))
	if err != nil {
		return err
	}
	records, err := topicRecords(ctx, kf.Brokers(), "wh.model.leads")
	if err != nil {
		return err
	}
	if want := int64(o.rows + changed*o.rounds); records != want {
		return fmt.Errorf("the topic holds %d records, want %d (rows + changed per round)", records, want)
	}
	fmt.Printf("RESULT model key=%s rows=%d changed=%d diff_s=%.3f copy_s=%.3f ratio=%.2f rss_mb=%d first_s=%.3f first_rss_mb=%d rebuild_s=%.3f rebuild_rss_mb=%d\n",
		o.key, o.rows, changed, second.took.Seconds(), copyTook.Seconds(), second.took.Seconds()/copyTook.Seconds(), second.rss>>20,
		first.took.Seconds(), first.rss>>20, rebuilt.took.Seconds(), rebuilt.rss>>20)
	return nil
}

// diffRound changes the rows whose id is round modulo every, times COPY of the query, then
// times a run of the model.
func diffRound(ctx context.Context, pg *testenv.Postgres, bin, cfgPath, logPath string, every, round int) (time.Duration, measured, error) {
	if err := pg.Exec(ctx, `UPDATE public.leads SET points = points + 1, updated_at = now() WHERE id % $1 = $2`, every, round); err != nil {
		return 0, measured{}, fmt.Errorf("change rows: %w", err)
	}
	if err := pg.Exec(ctx, `VACUUM ANALYZE public.leads`); err != nil {
		return 0, measured{}, fmt.Errorf("vacuum: %w", err)
	}
	copyTook, err := timeCopy(ctx, pg)
	if err != nil {
		return 0, measured{}, err
	}
	m, err := modelRun(ctx, bin, cfgPath, logPath)
	if err != nil {
		return 0, measured{}, err
	}
	child.Progress("round %d: COPY (query) TO STDOUT %s, model run %s, peak RSS %d MB", round+1, copyTook.Round(time.Millisecond),
		m.took.Round(time.Millisecond), m.rss>>20)
	return copyTook, m, nil
}

func prefill(ctx context.Context, pg *testenv.Postgres, rows int) error {
	child.Progress("creating public.leads with %d rows", rows)
	if err := pg.Exec(ctx, `CREATE TABLE public.leads (id bigint PRIMARY KEY, email text NOT NULL, segment text NOT NULL,
		points int NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	if err := pg.Exec(ctx, `INSERT INTO public.leads (id, email, segment, points)
		SELECT g, 'lead' || g || '@example.com', (ARRAY['smb', 'mid', 'ent'])[1 + g % 3], (g % 1000)::int
		FROM generate_series(1, $1::bigint) g`, rows); err != nil {
		return fmt.Errorf("fill table: %w", err)
	}
	return pg.Exec(ctx, `VACUUM ANALYZE public.leads`)
}

func writePipeline(path, url string, brokers []string, stateDir, key string) error {
	yaml := fmt.Sprintf(`source:
  postgres:
    url: %q
    tables: [public.leads]
kafka:
  brokers: [%s]
  topic_prefix: wh
  topics: {partitions: 3, replication_factor: 1}
models_state_dir: %q
log: {level: warn}
models:
  - name: leads
    sql: %q
    key: [%s]
`, url, strings.Join(brokers, ", "), stateDir, query, key)
	return os.WriteFile(path, []byte(yaml), 0o600)
}

type measured struct {
	took time.Duration
	rss  int64
}

// modelRun runs `backflow model run leads` to its end.
func modelRun(ctx context.Context, bin, cfg, logPath string) (measured, error) {
	p, err := child.Start("backflow model run", exec.CommandContext(ctx, bin, "model", "run", "leads", "-c", cfg), logPath)
	if err != nil {
		return measured{}, err
	}
	<-p.Exited()
	if p.Err() != nil {
		return measured{}, fmt.Errorf("backflow model run: %v\n%s", p.Err(), p.LogTail())
	}
	child.Progress("%s", strings.TrimSpace(p.LogTail()))
	return measured{took: p.Ended().Sub(p.Started), rss: p.MaxRSS()}, nil
}

// timeCopy times COPY (query) TO STDOUT, the rows going nowhere: the reference a model run is
// measured against.
func timeCopy(ctx context.Context, pg *testenv.Postgres) (time.Duration, error) {
	conn, err := pg.Connect(ctx, "postgres")
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	start := time.Now()
	if _, err := conn.PgConn().CopyTo(ctx, io.Discard, "COPY ("+query+") TO STDOUT"); err != nil {
		return 0, fmt.Errorf("copy: %w", err)
	}
	return time.Since(start), nil
}

// topicRecords counts the records of a topic (there are no deletes, so no tombstones).
func topicRecords(ctx context.Context, brokers []string, topic string) (int64, error) {
	cl, err := kgo.NewClient(append(child.PollOpts(), kgo.SeedBrokers(brokers...))...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	return child.TopicRecords(ctx, kadm.NewClient(cl), topic)
}
