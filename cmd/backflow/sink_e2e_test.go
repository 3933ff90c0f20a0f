package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// e2e is a source warehouse, a target database, a broker and a pipeline file for both processes.
type e2e struct {
	t      *testing.T
	bin    string
	src    *testenv.Postgres
	dst    *testenv.Postgres
	kf     *testenv.Kafka
	config string
}

const targetDDL = `CREATE TABLE public.w_copy (id int PRIMARY KEY, v int NOT NULL CHECK (v >= 0), src_lsn bigint);
	-- every row version the sink writes, to prove nothing is applied twice
	CREATE TABLE public.applied (id int, v int);
	CREATE FUNCTION log_applied() RETURNS trigger LANGUAGE plpgsql AS
		$$ BEGIN INSERT INTO public.applied VALUES (NEW.id, NEW.v); RETURN NEW; END $$;
	CREATE TRIGGER w_copy_applied AFTER INSERT OR UPDATE ON public.w_copy FOR EACH ROW EXECUTE FUNCTION log_applied();`

func newE2E(t *testing.T) *e2e { return newE2EWith(t, "version_column: src_lsn") }

// newE2EWith is newE2E with extra keys in the sink's block (e.g. its version column, or none).
func newE2EWith(t *testing.T, sinkExtra string) *e2e {
	e := &e2e{t: t, bin: buildBinary(t), src: testenv.NewPostgres(t), dst: testenv.NewPostgres(t), kf: testenv.NewKafka(t)}
	ctx := context.Background()
	if err := e.src.Exec(ctx, `CREATE TABLE public.w (id int PRIMARY KEY, v int NOT NULL); ALTER TABLE public.w REPLICA IDENTITY FULL`); err != nil {
		t.Fatal(err)
	}
	if err := e.dst.Exec(ctx, targetDDL); err != nil {
		t.Fatal(err)
	}
	e.config = writeConfig(t, pipelineYAML(e.src.URL("postgres"), e.kf.Brokers(), fmt.Sprintf(`sinks:
  - name: w-copy
    from: [public.w]
    connector: postgres
    with: {url: "%s", table: public.w_copy}
    key: [id]
    map: {id: after.id, v: after.v}
    batch: {max_records: 500, max_wait: 20ms}
    %s
`, e.dst.URL("postgres"), sinkExtra)))
	return e
}

func (e *e2e) start(what string) *process {
	return startProcess(e.t, e.bin, what, "-c", e.config)
}

// lag returns how many records of public.w's topic the sink's group has not committed yet.
func (e *e2e) lag() int64 {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kf.Brokers()...))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	ends, err := adm.ListEndOffsets(ctx, "wh.public.w")
	if err != nil {
		return -1
	}
	committed, err := adm.FetchOffsets(ctx, "w-copy")
	if err != nil {
		return -1
	}
	var lag int64
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := committed.Lookup(o.Topic, o.Partition)
		at := int64(0)
		if ok {
			at = c.At
		}
		lag += o.Offset - at
	})
	return lag
}

// group describes the sink's consumer group: its state and each member's partitions.
func (e *e2e) group() string {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kf.Brokers()...))
	if err != nil {
		return err.Error()
	}
	defer cl.Close()
	described, err := kadm.NewClient(cl).DescribeGroups(context.Background(), "w-copy")
	if err != nil {
		return err.Error()
	}
	g := described["w-copy"]
	out := fmt.Sprintf("state %s, %d member(s)", g.State, len(g.Members))
	for _, m := range g.Members {
		var assigned []string
		if c, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range c.Topics {
				assigned = append(assigned, fmt.Sprintf("%s%v", t.Topic, t.Partitions))
			}
		}
		out += fmt.Sprintf("; %s (%s): %v", m.MemberID, m.ClientHost, assigned)
	}
	return out
}

// positions says, for each partition of public.w's topic, its end offset, the group's committed
// offset and the next offset the target stored: where a stall comes from.
func (e *e2e) positions() string {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kf.Brokers()...))
	if err != nil {
		return err.Error()
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	ends, err := adm.ListEndOffsets(ctx, "wh.public.w")
	if err != nil {
		return err.Error()
	}
	committed, err := adm.FetchOffsets(ctx, "w-copy")
	if err != nil {
		return err.Error()
	}
	stored := rows(e.t, e.dst, "SELECT partition, next_offset FROM public.backflow_offsets WHERE sink = 'w-copy'")
	var out []string
	ends.Each(func(o kadm.ListedOffset) {
		c, _ := committed.Lookup(o.Topic, o.Partition)
		out = append(out, fmt.Sprintf("p%d end %d committed %d", o.Partition, o.Offset, c.At))
	})
	sort.Strings(out)
	return strings.Join(out, ", ") + "; target stored (partition next_offset): " + strings.Join(stored, ", ")
}

