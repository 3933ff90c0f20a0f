// Command sink benchmarks `backflow sink` applying change records from a Kafka topic to a
// PostgreSQL table, side by side with COPY of the same rows into the same table (see the README,
// "Benchmarks").
//
// One run: start a throwaway PostgreSQL (the target) and a kfake broker in this process, create
// public.stock, produce -records Avro insert events (op c, written like capture writes them, with
// the <prefix>._schemas topic) into the 6-partition topic wh.public.inventory, every record with
// its own key (sku, warehouse), so that coalescing in the sink cannot shrink the work. Then COPY
// the same rows into the empty table with pgx CopyFrom (timed), empty the table again and run the
// backflow binary as a child process, `backflow sink` (so its peak RSS is the sink's alone), timed
// from its start until the sink's consumer group has committed every partition's end offset; the
// table must then hold every row, with the same totals as after COPY. With -rounds N both run N
// times, alternately, and the fastest of each counts. The last line printed (to stdout) is
//
//	RESULT sink rows_per_s=… peak_rss_mb=… ratio_vs_copy=… …
//
// with, besides: cpu_s (the sink's CPU time), target_pg_cpu_s (the PostgreSQL backends serving
// it), broker_cpu_s (this process, i.e. kfake), copy_rows_per_s, copy_pg_cpu_s and the sink
// settings. With -mixed, each round also runs the sink on a second stream under its own topics:
// the same inserts, then updates of 20 % of the rows and deletes of 5 % (each phase touching a key
// at most once, so coalescing cannot shrink the work), and the table is checked for the rows and
// quantities that leaves. It adds the line
//
//	RESULT sink_mixed rows_per_s=… ratio_vs_inserts=… …
//
// where rows_per_s counts row changes and ratio_vs_inserts compares it with RESULT sink's
// rows_per_s of the same invocation. Progress goes to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/bench/internal/child"
	"github.com/backflow-dev/backflow/connectors/postgres"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

const (
	topicPrefix = "wh"
	sourceTable = "public.inventory"
	topic       = topicPrefix + "." + sourceTable
	partitions  = 6
	targetTable = "public.stock"
	warehouses  = 8 // keys are (SKU-<i/8>, WH-<i%8>): all distinct
)

type options struct {
	records     int
	batch       int
	maxWait     time.Duration
	concurrency int
	maxConns    int
	rounds      int
	keep        bool
	bin         string
	perf        string
	logLevel    string
	timeout     time.Duration
	replay      bool
	mixed       bool
	format      string
}

func main() {
	var o options
	flag.IntVar(&o.records, "records", 1_000_000, "insert events on the topic, each with its own key")
	flag.IntVar(&o.batch, "batch", 5000, "the sink's batch.max_records")
	flag.DurationVar(&o.maxWait, "max-wait", 50*time.Millisecond, "the sink's batch.max_wait")
	flag.IntVar(&o.concurrency, "concurrency", 4, "the sink's concurrency (partitions applied at once)")
	flag.IntVar(&o.maxConns, "max-conns", postgres.DefaultMaxConns, "the postgres connector's with.max_conns")
	flag.IntVar(&o.rounds, "rounds", 1, "run COPY and the sink this many times, alternately, and report the fastest of each "+
		"(for a busy machine)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (binary, pipeline files, sink logs) and the PostgreSQL data directory")
	flag.StringVar(&o.bin, "bin", "", "run this backflow binary instead of building ./cmd/backflow")
	flag.StringVar(&o.perf, "perf", "", "record the sink process with `perf record -g` into this file (last round)")
	flag.StringVar(&o.logLevel, "log-level", "warn", "the sink's log.level (info logs every batch; see the sink log with -keep)")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
	flag.StringVar(&o.format, "format", codec.FormatAvro, "how the events on the topic are framed: avro (single-object) or avro-confluent (the default format without a registry)")
	flag.BoolVar(&o.replay, "replay", false, "measure `backflow replay --from earliest` (a bounded backfill) instead of `backflow sink`; prints RESULT replay")
	flag.BoolVar(&o.mixed, "mixed", false, "also run the sink on a mixed stream (the same inserts, then updates of 20 % of the rows and deletes of 5 %), "+
		"alternately with the insert-only run; prints RESULT sink_mixed with ratio_vs_inserts")
	flag.Parse()
	if o.mixed && o.replay {
		fmt.Fprintln(os.Stderr, "bench: -mixed measures backflow sink, not replay")
		os.Exit(2)
	}
	if o.records < 1 || o.batch < 1 || o.concurrency < 1 || o.rounds < 1 || o.maxConns < 1 {
		fmt.Fprintln(os.Stderr, "bench: -records, -batch, -concurrency, -max-conns and -rounds must be at least 1")
		os.Exit(2)
	}
	child.Main(o.timeout, func(ctx context.Context) error { return run(ctx, o) })
}

