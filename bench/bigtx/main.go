// Command bigtx benchmarks `backflow capture` on one large transaction, with streaming of
// transactions in progress (source.postgres.streaming: on, pgoutput protocol 2) against protocol 1
// (streaming: off) in the same run.
//
// One run: start a throwaway PostgreSQL (default logical_decoding_work_mem, 64MB) and create
// public.bigtx and the publication. Then, for streaming on and then off: start a kfake broker in
// this process and the backflow binary as a child process capturing from a new slot, commit one
// row and wait for it (so topic, schema and metadata exist), insert -rows rows in one
// transaction, and time from COMMIT returning until the topic holds every row of it;
// read the capture process's peak RSS (VmHWM). With -rounds N both modes run N times,
// alternately, and the fastest of each counts (with the highest peak RSS). The last line printed
// (to stdout) is
//
//	RESULT bigtx streaming_s=… proto1_s=… ratio=… rss_mb=… proto1_rss_mb=… …
//
// ratio is proto1_s / streaming_s: how much sooner the transaction is in Kafka when capture
// received it while it was written. Progress goes to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/bench/internal/child"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

const (
	table       = "public.bigtx"
	publication = "backflow"
	topicPrefix = "backflow"
	topic       = topicPrefix + "." + table
)

type options struct {
	rows           int
	rounds         int
	keep           bool
	logLevel       string
	maxInFlight    int
	bin            string
	statusInterval time.Duration
	timeout        time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.rows, "rows", 2_000_000, "rows inserted by the one transaction")
	flag.IntVar(&o.rounds, "rounds", 3, "measure each mode this many times, alternately, and report the fastest of each "+
		"(for a busy machine)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (binary, pipeline files, capture logs)")
	flag.StringVar(&o.logLevel, "log-level", "warn", "capture's log level (info shows how long each streamed transaction's commit took; with -keep)")
	flag.IntVar(&o.maxInFlight, "max-in-flight", 0, "capture's source.postgres.max_in_flight (0: its default)")
	flag.StringVar(&o.bin, "bin", "", "run this backflow binary instead of building ./cmd/backflow")
	flag.DurationVar(&o.statusInterval, "status-interval", 100*time.Millisecond, "capture's source.postgres.status_interval")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
	flag.Parse()
	if o.rows < 1 || o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "bench: -rows and -rounds must be at least 1")
		os.Exit(2)
	}
	child.Main(o.timeout, func(ctx context.Context) error { return run(ctx, o) })
}

// result is one mode's figures.
type result struct {
	elapsed time.Duration // from COMMIT returning until the topic holds every row
	sent    time.Duration // from COMMIT returning until PostgreSQL had sent the transaction
	insert  time.Duration // the INSERT and COMMIT
	peakRSS int64         // bytes
}

func run(ctx context.Context, o options) error {
	work, bin, cleanup, err := child.Setup(ctx, "backflow-bigtx-", o.keep, o.bin)
	if err != nil {
		return err
	}
	defer cleanup()
	child.Progress("starting PostgreSQL")
	pg, err := testenv.StartPostgres(ctx, testenv.PGConf("max_wal_size", "8GB"), testenv.PGConf("autovacuum", "off"))
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	defer pg.Close()
	conn, err := pg.Connect(ctx, "postgres")
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `CREATE TABLE public.bigtx (
		id bigint PRIMARY KEY, sku text NOT NULL, qty int NOT NULL, price numeric(10,2) NOT NULL,
		updated_at timestamptz NOT NULL DEFAULT now());
		CREATE PUBLICATION backflow FOR TABLE public.bigtx`); err != nil {
		return fmt.Errorf("create table and publication: %w", err)
	}
	var streaming, proto1 result
	for i := range o.rounds {
		first := int64(2*i) * int64(o.rows) // each transaction inserts ids of its own
		s, err := measure(ctx, pg, conn, bin, work, "on", i+1, first, o)
		if err != nil {
			return fmt.Errorf("streaming on: %w", err)
		}
		p, err := measure(ctx, pg, conn, bin, work, "off", i+1, first+int64(o.rows), o)
		if err != nil {
			return fmt.Errorf("streaming off: %w", err)
		}
		streaming, proto1 = faster(streaming, s), faster(proto1, p)
	}
	fmt.Printf("RESULT bigtx streaming_s=%.2f proto1_s=%.2f ratio=%.2f rss_mb=%.1f proto1_rss_mb=%.1f rows=%d rounds=%d "+
		"streaming_insert_s=%.2f proto1_insert_s=%.2f streaming_sent_s=%.2f proto1_sent_s=%.2f\n",
		streaming.elapsed.Seconds(), proto1.elapsed.Seconds(), proto1.elapsed.Seconds()/streaming.elapsed.Seconds(),
		mb(streaming.peakRSS), mb(proto1.peakRSS), o.rows, o.rounds, streaming.insert.Seconds(), proto1.insert.Seconds(),
		streaming.sent.Seconds(), proto1.sent.Seconds())
	return nil
}

