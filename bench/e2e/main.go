// Command e2e benchmarks the latency of the whole chain, from a row committed in the warehouse to
// the same row written in the target, at a steady load (see the README, "Benchmarks").
//
// One run per rate of -rate (5,000 and 20,000 rows/s by default, a light and a heavy load, each
// in a run of its own): start two throwaway PostgreSQL clusters (the warehouse and the target) and a kfake
// broker in this process, then `backflow capture` and `backflow sink` as child processes (so their
// peak RSS is their own). Once a probe row has made it through, a writer inserts -rate rows per
// second into public.orders for -seconds, one multi-row INSERT every -tick, each row carrying
// created_at = clock_timestamp(). The target table public.orders_copy has a BEFORE INSERT OR
// UPDATE trigger setting applied_at = clock_timestamp(). When every row has arrived, the latency
// of a row is applied_at - created_at (both clusters run on this machine, so their clocks agree);
// rows created in the first -warmup are left out. Each run prints (to stdout) a line
//
//	RESULT e2e p50_ms=… p99_ms=… rate=… target_rate=… …
//
// where rate is the write rate achieved and target_rate the rate asked for; besides: p90_ms, max_ms, visible_p50_ms and
// visible_p99_ms (to the commit of the sink's transaction, from track_commit_timestamp, i.e. when
// the row became visible in the target), the latency split into the writer's, capture's and the
// sink's shares (commit_*, capture_*, sink_*: see stages), the CPU time and peak RSS of both
// processes and the settings. Progress goes to stderr.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backflow-dev/backflow/bench/internal/child"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

const (
	slot      = "backflow"
	sinkName  = "orders-copy"
	sourceDDL = `CREATE TABLE public.orders (id bigint PRIMARY KEY, sku text NOT NULL, qty int NOT NULL, price numeric(10,2) NOT NULL, created_at timestamptz NOT NULL)`
	targetDDL = `CREATE TABLE public.orders_copy (id bigint PRIMARY KEY, sku text NOT NULL, qty int NOT NULL, price numeric(10,2) NOT NULL, created_at timestamptz NOT NULL, applied_at timestamptz);
	CREATE FUNCTION set_applied_at() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.applied_at := clock_timestamp(); RETURN NEW; END $$;
	CREATE TRIGGER orders_copy_applied_at BEFORE INSERT OR UPDATE ON public.orders_copy FOR EACH ROW EXECUTE FUNCTION set_applied_at();`
	insertSQL = `INSERT INTO public.orders (id, sku, qty, price, created_at)
	SELECT g, 'SKU-' || lpad(g::text, 8, '0'), (g % 500)::int, (g % 10000) / 100.0 + 0.99, clock_timestamp()
	FROM generate_series($1::bigint, $2::bigint) g`
	probeID = 0 // the probe row; the writer's rows start at 1
)

// duration is how long the writer runs.
func (o options) duration() time.Duration { return time.Duration(o.seconds) * time.Second }

type options struct {
	rate           int // of this run, one of rates
	rates          rateList
	seconds        int
	tick           time.Duration
	warmup         time.Duration
	batch          int
	maxWait        time.Duration
	concurrency    int
	statusInterval time.Duration
	keep           bool
	bin            string
	timeout        time.Duration
}