func run(ctx context.Context, o options) error {
	work, bin, cleanup, err := child.Setup(ctx, "backflow-bench-sink-", o.keep, o.bin)
	if err != nil {
		return err
	}
	defer cleanup()
	pg, err := startPostgres(ctx, work, o.keep)
	if err != nil {
		return err
	}
	defer pg.Close()
	conn, err := pg.Connect(ctx, "postgres")
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, tableSQL); err != nil {
		return fmt.Errorf("create %s: %w", targetTable, err)
	}
	kf, err := testenv.StartKafka()
	if err != nil {
		return fmt.Errorf("start kafka: %w", err)
	}
	defer kf.Close()
	b := bench{o: o, pg: pg, conn: conn, brokers: kf.Brokers(), bin: bin, work: work}
	if b.inserts, err = produce(ctx, kf.Brokers(), insertStream(o.records).framed(o.format)); err != nil {
		return err
	}
	if o.mixed {
		if b.mixed, err = produce(ctx, kf.Brokers(), mixedStream(o.records).framed(o.format)); err != nil {
			return err
		}
	}
	cp, sk, mx, err := b.rounds(ctx)
	if err != nil {
		return err
	}
	printResult(o, b.inserts, cp, sk)
	if o.mixed {
		printMixed(o, b.mixed, mx, sk.rowsPerS(b.inserts.changes))
	}
	return nil
}

