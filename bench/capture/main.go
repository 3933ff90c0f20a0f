// Command capture benchmarks `backflow capture` draining a prefilled backlog of row changes from a
// replication slot into Kafka, side by side with pg_recvlogical draining the same backlog with
// pgoutput to /dev/null (see the README, "Benchmarks").
//
// One run: start a throwaway PostgreSQL, create public.bench, the publication and a template slot,
// prefill -changes row changes (60% inserts, 30% updates, 10% deletes), then drain a copy of the
// template slot with pg_recvlogical (timed from start to exit at the end LSN), and another copy
// with the backflow binary as a child process writing to a kfake broker in this process (timed
// from start until the slot's confirmed position reaches the end LSN; the topic must then hold
// every change plus a tombstone per delete). With -rounds N both drain N times, alternately, and
// the fastest of each counts. The last line printed (to stdout) is
//
//	RESULT capture rows_per_s=… peak_rss_mb=… ratio_vs_pg_recvlogical=… …
//
// with, besides: cpu_s (capture's CPU time), walsender_cpu_s (the WAL sender serving it),
// broker_cpu_s (this process, i.e. kfake), and the same for pg_recvlogical. Progress goes to
// stderr.
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
	table       = "public.bench"
	publication = "backflow"
	topicPrefix = "backflow"
	topic       = topicPrefix + "." + table
	tmplSlot    = "tmpl"
	recvSlot    = "recv"     // round 2 on: recv2, …
	captureSlot = "backflow" // round 2 on: backflow2, …
)

type options struct {
	changes        int
	txnSize        int
	keep           bool
	bin            string
	rounds         int
	statusInterval time.Duration
	timeout        time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.changes, "changes", 1_000_000, "row changes in the backlog (60% inserts, 30% updates, 10% deletes)")
	flag.IntVar(&o.txnSize, "txn", 5000, "row changes per prefill transaction")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (binary, pipeline file, capture log) and the PostgreSQL data directory")
	flag.StringVar(&o.bin, "bin", "", "run this backflow binary instead of building ./cmd/backflow")
	flag.IntVar(&o.rounds, "rounds", 1, "drain the backlog this many times with each consumer, alternately, and report the fastest of each "+
		"(for a busy machine)")
	flag.DurationVar(&o.statusInterval, "status-interval", 100*time.Millisecond,
		"capture's source.postgres.status_interval: how late the slot shows progress, hence the timing resolution")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
	flag.Parse()
	if o.changes < 10 || o.txnSize < 10 || o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "bench: -changes and -txn must be at least 10, -rounds at least 1")
		os.Exit(2)
	}
	child.Main(o.timeout, func(ctx context.Context) error { return run(ctx, o) })
}

func run(ctx context.Context, o options) error {
	work, bin, cleanup, err := child.Setup(ctx, "backflow-bench-", o.keep, o.bin)
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

	bl, err := prepareBacklog(ctx, conn, o)
	if err != nil {
		return err
	}
	recv, bf, err := drainRounds(ctx, pg, conn, bin, work, bl, o)
	if err != nil {
		return err
	}
	printResult(bl, o.rounds, recv, bf)
	return nil
}