func main() {
	var o options
	o.rates = rateList{5000, 20000}
	flag.Var(&o.rates, "rate", "rows inserted per second in the warehouse; a comma-separated list runs the bench once per rate")
	flag.IntVar(&o.seconds, "seconds", 20, "how long the writer runs, in seconds")
	flag.DurationVar(&o.tick, "tick", 10*time.Millisecond, "one multi-row INSERT this often")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "rows created this early in the run are left out of the figures")
	flag.IntVar(&o.batch, "batch", 1000, "the sink's batch.max_records")
	flag.DurationVar(&o.maxWait, "max-wait", 10*time.Millisecond, "the sink's batch.max_wait")
	flag.IntVar(&o.concurrency, "concurrency", 4, "the sink's concurrency")
	flag.DurationVar(&o.statusInterval, "status-interval", 100*time.Millisecond, "capture's source.postgres.status_interval")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (binary, pipeline file, logs) and the PostgreSQL data directories")
	flag.StringVar(&o.bin, "bin", "", "run this backflow binary instead of building ./cmd/backflow")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "give up after this long")
	flag.Parse()
	if len(o.rates) == 0 || o.duration() <= o.warmup || o.tick <= 0 || o.batch < 1 || o.concurrency < 1 {
		fmt.Fprintln(os.Stderr, "bench: -rate, -batch and -concurrency must be at least 1, -tick positive, -seconds longer than -warmup")
		os.Exit(2)
	}
	child.Main(o.timeout, func(ctx context.Context) error {
		for _, r := range o.rates {
			o.rate = r
			if err := run(ctx, o); err != nil {
				return err
			}
		}
		return nil
	})
}

// rateList is the -rate flag: one rate or a comma-separated list, each at least 1.
type rateList []int

func (l *rateList) String() string {
	s := make([]string, len(*l))
	for i, r := range *l {
		s[i] = strconv.Itoa(r)
	}
	return strings.Join(s, ",")
}

func (l *rateList) Set(v string) error {
	var out rateList
	for _, f := range strings.Split(v, ",") {
		r, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || r < 1 {
			return fmt.Errorf("rate %q: want a whole number of rows per second, at least 1", f)
		}
		out = append(out, r)
	}
	*l = out
	return nil
}

// env is everything a run uses.
type env struct {
	o        options
	work     string
	bin      string
	src, dst *testenv.Postgres
	kf       *testenv.Kafka
}

func run(ctx context.Context, o options) error {
	e := &env{o: o}
	var cleanup func()
	var err error
	if e.work, e.bin, cleanup, err = child.Setup(ctx, "backflow-bench-e2e-", o.keep, o.bin); err != nil {
		return err
	}
	defer cleanup()
	if err := e.startServices(ctx); err != nil {
		return err
	}
	defer e.close()
	return e.measure(ctx)
}

// startServices starts both clusters with their tables and the broker.
func (e *env) startServices(ctx context.Context) error {
	var err error
	child.Progress("starting PostgreSQL (warehouse and target) and kfake")
	if e.src, err = startPostgres(ctx, e.work, "warehouse", e.o.keep, testenv.PGConf("track_commit_timestamp", "on")); err != nil {
		return err
	}
	if e.dst, err = startPostgres(ctx, e.work, "target", e.o.keep, testenv.PGConf("track_commit_timestamp", "on")); err != nil {
		return err
	}
	if err := e.src.Exec(ctx, sourceDDL); err != nil {
		return fmt.Errorf("create source table: %w", err)
	}
	if err := e.dst.Exec(ctx, targetDDL); err != nil {
		return fmt.Errorf("create target table: %w", err)
	}
	if e.kf, err = testenv.StartKafka(); err != nil {
		return fmt.Errorf("start kafka: %w", err)
	}
	return nil
}

func startPostgres(ctx context.Context, work, name string, keep bool, opts ...testenv.PGOpt) (*testenv.Postgres, error) {
	if keep {
		opts = append(opts, testenv.PGDir(filepath.Join(work, name)))
	}
	pg, err := testenv.StartPostgres(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("start %s postgres: %w", name, err)
	}
	return pg, nil
}

func (e *env) close() {
	for _, pg := range []*testenv.Postgres{e.src, e.dst} {
		if pg != nil {
			if err := pg.Close(); err != nil {
				child.Progress("close postgres: %v", err)
			}
		}
	}
	if e.kf != nil {
		if err := e.kf.Close(); err != nil {
			child.Progress("close kafka: %v", err)
		}
	}
}