func startPostgres(ctx context.Context, work string, keep bool) (*testenv.Postgres, error) {
	opts := []testenv.PGOpt{ // fsync off is testenv's default
		testenv.PGConf("max_wal_size", "8GB"),
		testenv.PGConf("checkpoint_timeout", "30min"),
		testenv.PGConf("autovacuum", "off"),
	}
	if keep {
		opts = append(opts, testenv.PGDir(filepath.Join(work, "postgres")))
	}
	child.Progress("starting PostgreSQL (the target)")
	pg, err := testenv.StartPostgres(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	return pg, nil
}

const tableSQL = `CREATE TABLE public.stock (
	sku text NOT NULL, warehouse text NOT NULL, qty int NOT NULL, price numeric(10,2) NOT NULL,
	updated_at timestamptz NOT NULL, PRIMARY KEY (sku, warehouse))`

// stockRow is row i of the data set, the same for COPY and for the topic.
type stockRow struct {
	sku, warehouse string
	qty            int32
	cents          int64
	updatedAt      time.Time
}

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func rowAt(i int) stockRow {
	return stockRow{
		sku:       fmt.Sprintf("SKU-%08d", i/warehouses),
		warehouse: fmt.Sprintf("WH-%02d", i%warehouses),
		qty:       int32(i % 500),
		cents:     int64(i%1_000_000) + 99,
		updatedAt: epoch.Add(time.Duration(i) * time.Millisecond),
	}
}

// price is the exact decimal text, as capture writes numeric values.
func (r stockRow) price() string { return fmt.Sprintf("%d.%02d", r.cents/100, r.cents%100) }

// inventory is the source table's shape as capture would describe it.
var inventory = &change.Table{Schema: "public", Name: "inventory", Columns: []change.Column{
	{Name: "sku", Kind: change.KindString, PGType: "text", TypeOID: 25, Key: true},
	{Name: "warehouse", Kind: change.KindString, PGType: "text", TypeOID: 25, Key: true},
	{Name: "qty", Kind: change.KindInt32, PGType: "int4", TypeOID: 23},
	{Name: "price", Kind: change.KindNumeric, PGType: "numeric", TypeOID: 1700},
	{Name: "updated_at", Kind: change.KindTimestampTZ, PGType: "timestamptz", TypeOID: 1184},
}}

// event is r inserted (op c) as the seq-th change of its stream.
func (r stockRow) event(seq int) *change.Event {
	ts := r.updatedAt.UnixMilli()
	return &change.Event{
		Op:    change.OpCreate,
		Table: inventory,
		After: change.Row{"sku": r.sku, "warehouse": r.warehouse, "qty": r.qty, "price": r.price(),
			"updated_at": r.updatedAt.Format("2006-01-02T15:04:05.000000Z")},
		Source: change.Source{Connector: "postgresql", Name: topicPrefix, DB: "warehouse", Schema: "public",
			Table: "inventory", TxID: int64(1000 + seq/1000), LSN: int64(0x1000000 + seq*128), TsMs: ts, Snapshot: "false"},
		TsMs: ts,
	}
}

// stream is a topic of changes written like capture writes them, each stream under its own topic
// prefix (so with its own topics) for the same source table.
type stream struct {
	prefix  string
	format  string                      // codec.FormatAvro or codec.FormatAvroConfluent
	changes int                         // row changes: what rows_per_s counts
	event   func(seq int) *change.Event // the seq-th change, seq < changes
	want    func(t totals) error        // checks the table after the sink applied every change (nil: compare with COPY)
	records int                         // on the topic: a delete adds a tombstone
	ends    map[int32]int64
	elapsed time.Duration // producing
}

func (s stream) topic() string { return s.prefix + "." + sourceTable }

// framed returns s written in format (see -format).
func (s stream) framed(format string) stream {
	s.format = format
	return s
}

// insertStream is n insert events, each with its own key, so that coalescing in the sink cannot
// shrink the work.
func insertStream(n int) stream {
	return stream{prefix: topicPrefix, changes: n, event: func(i int) *change.Event { return rowAt(i).event(i) }}
}

// mixedStream is the n inserts of insertStream, then updates of every fifth row (20 %) and
// deletes of every twentieth (5 %, none of them updated). Each phase touches every key at most
// once, so coalescing in the sink cannot shrink the work either.
func mixedStream(n int) stream {
	updates, deletes := (n+4)/5, (n+18)/20
	ev := func(seq int) *change.Event {
		switch j := seq; {
		case j < n:
			return rowAt(j).event(seq)
		case j < n+updates:
			return rowAt(5 * (j - n)).updated(seq)
		default:
			return rowAt(20*(j-n-updates) + 1).deleted(seq)
		}
	}
	return stream{prefix: "wm", changes: n + updates + deletes, event: ev, want: mixedTotals(n)}
}

// updated is r after an update (qty + 1), as the seq-th change of its stream.
func (r stockRow) updated(seq int) *change.Event {
	r.qty++
	ev := r.event(seq)
	ev.Op = change.OpUpdate
	return ev
}

// deleted is the delete of r (its key only, as with the default replica identity), as the seq-th
// change of its stream.
func (r stockRow) deleted(seq int) *change.Event {
	ev := r.event(seq)
	ev.Op, ev.Before, ev.After = change.OpDelete, change.Row{"sku": r.sku, "warehouse": r.warehouse}, nil
	return ev
}

// mixedTotals checks the row count and the sum of qty after mixedStream(n).
func mixedTotals(n int) func(totals) error {
	var rows, qty int64
	for i := range n {
		if i%20 == 1 {
			continue
		}
		rows++
		qty += int64(rowAt(i).qty)
		if i%5 == 0 {
			qty++
		}
	}
	return func(t totals) error {
		if t.rows != rows || t.qty != qty {
			return fmt.Errorf("after the mixed stream %s holds %d rows with sum(qty) %d, want %d and %d", targetTable, t.rows, t.qty, rows, qty)
		}
		return nil
	}
}

// produce writes st's changes into its topic like capture does: Avro single-object encoding,
// schemas on the <prefix>._schemas topic, keyed by the key columns, a tombstone after a delete,
// backflow's producer options.
func produce(ctx context.Context, brokers []string, st stream) (stream, error) {
	t0 := time.Now()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, kafka.ProducerOpts()...)...)
	if err != nil {
		return st, fmt.Errorf("kafka producer: %w", err)
	}
	defer cl.Close()
	schemas := codec.SchemasTopic(st.prefix)
	topics := config.Topics{Partitions: partitions, ReplicationFactor: 1, CleanupPolicy: "compact"}
	if err := kafka.EnsureTopics(ctx, kadm.NewClient(cl), []string{st.topic(), schemas}, topics, nil); err != nil {
		return st, fmt.Errorf("create topics: %w", err)
	}
	enc, err := codec.NewEncoder(codec.TopicPrefix(st.prefix), codec.Format(st.format), codec.SchemaPublisher(func(ctx context.Context, fp uint64, schema []byte) error {
		return cl.ProduceSync(ctx, &kgo.Record{Topic: schemas, Key: codec.FingerprintKey(fp), Value: schema}).FirstErr()
	}))
	if err != nil {
		return st, fmt.Errorf("avro encoder: %w", err)
	}
	child.Progress("producing %d change events into %s (%d partitions)", st.changes, st.topic(), partitions)
	if st.records, err = produceAll(ctx, cl, enc, st); err != nil {
		return st, err
	}
	if st.ends, err = endOffsets(ctx, kadm.NewClient(cl), st.topic()); err != nil {
		return st, err
	}
	var total int64
	for _, end := range st.ends {
		total += end
	}
	if total != int64(st.records) {
		return st, fmt.Errorf("%s holds %d records, want %d", st.topic(), total, st.records)
	}
	st.elapsed = time.Since(t0)
	child.Progress("produced %d records in %s", st.records, st.elapsed.Round(time.Millisecond))
	return st, nil
}

