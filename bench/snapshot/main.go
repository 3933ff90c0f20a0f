// Command snapshot benchmarks the initial snapshot of `backflow capture` against PostgreSQL's own
// COPY of the same table (see the README, "Benchmarks").
//
// One run: start a throwaway PostgreSQL, load -rows rows into public.bench, time
// `COPY (SELECT * FROM public.bench) TO STDOUT` read through pgconn and discarded (the fastest
// of -rounds, after a warm-up), then, for each -parallelism value, start the backflow binary as a
// child process with a new slot and a fresh kfake broker in this process, timed from the start
// until the topic holds a record per row (the fastest of -rounds). It prints, per parallelism
// (to stdout),
//
//	RESULT snapshot rows=… rows_per_s=… copy_rows_per_s=… ratio=… parallelism=… seconds=… cpu_s=… broker_cpu_s=… rss_mb=… produce_ratio=…
//
// where ratio is the snapshot's rate over COPY's; cpu_s is capture's CPU time, broker_cpu_s
// this process's (mostly kfake) meanwhile and rss_mb capture's peak RSS. -row-bytes N gives every
// row a column of about N bytes stored out of line (wide rows, row_bytes=N); -max-in-flight N
// sets capture's max_in_flight (max_in_flight=N). Unless -produce=false it then reads the last
// snapshot's records back and times producing them alone, with capture's producer options and
// in-flight bound, into a fresh broker (the fastest of -rounds):
//
//	RESULT snapshot_produce rows=… rows_per_s=… seconds=… copy_ratio=…
//
// what the snapshot would reach if reading and encoding rows cost nothing; produce_ratio above
// is the snapshot's rate over it. Unless -read=false it also times reading the table alone over
// one connection, by the page chunks capture reads (in its result formats, and in text only), by
// key chunks and by COPY, and reports the CPU time the server spent on each (read.go):
//
//	RESULT snapshot_read rows=… pages_cpu_s=… pages_text_cpu_s=… keys_cpu_s=… copy_cpu_s=… pages_ratio=… keys_ratio=…
//
// Progress goes to stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/bench/internal/child"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

const (
	table       = "public.bench"
	topicPrefix = "backflow"
	topic       = topicPrefix + "." + table
)

type options struct {
	rows        int
	parallelism []int // 0: the configured default
	rounds      int
	keep        bool
	produce     bool
	read        bool
	shuffled    bool
	rowBytes    int
	maxInFlight int // 0: the configured default
	bin         string
	perf        string
	timeout     time.Duration
}

func main() {
	var o options
	var par string
	flag.IntVar(&o.rows, "rows", 2_000_000, "rows in the table")
	flag.StringVar(&par, "parallelism", "1,default", "comma-separated source.postgres.snapshot_parallelism values to run, "+
		"\"default\" for the default (min(CPUs, 4))")
	flag.IntVar(&o.rounds, "rounds", 2, "time COPY and each snapshot this many times (COPY after a warm-up), alternately, "+
		"and keep the fastest of each (for a busy machine)")
	flag.BoolVar(&o.produce, "produce", true, "also time producing the last snapshot's records alone")
	flag.IntVar(&o.rowBytes, "row-bytes", 0, "give every row a text column of about this many bytes, stored out of line (wide rows; "+
		"0: none)")
	flag.BoolVar(&o.shuffled, "shuffled", false, "write the table's rows in random key order rather than in key order")
	flag.BoolVar(&o.read, "read", true, "also time reading the table alone, by capture's page chunks and by key chunks")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (binary, pipeline files, capture logs) and the PostgreSQL data directory")
	flag.StringVar(&o.bin, "bin", "", "run this backflow binary instead of building ./cmd/backflow")
	flag.IntVar(&o.maxInFlight, "max-in-flight", 0, "source.postgres.max_in_flight of capture (0: the default)")
	flag.StringVar(&o.perf, "perf", "", "record capture with `perf record -g` into this file (the last run)")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
	flag.Parse()
	var err error
	if o.parallelism, err = parseParallelism(par); err != nil || o.rows < 1 || o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "bench: -rows and -rounds must be at least 1, -parallelism a list of numbers or \"default\"", err)
		os.Exit(2)
	}
	child.Main(o.timeout, func(ctx context.Context) error { return run(ctx, o) })
}