// measure runs capture and the sink, the probe, the writer and the catch-up, then prints the
// result.
func (e *env) measure(ctx context.Context) error {
	cfgPath := filepath.Join(e.work, "pipeline.yaml")
	if err := os.WriteFile(cfgPath, []byte(e.pipelineYAML()), 0o600); err != nil {
		return fmt.Errorf("write pipeline file: %w", err)
	}
	capture, err := child.Start("backflow capture", exec.Command(e.bin, "capture", "-c", cfgPath), filepath.Join(e.work, "capture.log"))
	if err != nil {
		return err
	}
	defer capture.Kill()
	sink, err := child.Start("backflow sink", exec.Command(e.bin, "sink", "-c", cfgPath), filepath.Join(e.work, "sink.log"))
	if err != nil {
		return err
	}
	defer sink.Kill()
	child.Progress("backflow capture (pid %d) and backflow sink (pid %d) started", capture.PID(), sink.PID())
	self0 := child.SelfCPU()
	w, err := e.load(ctx, capture, sink)
	if err != nil {
		return err
	}
	broker := child.SelfCPU() - self0
	lat, err := e.latencies(ctx)
	if err != nil {
		return err
	}
	if lat.stages, err = e.stages(ctx); err != nil {
		return err
	}
	procs, err := stopAll(sink, capture)
	if err != nil {
		return err
	}
	printResult(e.o, w, lat, procs, broker)
	return nil
}

// load waits for the chain to be up, runs the writer and waits until every row has arrived.
func (e *env) load(ctx context.Context, procs ...*child.Proc) (written, error) {
	src, err := e.src.Connect(ctx, "postgres")
	if err != nil {
		return written{}, err
	}
	defer src.Close(context.WithoutCancel(ctx))
	dst, err := e.dst.Connect(ctx, "postgres")
	if err != nil {
		return written{}, err
	}
	defer dst.Close(context.WithoutCancel(ctx))
	if err := e.probe(ctx, src, dst, procs); err != nil {
		return written{}, err
	}
	w, err := e.write(ctx, src)
	if err != nil {
		return w, err
	}
	w.drain, err = e.waitArrived(ctx, dst, w.rows, procs)
	return w, err
}

func (e *env) pipelineYAML() string {
	return fmt.Sprintf(`source:
  postgres:
    url: %[1]q
    slot: %[2]s
    publication: backflow
    tables: [public.orders]
    snapshot: never
    status_interval: %[3]s
kafka:
  brokers: [%[4]q]
  topic_prefix: wh
  format: avro
  topics: {partitions: 6, replication_factor: 1}
data_dir: %[5]q
log:
  format: json
  level: warn
sinks:
  - name: %[6]s
    from: [public.orders]
    connector: postgres
    with: {url: %[7]q, table: public.orders_copy}
    key: [id]
    map:
      id: after.id
      sku: after.sku
      qty: after.qty
      price: after.price
      created_at: after.created_at
    concurrency: %[8]d
    batch: {max_records: %[9]d, max_wait: %[10]s}
`, e.src.URL("postgres"), slot, e.o.statusInterval, e.kf.Addr(), filepath.Join(e.work, "data"), sinkName,
		e.dst.URL("postgres"), e.o.concurrency, e.o.batch, e.o.maxWait)
}

// probe waits for capture's slot, then inserts the probe row and waits until it reaches the
// target: from then on both processes are up and the topic and the group exist.
func (e *env) probe(ctx context.Context, src, dst *pgx.Conn, procs []*child.Proc) error {
	t0 := time.Now()
	err := poll(ctx, time.Minute, procs, func() (bool, error) {
		var n int
		err := src.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND active", slot).Scan(&n)
		return n == 1, err
	})
	if err != nil {
		return fmt.Errorf("wait for capture's slot: %w", err)
	}
	if _, err := src.Exec(ctx, insertSQL, probeID, probeID); err != nil {
		return fmt.Errorf("insert probe row: %w", err)
	}
	err = poll(ctx, time.Minute, procs, func() (bool, error) {
		var n int
		err := dst.QueryRow(ctx, "SELECT count(*) FROM public.orders_copy WHERE id = $1", probeID).Scan(&n)
		return n == 1, err
	})
	if err != nil {
		return fmt.Errorf("wait for the probe row in the target: %w", err)
	}
	child.Progress("chain up: probe row arrived %s after start", time.Since(t0).Round(time.Millisecond))
	return nil
}