// produceAll produces st's changes and returns how many records that took.
func produceAll(ctx context.Context, cl *kgo.Client, enc *codec.Encoder, st stream) (int, error) {
	var (
		mu    sync.Mutex
		first error
	)
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			first = firstErr(first, err)
			mu.Unlock()
		}
	}
	records := 0
	for i := range st.changes {
		ev := st.event(i)
		key, val, err := enc.Encode(ctx, st.topic(), ev)
		if err != nil {
			return 0, fmt.Errorf("encode event %d: %w", i, err)
		}
		cl.Produce(ctx, &kgo.Record{Topic: st.topic(), Key: key, Value: val}, done)
		records++
		if ev.Op == change.OpDelete {
			cl.Produce(ctx, &kgo.Record{Topic: st.topic(), Key: key}, done)
			records++
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return 0, fmt.Errorf("flush producer: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if first != nil {
		return 0, fmt.Errorf("produce: %w", first)
	}
	return records, nil
}

// firstErr keeps the first error.
func firstErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// endOffsets returns every partition's end offset of the topic.
func endOffsets(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	listed, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	ends := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	return ends, nil
}

// bench holds what every round uses.
type bench struct {
	o       options
	pg      *testenv.Postgres
	conn    *pgx.Conn
	brokers []string
	bin     string
	work    string
	inserts stream // the insert-only data set, also loaded by COPY
	mixed   stream // with -mixed
	want    totals // the table after COPY; the sink must produce the same from inserts
}

// figures is one timed load of the table.
type figures struct {
	elapsed time.Duration
	cpu     time.Duration // the sink process (0 for COPY)
	pgCPU   time.Duration // the PostgreSQL backends doing the writes
	broker  time.Duration // this process meanwhile (kfake), sink only
	peakRSS int64         // bytes, sink only
}

func (f figures) rowsPerS(n int) float64 { return float64(n) / f.elapsed.Seconds() }

// rounds loads the table o.rounds times with each of COPY, the sink and with -mixed the sink on
// the mixed stream, alternately, and returns the fastest of each (with the highest peak RSS).
func (b *bench) rounds(ctx context.Context) (cp, sk, mx figures, err error) {
	for i := 1; i <= b.o.rounds; i++ {
		c, err := b.copyRound(ctx)
		if err != nil {
			return cp, sk, mx, err
		}
		s, err := b.sinkRound(ctx, fmt.Sprintf("stock-%d", i), b.inserts, i)
		if err != nil {
			return cp, sk, mx, err
		}
		cp, sk = faster(cp, c), fasterPeak(sk, s)
		if !b.o.mixed {
			continue
		}
		m, err := b.sinkRound(ctx, fmt.Sprintf("stock-mixed-%d", i), b.mixed, i)
		if err != nil {
			return cp, sk, mx, err
		}
		mx = fasterPeak(mx, m)
	}
	return cp, sk, mx, nil
}

// fasterPeak is faster with the higher peak RSS of the two.
func fasterPeak(a, b figures) figures {
	f := faster(a, b)
	f.peakRSS = max(a.peakRSS, b.peakRSS)
	return f
}

// faster returns the faster of a and b; a zero figure counts as slowest.
func faster(a, b figures) figures {
	if a.elapsed == 0 || b.elapsed < a.elapsed {
		return b
	}
	return a
}

// reset empties the table and the sink's stored offsets and checkpoints, so that every timed
// load starts from the same state.
func (b *bench) reset(ctx context.Context) error {
	_, err := b.conn.Exec(ctx, "TRUNCATE "+targetTable)
	if err == nil {
		_, err = b.conn.Exec(ctx, "DROP TABLE IF EXISTS public.backflow_offsets")
	}
	if err == nil {
		_, err = b.conn.Exec(ctx, "CHECKPOINT")
	}
	if err != nil {
		return fmt.Errorf("reset target: %w", err)
	}
	return nil
}

// copyRound COPYs the data set into the empty table.
func (b *bench) copyRound(ctx context.Context) (figures, error) {
	if err := b.reset(ctx); err != nil {
		return figures{}, err
	}
	var backend int
	if err := b.conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return figures{}, fmt.Errorf("backend pid: %w", err)
	}
	child.Progress("COPY: %d rows into %s", b.o.records, targetTable)
	cpu0, t0 := child.ProcCPU(backend), time.Now()
	i := 0
	n, err := b.conn.CopyFrom(ctx, pgx.Identifier{"public", "stock"},
		[]string{"sku", "warehouse", "qty", "price", "updated_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == b.o.records {
				return nil, nil
			}
			r := rowAt(i)
			i++
			return []any{r.sku, r.warehouse, r.qty, pgtype.Numeric{Int: big.NewInt(r.cents), Exp: -2, Valid: true}, r.updatedAt}, nil
		}))
	f := figures{elapsed: time.Since(t0), pgCPU: child.ProcCPU(backend) - cpu0}
	if err != nil {
		return f, fmt.Errorf("copy: %w", err)
	}
	if n != int64(b.o.records) {
		return f, fmt.Errorf("copy: %d rows copied, want %d", n, b.o.records)
	}
	child.Progress("COPY: %s, %.0f rows/s, backend cpu %s", f.elapsed.Round(time.Millisecond), f.rowsPerS(b.o.records),
		f.pgCPU.Round(time.Millisecond))
	if b.want, err = readTotals(ctx, b.conn); err != nil {
		return f, err
	}
	return f, b.want.check(b.o.records)
}

