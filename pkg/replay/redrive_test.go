package replay_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/backflow-dev/backflow/connectors/postgres"
	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/replay"
	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// One PostgreSQL server for the package's tests, started by the first test that needs it.
var (
	pgOnce sync.Once
	pgErr  error
	pg     *testenv.Postgres
	dbSeq  atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pg != nil {
		if err := pg.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv: close PostgreSQL:", err)
		}
	}
	os.Exit(code)
}

// rdHarness is a broker with a source topic written like capture writes it, a dead-letter topic
// of two partitions, and a PostgreSQL target table public.t_copy (v must not be negative).
type rdHarness struct {
	t   *testing.T
	kf  *testenv.Kafka
	cl  *kgo.Client
	enc *codec.Encoder
	tbl *change.Table
	cfg *config.Pipeline
	db  *pgx.Conn
	url string
}

const srcTopic = "wh.public.t"

func newRDHarness(t *testing.T) *rdHarness {
	t.Helper()
	pgOnce.Do(func() { pg, pgErr = testenv.StartPostgres(context.Background()) })
	if pgErr != nil {
		t.Fatalf("testenv: start PostgreSQL: %v", pgErr)
	}
	ctx := context.Background()
	name := fmt.Sprintf("rd%d_%d", os.Getpid(), dbSeq.Add(1))
	if err := pg.CreateDatabase(ctx, name); err != nil {
		t.Fatal(err)
	}
	db, err := pg.Connect(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	if _, err := db.Exec(ctx, `CREATE TABLE public.t_copy (id int PRIMARY KEY, v int CHECK (v >= 0), note text)`); err != nil {
		t.Fatal(err)
	}
	kf := testenv.NewKafka(t)
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(kf.Brokers()...)}, append(kafka.ProducerOpts(),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	topics := config.Topics{Partitions: 1, ReplicationFactor: 1, CleanupPolicy: "compact"}
	if err := kafka.EnsureTopics(ctx, adm, []string{srcTopic, "wh._schemas"}, topics, nil); err != nil {
		t.Fatal(err)
	}
	dlqTopics := config.Topics{Partitions: 2, ReplicationFactor: 1, CleanupPolicy: "delete"}
	if err := kafka.EnsureTopics(ctx, adm, []string{sink.DLQTopic("s1")}, dlqTopics, nil); err != nil {
		t.Fatal(err)
	}
	enc, err := codec.NewEncoder(codec.TopicPrefix("wh"), codec.SchemaPublisher(func(ctx context.Context, fp uint64, schema []byte) error {
		return cl.ProduceSync(ctx, &kgo.Record{Topic: "wh._schemas", Key: codec.FingerprintKey(fp), Value: schema}).FirstErr()
	}))
	if err != nil {
		t.Fatal(err)
	}
	tbl := &change.Table{Schema: "public", Name: "t", Columns: []change.Column{
		{Name: "id", Kind: change.KindInt32, Key: true}, {Name: "v", Kind: change.KindInt32}, {Name: "note", Kind: change.KindString},
	}}
	cfg := &config.Pipeline{Kafka: config.Kafka{Brokers: kf.Brokers(), TopicPrefix: "wh", Format: "avro", Topics: topics}}
	return &rdHarness{t: t, kf: kf, cl: cl, enc: enc, tbl: tbl, cfg: cfg, db: db, url: pg.URL(name)}
}

// record is an update of row id to v, for the source topic.
func (h *rdHarness) record(id, v int32) *kgo.Record {
	h.t.Helper()
	ev := &change.Event{Op: change.OpUpdate, Table: h.tbl, After: change.Row{"id": id, "v": v, "note": "n"}}
	key, val, err := h.enc.Encode(context.Background(), srcTopic, ev)
	if err != nil {
		h.t.Fatal(err)
	}
	return &kgo.Record{Topic: srcTopic, Key: key, Value: val}
}

// produce writes an update of row id to the source topic and returns it with its offset.
func (h *rdHarness) produce(id, v int32) *kgo.Record {
	h.t.Helper()
	rec := h.record(id, v)
	if err := h.cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
	return rec
}

// deadLetter writes src to the dead-letter topic as the sink does (dlq.go), into DLQ partition p.
func (h *rdHarness) deadLetter(src *kgo.Record, p int32, reason string, at time.Time) {
	h.t.Helper()
	hd := func(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
	rec := &kgo.Record{Topic: sink.DLQTopic("s1"), Partition: p, Key: src.Key, Value: src.Value, Headers: []kgo.RecordHeader{
		hd(sink.HeaderReason, reason), hd(sink.HeaderSink, "s1"), hd(sink.HeaderTopic, src.Topic),
		hd(sink.HeaderPartition, strconv.Itoa(int(src.Partition))), hd(sink.HeaderOffset, strconv.FormatInt(src.Offset, 10)),
		hd(sink.HeaderTime, at.UTC().Format(time.RFC3339Nano)),
	}}
	if err := h.cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}

// lostLetter writes the dead letter a sink writes for records Kafka deleted before it applied
// them: no key, no value, the range in its headers.
func (h *rdHarness) lostLetter(p int32, from, to int64, at time.Time) {
	h.t.Helper()
	hd := func(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
	rec := &kgo.Record{Topic: sink.DLQTopic("s1"), Partition: p, Headers: []kgo.RecordHeader{
		hd(sink.HeaderReason, "records deleted from Kafka"), hd(sink.HeaderSink, "s1"), hd(sink.HeaderTopic, srcTopic),
		hd(sink.HeaderPartition, "0"), hd(sink.HeaderOffset, strconv.FormatInt(from, 10)),
		hd(sink.HeaderLostTo, strconv.FormatInt(to, 10)), hd(sink.HeaderTime, at.UTC().Format(time.RFC3339Nano)),
	}}
	if err := h.cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *rdHarness) exec(sql string) {
	h.t.Helper()
	if _, err := h.db.Exec(context.Background(), sql); err != nil {
		h.t.Fatalf("%s: %v", sql, err)
	}
}

// rows returns the target's rows as "id=v", by id.
func (h *rdHarness) rows() string {
	h.t.Helper()
	rs, err := h.db.Query(context.Background(), `SELECT id, v FROM public.t_copy ORDER BY id`)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for rs.Next() {
		var id, v int32
		if err := rs.Scan(&id, &v); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d=%d", id, v))
	}
	if err := rs.Err(); err != nil {
		h.t.Fatal(err)
	}
	return strings.Join(out, " ")
}

// replayEarliest runs a replay from earliest of sink sc into the target.
func (h *rdHarness) replayEarliest(ctx context.Context, sc config.Sink) error {
	h.t.Helper()
	log := zaptest.NewLogger(h.t)
	from, err := replay.ParseFrom("earliest")
	if err != nil {
		h.t.Fatal(err)
	}
	s, err := sink.New(ctx, h.cfg, sc, map[string]sink.Factory{"postgres": postgres.New}, sink.WithLogger(log),
		sink.WithOffsetName(replay.GroupName(sc.Name, from)))
	if err != nil {
		h.t.Fatal(err)
	}
	defer s.Close()
	if err := s.Prepare(ctx); err != nil {
		h.t.Fatal(err)
	}
	adm := kadm.NewClient(h.cl)
	plan, err := replay.NewPlan(ctx, adm, s, from)
	if err != nil {
		h.t.Fatal(err)
	}
	_, err = replay.Run(ctx, s, adm, plan, replay.NewProgress(plan.Total(), false, nil, log, "replay"), log)
	return err
}

// redrive runs a re-drive of sink s1 into the target with opts.
func (h *rdHarness) redrive(opts replay.RedriveOptions) (replay.RedriveSummary, []sink.Failure) {
	h.t.Helper()
	ctx := context.Background()
	sc := config.Sink{Name: "s1", Topics: []string{srcTopic}, Connector: "postgres", Key: []string{"id"},
		With:     map[string]any{"url": h.url, "table": "public.t_copy"},
		Map:      map[string]string{"id": "after.id", "v": "after.v", "note": "after.note"},
		OnDelete: "delete", OnTruncate: "truncate", Concurrency: 1,
		Batch: config.Batch{MaxRecords: 100, MaxWait: 20 * time.Millisecond}}
	log := zaptest.NewLogger(h.t)
	s, err := sink.New(ctx, h.cfg, sc, map[string]sink.Factory{"postgres": postgres.New}, sink.WithLogger(log),
		sink.CollectFailures(), sink.WithOffsetName(replay.RedriveName("s1")))
	if err != nil {
		h.t.Fatal(err)
	}
	defer s.Close()
	if err := s.Prepare(ctx); err != nil {
		h.t.Fatal(err)
	}
	var failed []sink.Failure
	opts.Log = log
	opts.OnFailure = func(f sink.Failure) { failed = append(failed, f) }
	adm := kadm.NewClient(h.cl)
	sum, err := replay.Redrive(ctx, s, adm, opts, replay.NewProgress(0, false, nil, log, "re-drive"))
	if err != nil {
		h.t.Fatal(err)
	}
	return sum, failed
}

// TestRedriveSkipsKeysWithNewerRecords: a dead letter whose key the source topic holds again at a
// later offset is skipped, and the target keeps the newer value; one without is applied; one the
// target still rejects is reported; a record of a lost range is counted and applies nothing.
func TestRedriveSkipsKeysWithNewerRecords(t *testing.T) {
	h := newRDHarness(t)
	now := time.Now()
	old1 := h.produce(1, 1) // dead-lettered, then updated again and applied
	h.produce(1, 11)
	two := h.produce(2, 2)  // dead-lettered, nothing newer
	bad := h.produce(3, -3) // dead-lettered, still rejected
	h.exec(`INSERT INTO public.t_copy VALUES (1, 11, 'n')`)
	h.deadLetter(old1, 0, "apply: lock timeout", now)
	h.deadLetter(two, 1, "apply: lock timeout", now)
	h.deadLetter(bad, 0, "apply: check", now)
	h.lostLetter(1, 100, 107, now)

	dry, _ := h.redrive(replay.RedriveOptions{DryRun: true})
	if got := h.rows(); got != "1=11" || dry.Redriven != 2 || dry.SkippedNewer != 1 || dry.StillFailing != 0 {
		t.Errorf("dry run: target %s, summary %s; want the target untouched, 2 to re-drive and 1 skipped-newer", got, dry)
	}

	sum, failed := h.redrive(replay.RedriveOptions{})
	if got, want := h.rows(), "1=11 2=2"; got != want {
		t.Errorf("target after the re-drive: %s, want %s (an old state must not replace a newer one)", got, want)
	}
	if sum.Read != 4 || sum.SkippedNewer != 1 || sum.Redriven != 1 || sum.StillFailing != 1 || sum.SkippedSelection != 0 || sum.Lost != 1 ||
		!strings.Contains(sum.String(), "1 record(s) of lost ranges") {
		t.Errorf("summary %s", sum)
	}
	if len(failed) != 1 || failed[0].Record.Offset != bad.Offset {
		t.Errorf("still failing %v, want the record at offset %d", failed, bad.Offset)
	}
}

// TestRedriveSelection: --key, --reason, --since and --until each narrow what is re-driven, and
// together all must match.
func TestRedriveSelection(t *testing.T) {
	h := newRDHarness(t)
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for i, d := range []struct {
		id     int32
		reason string
	}{{3, "apply: lock timeout"}, {4, "decode: unknown schema"}, {5, "apply: deadlock detected"}} {
		h.deadLetter(h.produce(d.id, d.id), int32(i%2), d.reason, t0.Add(time.Duration(i)*time.Hour))
	}
	for _, tc := range []struct {
		name string
		sel  replay.Selection
		want string
	}{
		{"everything", replay.Selection{}, "3=3 4=4 5=5"},
		{"key", replay.Selection{Keys: []map[string]string{{"id": "4"}}}, "4=4"},
		{"keys", replay.Selection{Keys: []map[string]string{{"id": "3"}, {"id": "5"}}}, "3=3 5=5"},
		{"unknown column", replay.Selection{Keys: []map[string]string{{"sku": "4"}}}, ""},
		{"reason", replay.Selection{Reason: regexp.MustCompile(`^apply: `)}, "3=3 5=5"},
		{"since", replay.Selection{Since: t0.Add(time.Hour)}, "4=4 5=5"},
		{"until", replay.Selection{Until: t0.Add(time.Hour)}, "3=3"},
		{"since and reason", replay.Selection{Since: t0.Add(time.Hour), Reason: regexp.MustCompile("dead")}, "5=5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			h.exec(`TRUNCATE public.t_copy`)
			sum, _ := h.redrive(replay.RedriveOptions{Select: tc.sel})
			if got := h.rows(); got != tc.want {
				t.Errorf("re-driven rows %q, want %q", got, tc.want)
			}
			taken := len(strings.Fields(tc.want))
			if sum.Read != 3 || sum.Redriven != taken || sum.SkippedSelection != 3-taken {
				t.Errorf("summary %s, want %d re-driven and %d skipped by selection", sum, taken, 3-taken)
			}
		})
	}
}

// TestRedriveReadsInBoundedBatches: a dead-letter topic larger than a batch is read and applied
// partition by partition in batches of at most the batch size, and all of it arrives.
func TestRedriveReadsInBoundedBatches(t *testing.T) {
	h := newRDHarness(t)
	const n, size = 250, 40
	perPartition := map[int32]int{}
	for id := int32(1); id <= n; id++ {
		p := int32(0)
		if id > 150 {
			p = 1
		}
		perPartition[p]++
		h.deadLetter(h.produce(id, id), p, "apply: lock timeout", time.Now())
	}
	var batches []int
	sum, _ := h.redrive(replay.RedriveOptions{Batch: size, OnBatch: func(k int) { batches = append(batches, k) }})
	total := 0
	for _, k := range batches {
		if k > size {
			t.Errorf("a batch of %d dead letters, more than the batch size %d: %v", k, size, batches)
		}
		total += k
	}
	// Partition by partition: no batch takes from both, so there are at least as many batches as
	// each partition needs on its own.
	minBatches := (perPartition[0]+size-1)/size + (perPartition[1]+size-1)/size
	if total != n || len(batches) < minBatches {
		t.Errorf("%d batches of %v dead letters in all, want %d in at least %d batches", len(batches), total, n, minBatches)
	}
	if sum.Redriven != n {
		t.Errorf("summary %s, want %d re-driven", sum, n)
	}
	var count int
	if err := h.db.QueryRow(context.Background(), `SELECT count(*) FROM public.t_copy`).Scan(&count); err != nil || count != n {
		t.Errorf("%d rows in the target (%v), want %d", count, err, n)
	}
}

func TestParseKey(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
		ok   bool
	}{
		{"id=7", map[string]string{"id": "7"}, true},
		{"sku=A-1,warehouse=ams", map[string]string{"sku": "A-1", "warehouse": "ams"}, true},
		{"note=a=b", map[string]string{"note": "a=b"}, true},
		{"id", nil, false},
		{"=7", nil, false},
		{"id=1,id=2", nil, false},
	} {
		got, err := replay.ParseKey(tc.in)
		if (err == nil) != tc.ok || fmt.Sprint(got) != fmt.Sprint(tc.want) && tc.ok {
			t.Errorf("ParseKey(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