// poll calls cond every 20 ms until it is true, an error, a process exit or the timeout.
func poll(ctx context.Context, timeout time.Duration, procs []*child.Proc, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		for _, p := range procs {
			select {
			case <-p.Exited():
				return fmt.Errorf("%s exited (%v); log tail:\n%s", p.Name, p.Err(), p.LogTail())
			default:
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %s; %s", timeout, logTails(procs))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func logTails(procs []*child.Proc) string {
	var b strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&b, "%s log tail:\n%s\n", p.Name, p.LogTail())
	}
	return b.String()
}

// written is what the writer did.
type written struct {
	rows    int64
	elapsed time.Duration
	drain   time.Duration // from the writer's end until every row was in the target
}

func (w written) rate() float64 { return float64(w.rows) / w.elapsed.Seconds() }

// write inserts rows at o.rate for o.seconds: every tick, as many rows as are due by then (one
// multi-row INSERT), so a late tick is made up for by the next.
func (e *env) write(ctx context.Context, src *pgx.Conn) (written, error) {
	child.Progress("writing %d rows/s for %s, one INSERT every %s", e.o.rate, e.o.duration(), e.o.tick)
	tick := time.NewTicker(e.o.tick)
	defer tick.Stop()
	var w written
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return w, ctx.Err()
		case <-tick.C:
		}
		elapsed := min(time.Since(start), e.o.duration())
		due := int64(elapsed.Seconds() * float64(e.o.rate))
		if due > w.rows {
			if _, err := src.Exec(ctx, insertSQL, w.rows+1, due); err != nil {
				return w, fmt.Errorf("insert rows %d..%d: %w", w.rows+1, due, err)
			}
			w.rows = due
		}
		if elapsed == e.o.duration() {
			w.elapsed = time.Since(start)
			child.Progress("wrote %d rows in %s: %.0f rows/s", w.rows, w.elapsed.Round(time.Millisecond), w.rate())
			return w, nil
		}
	}
}

// waitArrived waits until the target holds every written row.
func (e *env) waitArrived(ctx context.Context, dst *pgx.Conn, rows int64, procs []*child.Proc) (time.Duration, error) {
	t0 := time.Now()
	err := poll(ctx, 5*time.Minute, procs, func() (bool, error) {
		var n int64
		err := dst.QueryRow(ctx, "SELECT count(*) FROM public.orders_copy WHERE id > $1", probeID).Scan(&n)
		return n == rows, err
	})
	if err != nil {
		return 0, fmt.Errorf("wait for %d rows in the target: %w", rows, err)
	}
	d := time.Since(t0)
	child.Progress("all %d rows in the target %s after the writer stopped", rows, d.Round(time.Millisecond))
	return d, nil
}

// latency holds the figures over the rows after the warm-up, in milliseconds.
type latency struct {
	rows                   int64
	p50, p90, p99, max     float64
	visibleP50, visibleP99 float64
	stages                 stages
}

// stages splits the latency at the commit in the warehouse (track_commit_timestamp) and at the
// record's timestamp, when capture handed it to the Kafka client: the writer's share (the rest of
// its INSERT, and its commit), capture's (the walsender's decoding, capture's decoding and
// encoding) and the rest (batching, the broker, the sink's fetch, batch and write). A row's
// commit may be later than its record's timestamp by the clock's skew between the two processes
// reading it: a share can be slightly negative.
type stages struct {
	commitP50, commitP99   float64
	captureP50, captureP99 float64
	sinkP50, sinkP99       float64
}

const stagesSQL = `WITH w AS (
	SELECT extract(epoch FROM p.committed_at - c.created_at) * 1000 AS commit,
		extract(epoch FROM p.produced_at - p.committed_at) * 1000 AS capture,
		extract(epoch FROM c.applied_at - p.produced_at) * 1000 AS sink
	FROM public.orders_copy c JOIN produced p USING (id)
	WHERE c.id > $1 AND c.created_at >= (SELECT min(created_at) FROM public.orders_copy WHERE id > $1) + $2::interval)
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY commit), percentile_cont(0.99) WITHIN GROUP (ORDER BY commit),
	percentile_cont(0.5) WITHIN GROUP (ORDER BY capture), percentile_cont(0.99) WITHIN GROUP (ORDER BY capture),
	percentile_cont(0.5) WITHIN GROUP (ORDER BY sink), percentile_cont(0.99) WITHIN GROUP (ORDER BY sink)
FROM w`