// totals summarises the table's content for comparing two loads.
type totals struct {
	rows             int64
	qty              int64
	price, latest    string
	distinctSKUs, wh int64
}

func readTotals(ctx context.Context, conn *pgx.Conn) (totals, error) {
	var t totals
	err := conn.QueryRow(ctx, `SELECT count(*), coalesce(sum(qty), 0), coalesce(sum(price), 0)::text,
		coalesce(max(updated_at)::text, ''), count(DISTINCT sku), count(DISTINCT warehouse) FROM public.stock`).
		Scan(&t.rows, &t.qty, &t.price, &t.latest, &t.distinctSKUs, &t.wh)
	if err != nil {
		return t, fmt.Errorf("read totals of %s: %w", targetTable, err)
	}
	return t, nil
}

func (t totals) check(records int) error {
	if t.rows != int64(records) {
		return fmt.Errorf("%s holds %d rows, want %d", targetTable, t.rows, records)
	}
	return nil
}

// sinkRound runs `backflow sink` on the empty table until its group has committed every
// partition's end offset, then checks the table.
func (b *bench) sinkRound(ctx context.Context, name string, st stream, round int) (figures, error) {
	if err := b.reset(ctx); err != nil {
		return figures{}, err
	}
	cfgPath := filepath.Join(b.work, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(b.pipelineYAML(name, st.prefix)), 0o600); err != nil {
		return figures{}, fmt.Errorf("write pipeline file: %w", err)
	}
	self0 := child.SelfCPU()
	if b.o.replay {
		return b.replayRound(ctx, name, cfgPath, st, self0)
	}
	p, err := child.Start("backflow sink", exec.Command(b.bin, "sink", "-c", cfgPath), filepath.Join(b.work, name+".log"))
	if err != nil {
		return figures{}, err
	}
	defer p.Kill()
	child.Progress("backflow sink (pid %d): group %s, batch %d, max_wait %s, concurrency %d", p.PID(), name, b.o.batch, b.o.maxWait, b.o.concurrency)
	f, err := b.drain(ctx, p, name, st, round)
	if err != nil {
		return f, err
	}
	f.broker = child.SelfCPU() - self0
	if err := p.Stop(); err != nil {
		return f, err
	}
	f.cpu, f.peakRSS = p.CPU(), max(f.peakRSS, p.MaxRSS())
	child.Progress("backflow sink: %s, %.0f rows/s, cpu %s, target backends cpu %s, broker cpu %s, peak RSS %.1f MB",
		f.elapsed.Round(time.Millisecond), f.rowsPerS(st.changes), f.cpu.Round(time.Millisecond),
		f.pgCPU.Round(time.Millisecond), f.broker.Round(time.Millisecond), float64(f.peakRSS)/(1<<20))
	return f, b.verify(ctx, st)
}