func parseParallelism(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "default" {
			out = append(out, 0)
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("parallelism %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context, o options) error {
	work, bin, cleanup, err := child.Setup(ctx, "backflow-bench-snapshot-", o.keep, o.bin)
	if err != nil {
		return err
	}
	defer cleanup()
	pgOpts := []testenv.PGOpt{testenv.PGAsyncCommit(), testenv.PGConf("max_wal_size", "8GB"), testenv.PGConf("autovacuum", "off")}
	if o.keep {
		pgOpts = append(pgOpts, testenv.PGDir(filepath.Join(work, "postgres")))
	}
	child.Progress("starting PostgreSQL")
	pg, err := testenv.StartPostgres(ctx, pgOpts...)
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	defer pg.Close()
	conn, err := pg.Connect(ctx, "postgres")
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := load(ctx, conn, o.rows, o.shuffled, o.rowBytes); err != nil {
		return err
	}
	copyTime, err := timeCopy(ctx, conn, o.rounds)
	if err != nil {
		return err
	}
	copyRate := float64(o.rows) / copyTime.Seconds()
	child.Progress("COPY: %s, %.0f rows/s", copyTime.Round(time.Millisecond), copyRate)
	if o.read {
		if err := timeReads(ctx, conn, o.rows, o.rounds); err != nil {
			return err
		}
	}
	best := make([]result, len(o.parallelism))
	var recs []*kgo.Record
	for round := 1; round <= o.rounds; round++ {
		for i, p := range o.parallelism {
			var perf string
			if o.perf != "" && round == o.rounds && i == len(o.parallelism)-1 {
				perf = o.perf
			}
			last := round == o.rounds && i == len(o.parallelism)-1
			cc := captureCfg{parallelism: p, maxInFlight: o.maxInFlight}
			s, err := snapshot(ctx, pg, conn, bin, work, fmt.Sprintf("snap%d_%d", round, i+1), cc, o.rows, perf, o.produce && last)
			if err != nil {
				return err
			}
			if s.recs != nil {
				recs = s.recs
				s.recs = nil
			}
			peak := max(best[i].rss, s.rss) // the highest of the rounds
			if best[i].elapsed == 0 || s.elapsed < best[i].elapsed {
				best[i] = s
			}
			best[i].rss = peak
		}
	}
	var produceRate float64
	if recs != nil {
		var fastest time.Duration
		for range o.rounds {
			d, err := produceOnly(ctx, recs)
			if err != nil {
				return err
			}
			if fastest == 0 || d < fastest {
				fastest = d
			}
		}
		produceRate = float64(len(recs)) / fastest.Seconds()
		child.Progress("producing the records alone: %s, %.0f rows/s", fastest.Round(time.Millisecond), produceRate)
		fmt.Printf("RESULT snapshot_produce rows=%d rows_per_s=%.0f seconds=%.2f copy_ratio=%.3f\n",
			len(recs), produceRate, fastest.Seconds(), produceRate/copyRate)
	}
	for i, p := range o.parallelism {
		s := best[i]
		if p == 0 {
			p = config.DefaultSnapshotParallelism()
		}
		rate := float64(o.rows) / s.elapsed.Seconds()
		line := fmt.Sprintf("RESULT snapshot rows=%d rows_per_s=%.0f copy_rows_per_s=%.0f ratio=%.3f parallelism=%d seconds=%.2f copy_seconds=%.2f cpu_s=%.2f broker_cpu_s=%.2f rss_mb=%.1f",
			o.rows, rate, copyRate, rate/copyRate, p, s.elapsed.Seconds(), copyTime.Seconds(), s.cpu.Seconds(), s.broker.Seconds(),
			float64(s.rss)/(1<<20))
		if o.rowBytes > 0 {
			line += fmt.Sprintf(" row_bytes=%d", o.rowBytes)
		}
		if o.maxInFlight > 0 {
			line += fmt.Sprintf(" max_in_flight=%d", o.maxInFlight)
		}
		if produceRate > 0 {
			line += fmt.Sprintf(" produce_ratio=%.3f", rate/produceRate)
		}
		fmt.Println(line)
	}
	return nil
}

// load creates and fills the table, then vacuums it so that neither reader pays for hint bits.
// shuffled writes the rows in random key order, as a table loaded by something other than its key
// is, rather than in key order; rowBytes > 0 adds a column doc of about that many hex digits
// (which compress little) to every row.
func load(ctx context.Context, conn *pgx.Conn, rows int, shuffled bool, rowBytes int) error {
	child.Progress("loading %d rows into %s", rows, table)
	t0 := time.Now()
	_, err := conn.Exec(ctx, `CREATE TABLE public.bench (
		id bigint PRIMARY KEY, sku text NOT NULL, qty int NOT NULL, price numeric(10,2) NOT NULL,
		updated_at timestamptz NOT NULL DEFAULT now())`)
	if err != nil {
		return fmt.Errorf("create %s: %w", table, err)
	}
	_, err = conn.Exec(ctx, `INSERT INTO public.bench (id, sku, qty, price)
		SELECT g, 'SKU-' || lpad(g::text, 8, '0'), (g % 500)::int, (g % 10000) / 100.0 + 0.99
		FROM generate_series(1, $1::bigint) g ORDER BY CASE WHEN $2 THEN random() ELSE g END`, rows, shuffled)
	if err != nil {
		return fmt.Errorf("load %s: %w", table, err)
	}
	if rowBytes > 0 {
		_, err := conn.Exec(ctx, `ALTER TABLE public.bench ADD COLUMN doc text;
			ALTER TABLE public.bench ALTER COLUMN doc SET STORAGE EXTERNAL`)
		if err == nil {
			_, err = conn.Exec(ctx, `UPDATE public.bench SET doc = repeat(md5(id::text), $1)`, max(1, rowBytes/32))
		}
		if err != nil {
			return fmt.Errorf("wide rows in %s: %w", table, err)
		}
	}
	if _, err := conn.Exec(ctx, "VACUUM FULL ANALYZE public.bench"); err != nil {
		return fmt.Errorf("vacuum %s: %w", table, err)
	}
	child.Progress("loaded in %s", time.Since(t0).Round(time.Millisecond))
	return nil
}

// timeCopy returns the fastest of rounds COPYs of the table to a discarded stream, after one
// that warms the cache.
func timeCopy(ctx context.Context, conn *pgx.Conn, rounds int) (time.Duration, error) {
	var best time.Duration
	for i := 0; i <= rounds; i++ {
		t0 := time.Now()
		if _, err := conn.PgConn().CopyTo(ctx, io.Discard, "COPY (SELECT * FROM public.bench) TO STDOUT"); err != nil {
			return 0, fmt.Errorf("copy %s: %w", table, err)
		}
		if d := time.Since(t0); i > 0 && (best == 0 || d < best) {
			best = d
		}
	}
	return best, nil
}

// result is one snapshot's figures.
type result struct {
	elapsed, cpu, broker time.Duration
	rss                  int64         // capture's peak RSS, bytes
	recs                 []*kgo.Record // the topic's records, when asked for
}

// snapshot runs capture with a new slot into a fresh broker until the topic holds rows records,
// then stops it and drops the slot.
func snapshot(ctx context.Context, pg *testenv.Postgres, conn *pgx.Conn, bin, work, slot string, cc captureCfg, rows int, perf string, fetch bool) (result, error) {
	kf, err := testenv.StartKafka()
	if err != nil {
		return result{}, fmt.Errorf("start kafka: %w", err)
	}
	defer kf.Close()
	cfgPath := filepath.Join(work, slot+".yaml")
	if err := os.WriteFile(cfgPath, []byte(pipelineYAML(pg.URL("postgres"), kf.Addr(), slot, work, cc)), 0o600); err != nil {
		return result{}, fmt.Errorf("write pipeline file: %w", err)
	}
	defer dropSlot(context.WithoutCancel(ctx), conn, slot)
	self0 := child.SelfCPU()
	p, err := child.Start("backflow capture", exec.Command(bin, "capture", "-c", cfgPath), filepath.Join(work, slot+".log"))
	if err != nil {
		return result{}, err
	}
	defer p.Kill()
	child.Progress("backflow capture (pid %d, parallelism %d): snapshot into %s", p.PID(), cc.parallelism, kf.Addr())
	rec, err := child.StartPerf(p.PID(), perf, child.Progress)
	if err != nil {
		return result{}, err
	}
	elapsed, err := waitRecords(ctx, p, kf.Brokers(), int64(rows))
	rec.Stop()
	if err != nil {
		return result{}, err
	}
	broker := child.SelfCPU() - self0
	hwm := p.VmHWM()
	if err := p.Stop(); err != nil {
		return result{}, err
	}
	child.Progress("snapshot: %s, %.0f rows/s, cpu %s", elapsed.Round(time.Millisecond), float64(rows)/elapsed.Seconds(), p.CPU().Round(time.Millisecond))
	res := result{elapsed: elapsed, cpu: p.CPU(), broker: broker, rss: max(hwm, p.MaxRSS())}
	if fetch {
		if res.recs, err = fetchRecords(ctx, kf.Brokers(), topic, rows); err != nil {
			return result{}, err
		}
	}
	return res, nil
}

func dropSlot(ctx context.Context, conn *pgx.Conn, slot string) {
	if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot); err != nil {
		child.Progress("drop slot %s: %v", slot, err)
	}
}

// captureCfg is what a snapshot run sets in capture's pipeline file (0: the default).
type captureCfg struct{ parallelism, maxInFlight int }

func pipelineYAML(pgURL, broker, slot, work string, cc captureCfg) string {
	par := ""
	if cc.parallelism > 0 {
		par = fmt.Sprintf("    snapshot_parallelism: %d\n", cc.parallelism)
	}
	if cc.maxInFlight > 0 {
		par += fmt.Sprintf("    max_in_flight: %d\n", cc.maxInFlight)
	}
	return fmt.Sprintf(`source:
  postgres:
    url: %q
    slot: %s
    tables: [%s]
    snapshot: initial
%skafka:
  brokers: [%q]
  topic_prefix: %s
  format: avro
  topics: {partitions: 6, replication_factor: 1}
data_dir: %q
log:
  format: json
  level: info
`, pgURL, slot, table, par, broker, topicPrefix, filepath.Join(work, slot+"-data"))
}

// waitRecords waits until the topic holds want records and returns the time since p started.
func waitRecords(ctx context.Context, p *child.Proc, brokers []string, want int64) (time.Duration, error) {
	cl, err := kgo.NewClient(append(child.PollOpts(), kgo.SeedBrokers(brokers...))...)
	if err != nil {
		return 0, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	if err := child.WaitRecords(ctx, p, kadm.NewClient(cl), topic, want, 10*time.Millisecond); err != nil {
		return 0, err
	}
	return time.Since(p.Started), nil
}