// stages reads every record of the topic for its id and timestamp, and every row's commit time
// in the warehouse, and splits each row's latency there.
func (e *env) stages(ctx context.Context) (stages, error) {
	recs, err := testenv.ConsumeAll(ctx, e.kf.Brokers(), "wh.public.orders")
	if err != nil {
		return stages{}, fmt.Errorf("read the topic: %w", err)
	}
	committed, err := e.commitTimes(ctx)
	if err != nil {
		return stages{}, err
	}
	rows := make([][]any, 0, len(recs))
	for _, r := range recs {
		id, err := orderID(r.Key)
		if err != nil {
			return stages{}, fmt.Errorf("record at %d/%d: %w", r.Partition, r.Offset, err)
		}
		at, ok := committed[id]
		if !ok {
			continue // the probe row
		}
		rows = append(rows, []any{id, r.Timestamp, at})
	}
	dst, err := e.dst.Connect(ctx, "postgres")
	if err != nil {
		return stages{}, err
	}
	defer dst.Close(context.WithoutCancel(ctx))
	if _, err := dst.Exec(ctx, `CREATE TEMP TABLE produced (id bigint PRIMARY KEY, produced_at timestamptz NOT NULL, committed_at timestamptz NOT NULL)`); err != nil {
		return stages{}, fmt.Errorf("create produced: %w", err)
	}
	if _, err := dst.CopyFrom(ctx, pgx.Identifier{"produced"}, []string{"id", "produced_at", "committed_at"}, pgx.CopyFromRows(rows)); err != nil {
		return stages{}, fmt.Errorf("copy the records' timestamps: %w", err)
	}
	var st stages
	err = dst.QueryRow(ctx, stagesSQL, probeID, e.o.warmup.String()).
		Scan(&st.commitP50, &st.commitP99, &st.captureP50, &st.captureP99, &st.sinkP50, &st.sinkP99)
	if err != nil {
		return stages{}, fmt.Errorf("compute the stages: %w", err)
	}
	child.Progress("row to commit (writer): p50 %.1f ms, p99 %.1f ms; commit to record (capture): p50 %.1f ms, p99 %.1f ms; "+
		"record to target (broker and sink): p50 %.1f ms, p99 %.1f ms",
		st.commitP50, st.commitP99, st.captureP50, st.captureP99, st.sinkP50, st.sinkP99)
	return st, nil
}

// commitTimes reads when each of the writer's rows was committed in the warehouse.
func (e *env) commitTimes(ctx context.Context) (map[int64]time.Time, error) {
	src, err := e.src.Connect(ctx, "postgres")
	if err != nil {
		return nil, err
	}
	defer src.Close(context.WithoutCancel(ctx))
	rows, err := src.Query(ctx, `SELECT id, pg_xact_commit_timestamp(xmin) FROM public.orders WHERE id > $1`, probeID)
	if err != nil {
		return nil, fmt.Errorf("read the commit times: %w", err)
	}
	committed := map[int64]time.Time{}
	var id int64
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&id, &at}, func() error {
		committed[id] = at
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the commit times: %w", err)
	}
	return committed, nil
}

// orderID reads the id of a key of public.orders: Avro single-object encoding (a 10-byte
// header), then the key record's one long, zig-zag encoded.
func orderID(key []byte) (int64, error) {
	if len(key) <= 10 {
		return 0, fmt.Errorf("key of %d bytes: not a key of public.orders", len(key))
	}
	id, n := binary.Varint(key[10:])
	if n <= 0 || 10+n != len(key) {
		return 0, fmt.Errorf("key %x: not one Avro long after the header", key)
	}
	return id, nil
}