// faster returns the faster of two measurements, with the higher peak RSS of the two; a zero
// measurement counts as slowest.
func faster(a, b result) result {
	peak := max(a.peakRSS, b.peakRSS)
	if a.elapsed != 0 && a.elapsed <= b.elapsed {
		b = a
	}
	b.peakRSS = peak
	return b
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// measure runs capture with source.postgres.streaming set to mode on a slot of its own, inserts
// o.rows rows from id first+1 in one transaction, and times the rows' arrival after the commit.
func measure(ctx context.Context, pg *testenv.Postgres, conn *pgx.Conn, bin, work, mode string, round int, first int64, o options) (result, error) {
	var res result
	kf, err := testenv.StartKafka()
	if err != nil {
		return res, fmt.Errorf("start kafka: %w", err)
	}
	defer kf.Close()
	slot := fmt.Sprintf("bigtx_%s%d", mode, round)
	cfgPath := filepath.Join(work, slot+".yaml")
	if err := os.WriteFile(cfgPath, []byte(pipelineYAML(pg.URL("postgres"), kf.Addr(), slot, mode, work, o)), 0o600); err != nil {
		return res, fmt.Errorf("write pipeline file: %w", err)
	}
	p, err := child.Start("backflow capture", exec.Command(bin, "capture", "-c", cfgPath), filepath.Join(work, slot+".log"))
	if err != nil {
		return res, err
	}
	defer p.Kill()
	child.Progress("streaming %s: backflow capture (pid %d) on slot %s", mode, p.PID(), slot)
	if err := waitActive(ctx, conn, p, slot); err != nil {
		return res, err
	}
	cl, err := kgo.NewClient(append(child.PollOpts(), kgo.SeedBrokers(kf.Brokers()...))...)
	if err != nil {
		return res, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	// One row first, off the clock: the topic, its schema and the client's metadata are there
	// before the transaction, in both modes.
	if _, err := conn.Exec(ctx, `INSERT INTO public.bigtx (id, sku, qty, price) VALUES ($1, 'warm-up', 0, 0)`, -first-1); err != nil {
		return res, fmt.Errorf("warm-up row: %w", err)
	}
	if err := child.WaitRecords(ctx, p, adm, topic, 1, 20*time.Millisecond); err != nil {
		return res, err
	}

	child.Progress("streaming %s: inserting %d rows in one transaction", mode, o.rows)
	t0 := time.Now()
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO public.bigtx (id, sku, qty, price)
			SELECT g, 'SKU-' || lpad(g::text, 8, '0'), (g % 500)::int, (g % 10000) / 100.0 + 0.99
			FROM generate_series($1::bigint, $2::bigint) g`, first+1, first+int64(o.rows))
		return err
	})
	if err != nil {
		return res, fmt.Errorf("insert: %w", err)
	}
	committed := time.Now()
	res.insert = committed.Sub(t0)
	child.Progress("streaming %s: committed after %s; waiting for %d records", mode, res.insert.Round(time.Millisecond), o.rows)
	sent, err := waitSent(ctx, conn, p, slot)
	if err != nil {
		return res, err
	}
	res.sent = sent.Sub(committed)
	if err := child.WaitRecords(ctx, p, adm, topic, int64(o.rows)+1, 20*time.Millisecond); err != nil {
		return res, err
	}
	res.elapsed = time.Since(committed)
	hwm := p.VmHWM()
	if err := p.Stop(); err != nil {
		return res, err
	}
	res.peakRSS = max(hwm, p.MaxRSS())
	child.Progress("streaming %s: PostgreSQL had sent it %s after the commit, every row on the topic %s after; peak RSS %.1f MB",
		mode, res.sent.Round(time.Millisecond), res.elapsed.Round(time.Millisecond), mb(res.peakRSS))
	return res, dropSlot(ctx, conn, slot)
}

// waitSent waits until the WAL sender of slot has sent everything flushed so far (the
// transaction just committed): its sent_lsn, which a logical WAL sender moves past a record once
// it has decoded it and sent what it produced. It returns when it saw that.
func waitSent(ctx context.Context, conn *pgx.Conn, p *child.Proc, slot string) (time.Time, error) {
	var flushed string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan(&flushed); err != nil {
		return time.Time{}, fmt.Errorf("flush position: %w", err)
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("waiting for slot %s to send %s: %w", slot, flushed, ctx.Err())
		case <-p.Exited():
			return time.Time{}, fmt.Errorf("%s exited early (%v); log tail:\n%s", p.Name, p.Err(), p.LogTail())
		case <-tick.C:
		}
		var sent bool
		err := conn.QueryRow(ctx, `SELECT coalesce(r.sent_lsn >= $2::pg_lsn, false)
			FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
			WHERE s.slot_name = $1`, slot, flushed).Scan(&sent)
		if err != nil {
			return time.Time{}, fmt.Errorf("poll slot %s: %w", slot, err)
		}
		if sent {
			return time.Now(), nil
		}
	}
}

// dropSlot drops a slot once its WAL sender has gone: it would hold WAL for the next run.
func dropSlot(ctx context.Context, conn *pgx.Conn, slot string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var active bool
		if err := conn.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active); err != nil {
			return fmt.Errorf("slot %s: %w", slot, err)
		}
		if !active {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("slot %s still active 30s after capture stopped", slot)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot); err != nil {
		return fmt.Errorf("drop slot %s: %w", slot, err)
	}
	return nil
}

func pipelineYAML(pgURL, broker, slot, mode, work string, o options) string {
	return fmt.Sprintf(`source:
  postgres:
    url: %q
    slot: %s
    publication: %s
    tables: [%s]
    snapshot: never
    status_interval: %s
    streaming: %s
    spill_dir: %q%s
kafka:
  brokers: [%q]
  topic_prefix: %s
  format: avro
  topics: {partitions: 6, replication_factor: 1}
data_dir: %q
log:
  format: json
  level: %s
`, pgURL, slot, publication, table, o.statusInterval, mode, filepath.Join(work, "spill"), maxInFlight(o), broker, topicPrefix,
		filepath.Join(work, slot+"-data"), o.logLevel)
}

// maxInFlight is the pipeline line of -max-in-flight, if set.
func maxInFlight(o options) string {
	if o.maxInFlight <= 0 {
		return ""
	}
	return fmt.Sprintf("\n    max_in_flight: %d", o.maxInFlight)
}

// waitActive waits until capture streams from its slot: changes made before are not its.
func waitActive(ctx context.Context, conn *pgx.Conn, p *child.Proc, slot string) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for capture on slot %s: %w", slot, ctx.Err())
		case <-p.Exited():
			return fmt.Errorf("%s exited early (%v); log tail:\n%s", p.Name, p.Err(), p.LogTail())
		case <-tick.C:
		}
		var active bool
		err := conn.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("poll slot %s: %w", slot, err)
		}
		if active {
			return nil
		}
	}
}