func (e *e2e) waitCaughtUp(procs ...*process) {
	e.t.Helper()
	waitSlotAt(e.t, e.src, "backflow", currentLSN(e.t, e.src), procs[0])
	deadline := time.Now().Add(3 * time.Minute)
	for e.lag() != 0 {
		if time.Now().After(deadline) {
			e.t.Fatalf("sink lag still %d after 3 minutes; group: %s; by partition: %s; sink log and goroutines:\n%s",
				e.lag(), e.group(), e.positions(), procs[len(procs)-1].dump())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (e *e2e) appliedCount() int {
	var n int
	conn, err := e.dst.Connect(context.Background(), "postgres")
	if err != nil {
		return 0
	}
	defer conn.Close(context.Background())
	_ = conn.QueryRow(context.Background(), "SELECT count(*) FROM public.applied").Scan(&n)
	return n
}

func rows(t *testing.T, pg *testenv.Postgres, query string) []string {
	t.Helper()
	conn, err := pg.Connect(context.Background(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rs, err := conn.Query(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		vals, err := rs.Values()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint(vals...))
	}
	sort.Strings(out)
	return out
}

func diff(a, b []string) string {
	in := map[string]int{}
	for _, x := range a {
		in[x]++
	}
	for _, x := range b {
		in[x]--
	}
	var d []string
	for k, n := range in {
		if n != 0 {
			d = append(d, fmt.Sprintf("%s (%+d)", k, n))
		}
		if len(d) > 10 {
			break
		}
	}
	return strings.Join(d, ", ")
}

// TestSinkConvergesAcrossKills runs capture and a PostgreSQL sink over a 100,000-change random
// workload while the sink process is SIGKILLed at several points and restarted. At the end the
// target table equals the source table row by row, and no row version was written twice (the
// offsets stored in the target make the effect exactly-once).
func TestSinkConvergesAcrossKills(t *testing.T) {
	if testing.Short() {
		t.Skip("long convergence test")
	}
	e := newE2E(t)
	capt := e.start("capture")
	snk := e.start("sink")
	w := newWorkload(100_000)
	werr := make(chan error, 1)
	go func() { werr <- w.run(context.Background(), e.src) }()
	// Each kill lands while the sink is busy applying: after it wrote some rows since its start.
	for kill := 0; kill < 5; kill++ {
		base := e.appliedCount()
		deadline := time.Now().Add(2 * time.Minute)
		for e.appliedCount() < base+2000 {
			if time.Now().After(deadline) {
				t.Fatalf("sink made no progress before kill %d; log:\n%s", kill+1, snk.tail())
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond)
		snk.kill(t)
		t.Logf("sink killed at %d changes written, %d row versions applied", w.progress(), e.appliedCount())
		snk = e.start("sink")
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	t.Logf("workload done; waiting for the sink to catch up (lag %d)", e.lag())
	e.waitCaughtUp(capt, snk)
	t.Logf("caught up")
	src := rows(t, e.src, "SELECT id, v FROM public.w")
	dst := rows(t, e.dst, "SELECT id, v FROM public.w_copy")
	if len(src) == 0 || strings.Join(src, "|") != strings.Join(dst, "|") {
		t.Fatalf("target differs from source (%d vs %d rows): %s", len(src), len(dst), diff(src, dst))
	}
	dups := rows(t, e.dst, "SELECT id, v, count(*) FROM public.applied GROUP BY id, v HAVING count(*) > 1")
	if len(dups) > 0 {
		t.Fatalf("%d row versions applied more than once, e.g. %v", len(dups), dups[:min(5, len(dups))])
	}
	t.Logf("%d rows equal after %d changes and 5 sink kills", len(src), w.progress())
}

// TestSinkBackfillSurvivesKills: an insert-only load, whose batches of created rows the postgres
// connector writes by COPY straight from the messages (no version column, a projection
// mapping), while the sink process is SIGKILLed and restarted: every row arrives, and none twice.
func TestSinkBackfillSurvivesKills(t *testing.T) {
	if testing.Short() {
		t.Skip("long convergence test")
	}
	e := newE2EWith(t, "")
	capt := e.start("capture")
	snk := e.start("sink")
	const total, perTxn = 60_000, 1000
	ins := make(chan error, 1)
	go func() {
		for from := 1; from <= total; from += perTxn {
			sql := fmt.Sprintf(`INSERT INTO public.w SELECT g, g %% 1000 FROM generate_series(%d, %d) g`, from, from+perTxn-1)
			if err := e.src.Exec(context.Background(), sql); err != nil {
				ins <- err
				return
			}
		}
		ins <- nil
	}()
	for kill := 0; kill < 3; kill++ {
		base := e.appliedCount()
		deadline := time.Now().Add(2 * time.Minute)
		for e.appliedCount() < base+5000 {
			if time.Now().After(deadline) {
				t.Fatalf("sink made no progress before kill %d; log:\n%s", kill+1, snk.tail())
			}
			time.Sleep(10 * time.Millisecond)
		}
		snk.kill(t)
		t.Logf("sink killed with %d rows applied", e.appliedCount())
		snk = e.start("sink")
	}
	if err := <-ins; err != nil {
		t.Fatal(err)
	}
	e.waitCaughtUp(capt, snk)
	src := rows(t, e.src, "SELECT id, v FROM public.w")
	dst := rows(t, e.dst, "SELECT id, v FROM public.w_copy")
	if len(src) != total || strings.Join(src, "|") != strings.Join(dst, "|") {
		t.Fatalf("target differs from source (%d vs %d rows): %s", len(src), len(dst), diff(src, dst))
	}
	dups := rows(t, e.dst, "SELECT id, v, count(*) FROM public.applied GROUP BY id, v HAVING count(*) > 1")
	if len(dups) > 0 {
		t.Fatalf("%d rows applied more than once, e.g. %v", len(dups), dups[:min(5, len(dups))])
	}
}

// TestSinkPoisonAndOutage: rows the target rejects (a CHECK constraint) land in the dead-letter
// topic with the reason while their neighbours arrive; then the target goes down, the sink's
// committed offsets stay put, and once it is back everything arrives.
func TestSinkPoisonAndOutage(t *testing.T) {
	e := newE2E(t)
	ctx := context.Background()
	capt := e.start("capture")
	snk := e.start("sink")
	if err := e.src.Exec(ctx, `INSERT INTO public.w SELECT g, CASE WHEN g % 100 = 0 THEN -g ELSE g END FROM generate_series(1, 1000) g`); err != nil {
		t.Fatal(err)
	}
	e.waitCaughtUp(capt, snk)
	if got := rows(t, e.dst, "SELECT count(*) FROM public.w_copy"); got[0] != "990" {
		t.Errorf("target has %s rows, want the 990 good ones", got[0])
	}
	dlq := readDLQ(t, e.kf.Brokers(), "w-copy")
	if len(dlq) != 10 {
		t.Fatalf("%d dead letters, want 10", len(dlq))
	}
	for _, r := range dlq {
		if reason := headerValue(r, sink.HeaderReason); !strings.Contains(reason, "check") {
			t.Errorf("dead-letter reason %q does not say the check constraint failed", reason)
		}
	}

	// Outage.
	if err := e.dst.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.src.Exec(ctx, `UPDATE public.w SET v = v + 1 WHERE v > 0`); err != nil {
		t.Fatal(err)
	}
	waitSlotAt(t, e.src, "backflow", currentLSN(t, e.src), capt)
	time.Sleep(2 * time.Second)
	lagDuring := e.lag()
	if lagDuring == 0 {
		t.Fatalf("offsets moved while the target was down")
	}
	time.Sleep(time.Second)
	if now := e.lag(); now != lagDuring {
		t.Fatalf("lag changed from %d to %d while the target was down", lagDuring, now)
	}
	if err := e.dst.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitCaughtUp(capt, snk)
	src := rows(t, e.src, "SELECT id, v FROM public.w WHERE v >= 0")
	dst := rows(t, e.dst, "SELECT id, v FROM public.w_copy")
	if strings.Join(src, "|") != strings.Join(dst, "|") {
		t.Fatalf("after the outage the target differs: %s", diff(src, dst))
	}
}

func readDLQ(t *testing.T, brokers []string, name string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := testenv.ConsumeAll(ctx, brokers, sink.DLQTopic(name))
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func headerValue(r *kgo.Record, k string) string {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

// TestSinkStartsWhileTargetDown: a target that is down when the sink starts is an outage, not a
// bad config: the sink waits for it and then applies everything.
func TestSinkStartsWhileTargetDown(t *testing.T) {
	e := newE2E(t)
	ctx := context.Background()
	if err := e.dst.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	capt := e.start("capture")
	snk := e.start("sink")
	if err := e.src.Exec(ctx, `INSERT INTO public.w SELECT g, g FROM generate_series(1, 500) g`); err != nil {
		t.Fatal(err)
	}
	waitSlotAt(t, e.src, "backflow", currentLSN(t, e.src), capt)
	time.Sleep(2 * time.Second)
	if !running(snk) {
		t.Fatalf("the sink exited while its target was down:\n%s", snk.tail())
	}
	if err := e.dst.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitCaughtUp(capt, snk)
	e.requireEqual("after the target came up")
}

// running reports whether p has not exited (an exited child stays a zombie until waited for).
func running(p *process) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// TestRunWithBadSinkExits2: a sink the connector refuses (a missing target table) stops
// `backflow run` with a usage error, capture included.
func TestRunWithBadSinkExits2(t *testing.T) {
	e := newE2E(t)
	body, _ := os.ReadFile(e.config)
	bad := writeConfig(t, strings.Replace(string(body), "table: public.w_copy", "table: public.no_such_table", 1))
	done := make(chan struct{})
	var out string
	var code int
	go func() { out, code = runBinary(t, e.bin, nil, "run", "-c", bad); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("backflow run kept running with a sink its connector refuses")
	}
	if code != 2 || !strings.Contains(out, "no_such_table") {
		t.Fatalf("exit %d, want 2 naming the table:\n%s", code, out)
	}
}