const latencySQL = `WITH w AS (
	SELECT extract(epoch FROM applied_at - created_at) * 1000 AS applied,
		extract(epoch FROM pg_xact_commit_timestamp(xmin) - created_at) * 1000 AS visible
	FROM public.orders_copy
	WHERE id > $1 AND created_at >= (SELECT min(created_at) FROM public.orders_copy WHERE id > $1) + $2::interval)
SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY applied), percentile_cont(0.9) WITHIN GROUP (ORDER BY applied),
	percentile_cont(0.99) WITHIN GROUP (ORDER BY applied), max(applied),
	percentile_cont(0.5) WITHIN GROUP (ORDER BY visible), percentile_cont(0.99) WITHIN GROUP (ORDER BY visible)
FROM w`

func (e *env) latencies(ctx context.Context) (latency, error) {
	dst, err := e.dst.Connect(ctx, "postgres")
	if err != nil {
		return latency{}, err
	}
	defer dst.Close(context.WithoutCancel(ctx))
	var l latency
	err = dst.QueryRow(ctx, latencySQL, probeID, e.o.warmup.String()).
		Scan(&l.rows, &l.p50, &l.p90, &l.p99, &l.max, &l.visibleP50, &l.visibleP99)
	if err != nil {
		return l, fmt.Errorf("compute latencies: %w", err)
	}
	if l.rows == 0 {
		return l, errors.New("no rows after the warm-up")
	}
	child.Progress("latency over %d rows after the %s warm-up: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms; visible (commit) p50 %.1f ms, p99 %.1f ms",
		l.rows, e.o.warmup, l.p50, l.p90, l.p99, l.max, l.visibleP50, l.visibleP99)
	return l, nil
}

// procFigures is a stopped process's CPU time and peak RSS.
type procFigures struct {
	cpu     time.Duration
	peakRSS int64
}

// stopAll stops the processes in order and returns their figures, in the same order.
func stopAll(procs ...*child.Proc) ([]procFigures, error) {
	out := make([]procFigures, len(procs))
	for i, p := range procs {
		hwm := p.VmHWM()
		if err := p.Stop(); err != nil {
			return nil, err
		}
		out[i] = procFigures{cpu: p.CPU(), peakRSS: max(hwm, p.MaxRSS())}
		child.Progress("%s: cpu %s, peak RSS %.1f MB", p.Name, out[i].cpu.Round(time.Millisecond), mb(out[i].peakRSS))
	}
	return out, nil
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func printResult(o options, w written, l latency, procs []procFigures, broker time.Duration) {
	sink, capture := procs[0], procs[1]
	fmt.Printf("RESULT e2e p50_ms=%.1f p99_ms=%.1f rate=%.0f target_rate=%d p90_ms=%.1f max_ms=%.1f visible_p50_ms=%.1f visible_p99_ms=%.1f "+
		"commit_p50_ms=%.1f commit_p99_ms=%.1f capture_p50_ms=%.1f capture_p99_ms=%.1f sink_p50_ms=%.1f sink_p99_ms=%.1f rows=%d measured_rows=%d seconds=%.1f warmup_s=%.1f drain_s=%.2f capture_cpu_s=%.2f capture_rss_mb=%.1f "+
		"sink_cpu_s=%.2f sink_rss_mb=%.1f broker_cpu_s=%.2f batch=%d max_wait=%s concurrency=%d status_interval=%s\n",
		l.p50, l.p99, w.rate(), o.rate, l.p90, l.max, l.visibleP50, l.visibleP99,
		l.stages.commitP50, l.stages.commitP99, l.stages.captureP50, l.stages.captureP99, l.stages.sinkP50, l.stages.sinkP99, w.rows, l.rows, w.elapsed.Seconds(), o.warmup.Seconds(), w.drain.Seconds(), capture.cpu.Seconds(), mb(capture.peakRSS),
		sink.cpu.Seconds(), mb(sink.peakRSS), broker.Seconds(), o.batch, o.maxWait, o.concurrency, o.statusInterval)
}