// replayRound times `backflow replay --from earliest` from start to its exit: a bounded backfill
// of every record into the empty table, through the same mapping and connector as the sink.
func (b *bench) replayRound(ctx context.Context, name, cfgPath string, st stream, self0 time.Duration) (figures, error) {
	start := time.Now()
	p, err := child.Start("backflow replay", exec.Command(b.bin, "replay", "-c", cfgPath, "--sink", name, "--from", "earliest"),
		filepath.Join(b.work, name+"-replay.log"))
	if err != nil {
		return figures{}, err
	}
	defer p.Kill()
	// The replay's backends are gone once it exits: sample their CPU time while it runs (this
	// misses at most the last 100 ms of each).
	backends := map[int]time.Duration{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-p.Exited():
			break wait
		case <-ctx.Done():
			return figures{}, ctx.Err()
		case <-tick.C:
			if err := b.sampleBackends(ctx, name, backends); err != nil {
				return figures{}, err
			}
		}
	}
	f := figures{elapsed: time.Since(start)}
	for _, cpu := range backends {
		f.pgCPU += cpu
	}
	if p.Err() != nil {
		return f, fmt.Errorf("backflow replay: %v; log tail:\n%s", p.Err(), p.LogTail())
	}
	f.broker, f.cpu, f.peakRSS = child.SelfCPU()-self0, p.CPU(), p.MaxRSS()
	child.Progress("backflow replay: %s, %.0f rows/s, cpu %s, peak RSS %.1f MB", f.elapsed.Round(time.Millisecond),
		f.rowsPerS(st.changes), f.cpu.Round(time.Millisecond), float64(f.peakRSS)/(1<<20))
	return f, b.verify(ctx, st)
}