func startPostgres(ctx context.Context, work string, keep bool) (*testenv.Postgres, error) {
	opts := []testenv.PGOpt{
		testenv.PGAsyncCommit(),
		testenv.PGConf("max_wal_size", "8GB"),
		testenv.PGConf("checkpoint_timeout", "30min"),
		testenv.PGConf("autovacuum", "off"),
	}
	if keep {
		opts = append(opts, testenv.PGDir(filepath.Join(work, "postgres")))
	}
	child.Progress("starting PostgreSQL")
	pg, err := testenv.StartPostgres(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	return pg, nil
}

// backlog is what the prefill left in the template slot.
type backlog struct {
	changes, inserts, updates, deletes int
	startLSN, endLSN                   string
	prefill                            time.Duration
}

// records is what the backlog becomes on the topic: every delete is followed by a tombstone.
func (b backlog) records() int64 { return int64(b.changes + b.deletes) }

const schemaSQL = `
CREATE TABLE public.bench (
	id bigint PRIMARY KEY, sku text NOT NULL, qty int NOT NULL, price numeric(10,2) NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now());
CREATE PUBLICATION backflow FOR TABLE public.bench;`

// prepareBacklog creates the table, the publication and the template slot, then prefills.
func prepareBacklog(ctx context.Context, conn *pgx.Conn, o options) (backlog, error) {
	var bl backlog
	if _, err := conn.Exec(ctx, schemaSQL); err != nil {
		return bl, fmt.Errorf("create table and publication: %w", err)
	}
	err := conn.QueryRow(ctx, "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", tmplSlot).Scan(&bl.startLSN)
	if err != nil {
		return bl, fmt.Errorf("create template slot: %w", err)
	}
	child.Progress("prefilling %d changes in transactions of %d", o.changes, o.txnSize)
	t0 := time.Now()
	if err := prefill(ctx, conn, o, &bl); err != nil {
		return bl, err
	}
	if bl.endLSN, err = endLSN(ctx, conn); err != nil {
		return bl, err
	}
	bl.prefill = time.Since(t0)
	child.Progress("prefill: %d inserts, %d updates, %d deletes in %s; WAL %s..%s (%s)", bl.inserts, bl.updates, bl.deletes,
		bl.prefill.Round(time.Millisecond), bl.startLSN, bl.endLSN, walSize(ctx, conn, bl))
	return bl, nil
}

// endLSN returns the flushed WAL position, which the last prefill transaction (committed
// synchronously) has pushed past its commit: the end of the backlog.
func endLSN(ctx context.Context, conn *pgx.Conn) (string, error) {
	var lsn string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan(&lsn); err != nil {
		return "", fmt.Errorf("read end LSN: %w", err)
	}
	return lsn, nil
}

func walSize(ctx context.Context, conn *pgx.Conn, bl backlog) string {
	var s string
	if err := conn.QueryRow(ctx, "SELECT pg_size_pretty(pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn))", bl.endLSN, bl.startLSN).Scan(&s); err != nil {
		return "size unknown"
	}
	return s
}

// prefill writes the changes in transactions of o.txnSize: each inserts new ids, deletes the
// oldest live ids and updates the live ids right after them, so every statement hits exactly the
// rows it is meant to.
func prefill(ctx context.Context, conn *pgx.Conn, o options, bl *backlog) error {
	nextID, oldest := int64(1), int64(1) // ids [oldest, nextID) are live
	for done := 0; done < o.changes; {
		size := min(o.txnSize, o.changes-done)
		ins := size * 6 / 10
		upd := size * 3 / 10
		del := size - ins - upd
		last := done+size == o.changes
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if err := syncCommit(ctx, tx, last); err != nil {
				return err
			}
			if err := execN(ctx, tx, ins, `INSERT INTO public.bench (id, sku, qty, price)
				SELECT g, 'SKU-' || lpad(g::text, 8, '0'), (g % 500)::int, (g % 10000) / 100.0 + 0.99
				FROM generate_series($1::bigint, $2::bigint) g`, nextID, nextID+int64(ins)-1); err != nil {
				return fmt.Errorf("insert: %w", err)
			}
			if err := execN(ctx, tx, del, `DELETE FROM public.bench WHERE id BETWEEN $1 AND $2`,
				oldest, oldest+int64(del)-1); err != nil {
				return fmt.Errorf("delete: %w", err)
			}
			if err := execN(ctx, tx, upd, `UPDATE public.bench SET qty = qty + 1, price = price + 0.01, updated_at = now()
				WHERE id BETWEEN $1 AND $2`, oldest+int64(del), oldest+int64(del+upd)-1); err != nil {
				return fmt.Errorf("update: %w", err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("prefill transaction at change %d: %w", done, err)
		}
		nextID += int64(ins)
		oldest += int64(del)
		bl.inserts, bl.updates, bl.deletes = bl.inserts+ins, bl.updates+upd, bl.deletes+del
		done += size
	}
	bl.changes = o.changes
	return nil
}

// syncCommit makes the transaction commit synchronously when it is the last one, so that all the
// WAL of the (asynchronously committed) prefill is flushed and consumers need not wait for the
// WAL writer.
func syncCommit(ctx context.Context, tx pgx.Tx, last bool) error {
	if !last {
		return nil
	}
	if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = on"); err != nil {
		return fmt.Errorf("synchronous commit: %w", err)
	}
	return nil
}

// execN runs a statement that must touch exactly n rows (nothing when n is 0).
func execN(ctx context.Context, tx pgx.Tx, n int, sql string, lo, hi int64) error {
	if n == 0 {
		return nil
	}
	tag, err := tx.Exec(ctx, sql, lo, hi)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != int64(n) {
		return fmt.Errorf("touched %d rows, want %d", tag.RowsAffected(), n)
	}
	return nil
}

// drainRounds drains the backlog o.rounds times with each consumer, alternately, each time from
// a fresh copy of the template slot, and returns the fastest drain of each (with the highest
// peak RSS of capture).
func drainRounds(ctx context.Context, pg *testenv.Postgres, conn *pgx.Conn, bin, work string, bl backlog, o options) (recv, bf drain, err error) {
	var peak int64
	for i := 1; i <= o.rounds; i++ {
		r, err := recvlogical(ctx, pg, conn, bl, work, roundSlot(recvSlot, i))
		if err != nil {
			return recv, bf, err
		}
		b, err := runCapture(ctx, pg, conn, bin, work, bl, roundSlot(captureSlot, i), o)
		if err != nil {
			return recv, bf, err
		}
		recv, bf = faster(recv, r), faster(bf, b)
		peak = max(peak, b.peakRSS)
	}
	bf.peakRSS = peak
	return recv, bf, nil
}

func roundSlot(base string, round int) string {
	if round == 1 {
		return base
	}
	return fmt.Sprint(base, round)
}

// faster returns the faster drain of a and b; a zero drain counts as slowest.
func faster(a, b drain) drain {
	if a.elapsed == 0 || b.elapsed < a.elapsed {
		return b
	}
	return a
}

func copySlot(ctx context.Context, conn *pgx.Conn, name string) error {
	if _, err := conn.Exec(ctx, "SELECT pg_copy_logical_replication_slot($1, $2)", tmplSlot, name); err != nil {
		return fmt.Errorf("copy slot %s to %s: %w", tmplSlot, name, err)
	}
	return nil
}

// drain is one consumer's figures.
type drain struct {
	elapsed   time.Duration
	cpu       time.Duration // user + system time of the consumer process
	walsender time.Duration // CPU time of the WAL sender serving it (sampled, may miss the last 50 ms)
	broker    time.Duration // CPU time of this process (the in-process kfake broker) meanwhile
	peakRSS   int64         // bytes; 0 when not measured
}

func (d drain) rowsPerS(changes int) float64 { return float64(changes) / d.elapsed.Seconds() }

// recvlogical drains a copy of the template slot with pg_recvlogical up to the end LSN.
func recvlogical(ctx context.Context, pg *testenv.Postgres, conn *pgx.Conn, bl backlog, work, slot string) (drain, error) {
	if err := copySlot(ctx, conn, slot); err != nil {
		return drain{}, err
	}
	cmd := exec.Command(filepath.Join(pg.BinDir(), "pg_recvlogical"),
		"-d", pg.URL("postgres"), "--slot", slot, "--start",
		"-o", "proto_version=1", "-o", "publication_names="+publication,
		"-E", bl.endLSN, "--no-loop", "-f", "/dev/null")
	p, err := child.Start("pg_recvlogical", cmd, filepath.Join(work, slot+".log"))
	if err != nil {
		return drain{}, err
	}
	defer p.Kill()
	child.Progress("pg_recvlogical: draining slot %s up to %s", slot, bl.endLSN)
	d, err := watch(ctx, conn, p, bl, slot, true)
	if err != nil {
		return drain{}, err
	}
	if p.Err() != nil {
		return drain{}, fmt.Errorf("pg_recvlogical: %w\n%s", p.Err(), p.LogTail())
	}
	d.cpu = p.CPU()
	child.Progress("pg_recvlogical: %s, %.0f rows/s, cpu %s, WAL sender cpu %s", d.elapsed.Round(time.Millisecond),
		d.rowsPerS(bl.changes), d.cpu.Round(time.Millisecond), d.walsender.Round(time.Millisecond))
	return d, nil
}

// runCapture drains a copy of the template slot with `backflow capture` into a kfake broker
// running in this process (so the child's RSS is capture's alone), timed until the slot's
// confirmed position reaches the end LSN.
func runCapture(ctx context.Context, pg *testenv.Postgres, conn *pgx.Conn, bin, work string, bl backlog, slot string, o options) (drain, error) {
	if err := copySlot(ctx, conn, slot); err != nil {
		return drain{}, err
	}
	kf, err := testenv.StartKafka()
	if err != nil {
		return drain{}, fmt.Errorf("start kafka: %w", err)
	}
	defer kf.Close()
	cfgPath := filepath.Join(work, slot+".yaml")
	if err := os.WriteFile(cfgPath, []byte(pipelineYAML(pg.URL("postgres"), kf.Addr(), slot, work, o)), 0o600); err != nil {
		return drain{}, fmt.Errorf("write pipeline file: %w", err)
	}
	p, err := child.Start("backflow capture", exec.Command(bin, "capture", "-c", cfgPath), filepath.Join(work, slot+".log"))
	if err != nil {
		return drain{}, err
	}
	defer p.Kill()
	child.Progress("backflow capture (pid %d): draining slot %s into %s", p.PID(), slot, kf.Addr())
	d, err := watch(ctx, conn, p, bl, slot, false)
	if err != nil {
		return drain{}, err
	}
	hwm := p.VmHWM()
	if err := p.Stop(); err != nil {
		return drain{}, err
	}
	d.cpu, d.peakRSS = p.CPU(), max(hwm, p.MaxRSS())
	child.Progress("backflow capture: %s, %.0f rows/s, cpu %s, WAL sender cpu %s, broker cpu %s, peak RSS %.1f MB",
		d.elapsed.Round(time.Millisecond), d.rowsPerS(bl.changes), d.cpu.Round(time.Millisecond),
		d.walsender.Round(time.Millisecond), d.broker.Round(time.Millisecond), float64(d.peakRSS)/(1<<20))
	return d, verifyTopic(ctx, kf.Brokers(), bl)
}

func pipelineYAML(pgURL, broker, slot, work string, o options) string {
	return fmt.Sprintf(`source:
  postgres:
    url: %q
    slot: %s
    publication: %s
    tables: [%s]
    snapshot: never
    status_interval: %s
kafka:
  brokers: [%q]
  topic_prefix: %s
  format: avro
  topics: {partitions: 6, replication_factor: 1}
data_dir: %q
log:
  format: json
  level: warn
`, pgURL, slot, publication, table, o.statusInterval, broker, topicPrefix, filepath.Join(work, slot+"-data"))
}

// watch polls the slot every 50 ms until p exits (untilExit, for pg_recvlogical, which stops at
// the end LSN) or until the slot's confirmed position reaches the end LSN (capture, which then
// must still be running). It samples the WAL sender's CPU time and this process's meanwhile.
func watch(ctx context.Context, conn *pgx.Conn, p *child.Proc, bl backlog, slot string, untilExit bool) (drain, error) {
	var d drain
	self0 := child.SelfCPU()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	lastReport := time.Now()
	for {
		select {
		case <-ctx.Done():
			return d, fmt.Errorf("waiting for slot %s to reach %s: %w", slot, bl.endLSN, ctx.Err())
		case <-p.Exited():
			if !untilExit {
				return d, fmt.Errorf("%s exited early (%v); log tail:\n%s", p.Name, p.Err(), p.LogTail())
			}
			d.elapsed, d.broker = p.Ended().Sub(p.Started), child.SelfCPU()-self0
			return d, nil
		case <-tick.C:
		}
		st, err := pollSlot(ctx, conn, bl, slot)
		if err != nil {
			return d, err
		}
		d.walsender = max(d.walsender, st.walsenderCPU)
		if st.done && !untilExit {
			d.elapsed, d.broker = time.Since(p.Started), child.SelfCPU()-self0
			return d, nil
		}
		if !untilExit && time.Since(lastReport) >= 5*time.Second { // pg_recvlogical confirms only every 10 s
			child.Progress("%s: %.0f%% of the backlog confirmed after %s", p.Name, 100*st.confirmed, time.Since(p.Started).Round(time.Second))
			lastReport = time.Now()
		}
	}
}

type slotState struct {
	done         bool    // confirmed position at or past the end LSN
	confirmed    float64 // fraction of the backlog's WAL confirmed
	walsenderCPU time.Duration
}

func pollSlot(ctx context.Context, conn *pgx.Conn, bl backlog, slot string) (slotState, error) {
	var st slotState
	var pid *int32
	err := conn.QueryRow(ctx, `SELECT confirmed_flush_lsn >= $2::pg_lsn,
		pg_wal_lsn_diff(confirmed_flush_lsn, $1::pg_lsn) / pg_wal_lsn_diff($2::pg_lsn, $1::pg_lsn), active_pid
		FROM pg_replication_slots WHERE slot_name = $3`, bl.startLSN, bl.endLSN, slot).Scan(&st.done, &st.confirmed, &pid)
	if err != nil {
		return st, fmt.Errorf("poll slot %s: %w", slot, err)
	}
	if pid != nil {
		st.walsenderCPU = child.ProcCPU(int(*pid))
	}
	return st, nil
}

// verifyTopic checks that the topic holds every change plus a tombstone per delete.
func verifyTopic(ctx context.Context, brokers []string, bl backlog) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	var n int64
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", o.Topic, o.Partition, o.Err))
			return
		}
		s, _ := starts.Lookup(o.Topic, o.Partition)
		n += o.Offset - s.Offset
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("end offsets: %w", err)
	}
	child.Progress("topic %s holds %d records (want at least %d: %d changes + %d tombstones)", topic, n, bl.records(), bl.changes, bl.deletes)
	if n < bl.records() {
		return fmt.Errorf("topic %s holds %d records, want at least %d", topic, n, bl.records())
	}
	return nil
}

func printResult(bl backlog, rounds int, recv, bf drain) {
	bfRate, recvRate := bf.rowsPerS(bl.changes), recv.rowsPerS(bl.changes)
	fmt.Printf("RESULT capture rows_per_s=%.0f peak_rss_mb=%.1f ratio_vs_pg_recvlogical=%.3f changes=%d records=%d seconds=%.2f "+
		"cpu_s=%.2f walsender_cpu_s=%.2f broker_cpu_s=%.2f recvlogical_rows_per_s=%.0f recvlogical_seconds=%.2f "+
		"recvlogical_cpu_s=%.2f recvlogical_walsender_cpu_s=%.2f rounds=%d prefill_s=%.1f\n",
		bfRate, float64(bf.peakRSS)/(1<<20), bfRate/recvRate, bl.changes, bl.records(), bf.elapsed.Seconds(),
		bf.cpu.Seconds(), bf.walsender.Seconds(), bf.broker.Seconds(), recvRate, recv.elapsed.Seconds(),
		recv.cpu.Seconds(), recv.walsender.Seconds(), rounds, bl.prefill.Seconds())
}