// drain waits for the sink to commit everything, with perf attached when asked for (last round),
// and samples the figures only a running process has.
func (b *bench) drain(ctx context.Context, p *child.Proc, group string, st stream, round int) (figures, error) {
	var perfOut string
	if round == b.o.rounds {
		perfOut = b.o.perf
	}
	rec, err := child.StartPerf(p.PID(), perfOut, child.Progress)
	if err != nil {
		return figures{}, err
	}
	defer rec.Stop()
	var f figures
	if f.elapsed, err = b.waitCommitted(ctx, p, group, st); err != nil {
		return f, err
	}
	f.peakRSS = p.VmHWM()
	f.pgCPU, err = b.sinkBackendsCPU(ctx, group)
	return f, err
}

func (b *bench) pipelineYAML(name, prefix string) string {
	// `backflow sink` does not connect to the source, but a pipeline file has one.
	return fmt.Sprintf(`source:
  postgres:
    url: %[1]q
    tables: [%[2]s]
kafka:
  brokers: [%[3]q]
  topic_prefix: %[4]s
  format: avro
  topics: {partitions: %[5]d, replication_factor: 1}
data_dir: %[6]q
log:
  format: json
  level: %[13]s
sinks:
  - name: %[7]s
    from: [%[2]s]
    connector: postgres
    with: {url: %[1]q, table: %[8]s, max_conns: %[9]d}
    key: [sku, warehouse]
    map:
      sku: after.sku
      warehouse: after.warehouse
      qty: after.qty
      price: after.price
      updated_at: after.updated_at
    concurrency: %[10]d
    batch: {max_records: %[11]d, max_wait: %[12]s}
`, b.pg.URL("postgres"), sourceTable, b.brokers[0], prefix, partitions, filepath.Join(b.work, name+"-data"),
		name, targetTable, b.o.maxConns, b.o.concurrency, b.o.batch, b.o.maxWait, b.o.logLevel)
}

// waitCommitted polls the group's committed offsets every 50 ms until they reach the end offsets
// and returns the time since the process started.
func (b *bench) waitCommitted(ctx context.Context, p *child.Proc, group string, st stream) (time.Duration, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...))
	if err != nil {
		return 0, fmt.Errorf("kafka admin client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	lastReport := time.Now()
	for {
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for group %s to commit everything: %w", group, ctx.Err())
		case <-p.Exited():
			return 0, fmt.Errorf("%s exited early (%v); log tail:\n%s", p.Name, p.Err(), p.LogTail())
		case <-tick.C:
		}
		done, err := committed(ctx, adm, group, st)
		if err != nil {
			return 0, err
		}
		if done == int64(st.records) {
			return time.Since(p.Started), nil
		}
		if time.Since(lastReport) >= 5*time.Second {
			child.Progress("%s: %d of %d records committed after %s", p.Name, done, st.records, time.Since(p.Started).Round(time.Second))
			lastReport = time.Now()
		}
	}
}

// committed returns how many records of the topic the group has committed, capped per partition
// at the end offsets taken after producing.
func committed(ctx context.Context, adm *kadm.Client, group string, st stream) (int64, error) {
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		if kerr.IsRetriable(err) || errors.Is(err, kerr.GroupIDNotFound) {
			return 0, nil // the group is still forming
		}
		return 0, fmt.Errorf("fetch offsets of group %s: %w", group, err)
	}
	var n int64
	for part, end := range st.ends {
		if o, ok := offs.Lookup(st.topic(), part); ok && o.Err == nil {
			n += min(o.At, end)
		}
	}
	return n, nil
}

// sinkBackendsCPU sums the CPU time of the PostgreSQL backends of the sink's connection pool.
func (b *bench) sinkBackendsCPU(ctx context.Context, group string) (time.Duration, error) {
	backends := map[int]time.Duration{}
	if err := b.sampleBackends(ctx, group, backends); err != nil {
		return 0, err
	}
	var total time.Duration
	for _, cpu := range backends {
		total += cpu
	}
	return total, nil
}

// sampleBackends records the CPU time so far of each PostgreSQL backend of the sink's pool.
func (b *bench) sampleBackends(ctx context.Context, group string, seen map[int]time.Duration) error {
	rows, err := b.conn.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", "backflow sink "+group)
	if err != nil {
		return fmt.Errorf("list the sink's backends: %w", err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("list the sink's backends: %w", err)
	}
	for _, pid := range pids {
		if cpu := child.ProcCPU(int(pid)); cpu > 0 {
			seen[int(pid)] = cpu
		}
	}
	return nil
}

// verify checks that the sink left the same table as COPY, or for the mixed stream what it must.
func (b *bench) verify(ctx context.Context, st stream) error {
	got, err := readTotals(ctx, b.conn)
	if err != nil {
		return err
	}
	if st.want != nil {
		if err := st.want(got); err != nil {
			return err
		}
		child.Progress("verified: %s holds the %d rows the mixed stream leaves", targetTable, got.rows)
		return nil
	}
	if got != b.want {
		return fmt.Errorf("after the sink %s has %+v, after COPY it had %+v", targetTable, got, b.want)
	}
	child.Progress("verified: %s holds %d rows, same totals as after COPY", targetTable, got.rows)
	return nil
}

func printResult(o options, pr stream, cp, sk figures) {
	skRate, cpRate := sk.rowsPerS(pr.records), cp.rowsPerS(pr.records)
	name := "sink"
	if o.replay {
		name = "replay"
	}
	fmt.Printf("RESULT %s rows_per_s=%.0f peak_rss_mb=%.1f ratio_vs_copy=%.3f records=%d distinct_keys=%d seconds=%.2f "+
		"cpu_s=%.2f target_pg_cpu_s=%.2f broker_cpu_s=%.2f copy_rows_per_s=%.0f copy_seconds=%.2f copy_pg_cpu_s=%.2f "+
		"batch=%d max_wait=%s concurrency=%d max_conns=%d partitions=%d rounds=%d produce_s=%.1f\n",
		name, skRate, float64(sk.peakRSS)/(1<<20), skRate/cpRate, pr.records, pr.records, sk.elapsed.Seconds(),
		sk.cpu.Seconds(), sk.pgCPU.Seconds(), sk.broker.Seconds(), cpRate, cp.elapsed.Seconds(), cp.pgCPU.Seconds(),
		o.batch, o.maxWait, o.concurrency, o.maxConns, partitions, o.rounds, pr.elapsed.Seconds())
}

// printMixed prints the sink's figures on the mixed stream; rows_per_s counts row changes, and
// ratio_vs_inserts compares them with the insert-only run's rows_per_s.
func printMixed(o options, st stream, mx figures, insertRate float64) {
	rate := mx.rowsPerS(st.changes)
	updates, deletes := (o.records+4)/5, (o.records+18)/20
	fmt.Printf("RESULT sink_mixed rows_per_s=%.0f ratio_vs_inserts=%.3f peak_rss_mb=%.1f changes=%d records=%d inserts=%d updates=%d deletes=%d "+
		"seconds=%.2f cpu_s=%.2f target_pg_cpu_s=%.2f broker_cpu_s=%.2f inserts_rows_per_s=%.0f batch=%d max_wait=%s concurrency=%d max_conns=%d "+
		"partitions=%d rounds=%d produce_s=%.1f\n",
		rate, rate/insertRate, float64(mx.peakRSS)/(1<<20), st.changes, st.records, o.records, updates, deletes,
		mx.elapsed.Seconds(), mx.cpu.Seconds(), mx.pgCPU.Seconds(), mx.broker.Seconds(), insertRate, o.batch, o.maxWait, o.concurrency,
		o.maxConns, partitions, o.rounds, st.elapsed.Seconds())
}
