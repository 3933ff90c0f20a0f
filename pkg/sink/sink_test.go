package sink_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/observe"
	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// memTarget is an in-memory target: the runtime's behaviour (retries, bisection, DLQ, offsets) is
// what these tests check; real targets have their own tests in connectors/.
type memTarget struct {
	mu        sync.Mutex
	rows      map[string]map[string]any
	history   map[string][]any // key -> every applied value of v, in apply order
	applies   int
	transient int // fail this many more Apply calls with a retryable error
	partial   bool
}

func newMemTarget() *memTarget {
	return &memTarget{rows: map[string]map[string]any{}, history: map[string][]any{}}
}

func (m *memTarget) Apply(_ context.Context, b *sink.Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applies++
	if m.transient > 0 {
		m.transient--
		return sink.Retryable(errors.New("target unavailable"))
	}
	var failed []sink.RecordError
	for i, r := range b.Records {
		if v, _ := r.Fields["v"].(int32); v < 0 {
			if m.partial {
				failed = append(failed, sink.RecordError{Index: i, Reason: fmt.Sprintf("negative v %d", v)})
				continue
			}
			return fmt.Errorf("check constraint: v %d < 0", v) // the whole batch fails
		}
	}
	for i, r := range b.Records {
		if isFailed(failed, i) {
			continue
		}
		k := fmt.Sprint(r.Key["id"])
		switch r.Op {
		case sink.OpUpsert:
			m.rows[k] = r.Fields
			m.history[k] = append(m.history[k], r.Fields["v"])
		case sink.OpDelete:
			delete(m.rows, k)
			m.history[k] = append(m.history[k], "deleted")
		case sink.OpTruncate:
			clear(m.rows)
		}
	}
	if failed != nil {
		return &sink.PartialError{Failed: failed}
	}
	return nil
}

func isFailed(f []sink.RecordError, i int) bool {
	for _, e := range f {
		if e.Index == i {
			return true
		}
	}
	return false
}

func (m *memTarget) Close() error { return nil }

func (m *memTarget) snapshot() map[string]map[string]any {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]map[string]any{}
	for k, v := range m.rows {
		out[k] = v
	}
	return out
}

// harness is a broker, an encoder writing like capture does, and a pipeline config.
type harness struct {
	t   *testing.T
	kf  *testenv.Kafka
	cl  *kgo.Client
	enc *codec.Encoder
	tbl *change.Table
	cfg *config.Pipeline
}

func newHarness(t *testing.T, opts ...kfake.Opt) *harness {
	kf := testenv.NewKafka(t, opts...)
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(kf.Brokers()...)}, kafka.ProducerOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	topics := config.Topics{Partitions: 3, ReplicationFactor: 1, CleanupPolicy: "compact"}
	if err := kafka.EnsureTopics(context.Background(), kadm.NewClient(cl), []string{"wh.public.t", "wh._schemas"}, topics, nil); err != nil {
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
	return &harness{t: t, kf: kf, cl: cl, enc: enc, tbl: tbl, cfg: cfg}
}

func (h *harness) sinkConfig(mods ...func(*config.Sink)) config.Sink {
	s := config.Sink{Name: "s1", Topics: []string{"wh.public.t"}, Connector: "mem", Key: []string{"id"},
		Map:      map[string]string{"id": "after.id", "v": "after.v", "note": "after.note"},
		OnDelete: "delete", OnTruncate: "truncate", Concurrency: 2,
		Batch: config.Batch{MaxRecords: 100, MaxWait: 20 * time.Millisecond}}
	for _, m := range mods {
		m(&s)
	}
	return s
}

// produce writes events of public.t like capture: key by id, tombstone after deletes.
func (h *harness) produce(evs ...*change.Event) {
	h.t.Helper()
	ctx := context.Background()
	for _, ev := range evs {
		ev.Table = h.tbl
		key, val, err := h.enc.Encode(ctx, "wh.public.t", ev)
		if err != nil {
			h.t.Fatal(err)
		}
		recs := []*kgo.Record{{Topic: "wh.public.t", Key: key, Value: val}}
		if ev.Op == change.OpDelete {
			recs = append(recs, &kgo.Record{Topic: "wh.public.t", Key: key})
		}
		if err := h.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			h.t.Fatal(err)
		}
	}
}

func (h *harness) produceRaw(key, value []byte) {
	h.t.Helper()
	if err := h.cl.ProduceSync(context.Background(), &kgo.Record{Topic: "wh.public.t", Key: key, Value: value}).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}

func upsert(id, v int32, note string) *change.Event {
	return &change.Event{Op: change.OpUpdate, After: change.Row{"id": id, "v": v, "note": note}}
}

func del(id int32) *change.Event {
	return &change.Event{Op: change.OpDelete, Before: change.Row{"id": id}}
}

// start runs a sink over target until the test ends.
func (h *harness) start(sc config.Sink, target sink.Connector, opts ...sink.Opt) (*sink.Sink, func()) {
	h.t.Helper()
	h.cfg.Sinks = append(h.cfg.Sinks, sc)
	factories := map[string]sink.Factory{"mem": func(context.Context, sink.Params) (sink.Connector, error) { return target, nil }}
	opts = append([]sink.Opt{sink.WithLogger(zaptest.NewLogger(h.t)),
		sink.WithKafkaOpts(kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(500*time.Millisecond))}, opts...)
	s, err := sink.New(context.Background(), h.cfg, sc, factories, opts...)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("sink run: %v", err)
			}
		})
	}
	h.t.Cleanup(stop)
	return s, stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForWithin(t, 30*time.Second, what, cond)
}

// waitForWithin is waitFor with another deadline.
func waitForWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// committed returns the group's committed offsets summed over partitions.
func (h *harness) committed(group string) int64 {
	h.t.Helper()
	offs, err := kadm.NewClient(h.cl).FetchOffsets(context.Background(), group)
	if err != nil {
		return -1
	}
	var n int64
	offs.Each(func(o kadm.OffsetResponse) { n += o.At })
	return n
}

func (h *harness) endOffsets() int64 {
	h.t.Helper()
	ends, err := kadm.NewClient(h.cl).ListEndOffsets(context.Background(), "wh.public.t")
	if err != nil {
		h.t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// dlq reads the sink's dead-letter topic.
func (h *harness) dlq(name string) []*kgo.Record {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := testenv.ConsumeAll(ctx, h.kf.Brokers(), sink.DLQTopic(name))
	if err != nil {
		h.t.Fatal(err)
	}
	return recs
}

func header(r *kgo.Record, k string) string {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

// TestAppliesInOrderAndCommitsAfterApply: every key ends in its last state, each key's values
// were applied in order, and the group's offsets reach the end only once everything is applied.
func TestAppliesInOrderAndCommitsAfterApply(t *testing.T) {
	h := newHarness(t)
	var evs []*change.Event
	for v := int32(1); v <= 20; v++ {
		for id := int32(1); id <= 30; id++ {
			evs = append(evs, upsert(id, v, "n"))
		}
	}
	evs = append(evs, del(7))
	h.produce(evs...)
	target := newMemTarget()
	h.start(h.sinkConfig(), target)
	end := h.endOffsets()
	waitFor(t, "offsets committed to the end", func() bool { return h.committed("s1") == end })
	rows := target.snapshot()
	if len(rows) != 29 || rows["7"] != nil {
		t.Fatalf("target has %d rows (row 7: %v), want 29 without 7", len(rows), rows["7"])
	}
	for k, r := range rows {
		if r["v"] != int32(20) {
			t.Errorf("row %s: v = %v, want 20", k, r["v"])
		}
	}
	for k, hist := range target.history {
		var last int32
		for _, v := range hist {
			if n, ok := v.(int32); ok {
				if n <= last {
					t.Fatalf("key %s applied out of order: %v", k, hist)
				}
				last = n
			}
		}
	}
}

// TestRoundReturnsWhenPollRunsDry: a round with fewer records than a batch is applied as soon as
// nothing more is buffered or at the broker, not after max_wait (an hour here, beyond the
// test's 30 s wait), and so is the next one.
func TestRoundReturnsWhenPollRunsDry(t *testing.T) {
	h := newHarness(t)
	target := newMemTarget()
	h.start(h.sinkConfig(func(s *config.Sink) { s.Batch.MaxWait = time.Hour }), target)
	for id := int32(1); id <= 2; id++ {
		h.produce(upsert(id, 1, "n"))
		key := fmt.Sprint(id)
		waitFor(t, "row "+key+" applied", func() bool { return target.snapshot()[key] != nil })
	}
}

// TestPoisonRecordsGoToDLQ: a batch that fails permanently is bisected; only the bad records go
// to the dead-letter topic, with their reason and origin; their neighbours are applied.
func TestPoisonRecordsGoToDLQ(t *testing.T) {
	for _, partial := range []bool{false, true} {
		t.Run(fmt.Sprintf("partial=%v", partial), func(t *testing.T) {
			h := newHarness(t)
			var evs []*change.Event
			for id := int32(1); id <= 200; id++ {
				v := id
				if id%50 == 0 {
					v = -id // rejected by the target
				}
				evs = append(evs, upsert(id, v, "n"))
			}
			h.produce(evs...)
			h.produceRaw([]byte("k"), []byte("not an envelope"))
			target := newMemTarget()
			target.partial = partial
			// Bisection is what this test checks: each record at fault is dead-lettered at its
			// first rejection (TestRejectedRecordIsDeadLetteredAfterMaxAttempts checks retries).
			h.start(h.sinkConfig(func(s *config.Sink) { s.Retry.MaxAttempts = 1 }), target)
			end := h.endOffsets()
			waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
			if n := len(target.snapshot()); n != 196 {
				t.Errorf("%d rows applied, want 196", n)
			}
			dlq := h.dlq("s1")
			if len(dlq) != 5 {
				t.Fatalf("%d dead letters, want 5 (4 rejected + 1 undecodable)", len(dlq))
			}
			reasons := map[string]int{}
			for _, r := range dlq {
				if header(r, sink.HeaderTopic) != "wh.public.t" || header(r, sink.HeaderOffset) == "" {
					t.Errorf("dead letter lacks its origin: %v", r.Headers)
				}
				reasons[header(r, sink.HeaderReason)[:6]]++
				if len(r.Key) == 0 || len(r.Value) == 0 {
					t.Errorf("dead letter at offset %s is not the record as read: key %q, value %q", header(r, sink.HeaderOffset), r.Key, r.Value)
				}
			}
			if reasons["apply:"] != 4 || reasons["decode"] != 1 {
				t.Errorf("dead-letter reasons %v", reasons)
			}
		})
	}
}

// TestMappingErrorGoesToDLQ: a record the mapping cannot evaluate goes to the DLQ with the field
// and the expression error.
func TestMappingErrorGoesToDLQ(t *testing.T) {
	h := newHarness(t)
	h.produce(upsert(1, 1, "12"), upsert(2, 2, "twelve"), upsert(3, 3, "30"))
	target := newMemTarget()
	h.start(h.sinkConfig(func(s *config.Sink) { s.Map["n"] = "int(after.note) * 2" }), target)
	end := h.endOffsets()
	waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
	rows := target.snapshot()
	if len(rows) != 2 || rows["1"]["n"] != 24 {
		t.Errorf("rows %v, want ids 1 and 3 with n computed", rows)
	}
	dlq := h.dlq("s1")
	if len(dlq) != 1 || header(dlq[0], sink.HeaderReason) == "" {
		t.Fatalf("dead letters %v", dlq)
	}
	if reason := header(dlq[0], sink.HeaderReason); !strings.Contains(reason, "map.n") {
		t.Errorf("reason %q does not name the field", reason)
	}
}

// TestTransientFailuresRetryWithoutMovingOffsets: while the target fails with retryable errors
// nothing is committed; once it recovers everything is applied once, in order.
func TestTransientFailuresRetryWithoutMovingOffsets(t *testing.T) {
	h := newHarness(t)
	h.produce(upsert(1, 1, "a"), upsert(2, 1, "b"), upsert(1, 2, "c"))
	target := newMemTarget()
	target.transient = 5
	h.start(h.sinkConfig(), target)
	waitFor(t, "retries", func() bool { target.mu.Lock(); defer target.mu.Unlock(); return target.applies >= 3 })
	if c := h.committed("s1"); c > 0 {
		t.Errorf("offsets moved to %d while the target was failing", c)
	}
	end := h.endOffsets()
	waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
	rows := target.snapshot()
	if rows["1"]["v"] != int32(2) || rows["2"]["v"] != int32(1) {
		t.Errorf("rows after recovery: %v", rows)
	}
}

// TestFilterAndDeletePolicies checks the filter and each delete policy.
// TestFilterAndDeletePolicies: rows the filter rejects are not written, deletes follow on_delete,
// and an update that leaves the filter removes its row (on_filter_out: delete, through on_delete)
// or leaves it as it was (ignore). Row 4 passes, then an update rejects it; insert 5 is rejected
// and, having no earlier version, skipped. Row 6 passes, then a re-snapshot's read rejects it: it
// goes as row 4 does (the table was rebuilt, say). An initial snapshot's read of row 7 is
// rejected and skipped. A filter that reads before or op selects changes, not rows: the update
// and the read it rejects are skipped.
func TestFilterAndDeletePolicies(t *testing.T) {
	const rows = `after.note != "skip"`
	cases := []struct {
		policy, filterOut, filter string
		want                      map[string]string // id -> v or "soft"
	}{
		{"delete", "delete", rows, map[string]string{"1": "1"}},
		{"delete", "ignore", rows, map[string]string{"1": "1", "4": "4", "6": "6"}},
		{"ignore", "delete", rows, map[string]string{"1": "1", "2": "2", "4": "4", "6": "6"}},
		{"soft_delete", "delete", rows, map[string]string{"1": "1", "2": "soft", "3": "soft", "4": "soft", "6": "soft"}},
		{"soft_delete", "ignore", rows, map[string]string{"1": "1", "2": "soft", "4": "4", "6": "6"}},
		{"delete", "delete", `op != "r" && before?.note != "x" && ` + rows, map[string]string{"1": "1", "4": "4", "6": "6"}},
	}
	for _, tc := range cases {
		t.Run(tc.policy+"/"+tc.filterOut+"/"+tc.filter, func(t *testing.T) {
			h := newHarness(t)
			inserted := upsert(5, 5, "skip")
			inserted.Op = change.OpCreate
			reread, read := upsert(6, 7, "skip"), upsert(7, 7, "skip")
			reread.Op, reread.Source.Snapshot = change.OpRead, change.SnapshotIncremental
			read.Op, read.Source.Snapshot = change.OpRead, "true"
			h.produce(upsert(1, 1, "keep"), upsert(2, 2, "keep"), upsert(3, 3, "skip"), del(2),
				upsert(4, 4, "keep"), upsert(4, 5, "skip"), inserted, upsert(6, 6, "keep"), reread, read)
			target := newMemTarget()
			h.start(h.sinkConfig(func(s *config.Sink) {
				s.Filter = tc.filter
				s.OnDelete = tc.policy
				s.OnFilterOut = tc.filterOut
				if tc.policy == "soft_delete" {
					s.With = map[string]any{"soft_delete_column": "deleted"}
				}
			}), target)
			end := h.endOffsets()
			waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
			if got := softState(target); fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(tc.want)) {
				t.Errorf("target %v, want %v", got, tc.want)
			}
		})
	}
}

// softState is the target's rows as id -> v, or "soft" for a row marked deleted.
func softState(target *memTarget) map[string]string {
	got := map[string]string{}
	for k, r := range target.snapshot() {
		got[k] = fmt.Sprint(r["v"])
		if r["deleted"] == true {
			got[k] = "soft"
		}
	}
	return got
}

// TestKeyFromOutsideTheSourceKeyIsWarned: a target keyed by a column outside the source table's
// key (id) is warned about once, naming the field and the column; one keyed by id is not.
func TestKeyFromOutsideTheSourceKeyIsWarned(t *testing.T) {
	for _, tc := range []struct {
		name, keyFrom string
		warnings      int
	}{{"source key", "after.id", 0}, {"another column", "after.note", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.produce(upsert(1, 1, "a"), upsert(2, 2, "b"), upsert(3, 3, "c"))
			core, logs := observer.New(zap.WarnLevel)
			h.start(h.sinkConfig(func(s *config.Sink) {
				s.Key = []string{"k"}
				s.Map = map[string]string{"k": tc.keyFrom, "v": "after.v"}
			}), newMemTarget(), sink.WithLogger(zap.New(core)))
			end := h.endOffsets()
			waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
			warned := logs.FilterMessageSnippet("reads a column outside the source table's key").All()
			if len(warned) != tc.warnings {
				t.Fatalf("%d warnings, want %d", len(warned), tc.warnings)
			}
			if tc.warnings > 0 {
				if f := warned[0].ContextMap(); f["key_field"] != "k" || f["column"] != "note" || f["table"] != "public.t" {
					t.Errorf("warning fields %v, want key_field k, column note, table public.t", f)
				}
			}
		})
	}
}

// TestMembersSharePartitions runs two members of one group; one leaves midway. Every key still
// ends in its last state.
func TestMembersSharePartitions(t *testing.T) {
	h := newHarness(t)
	target := newMemTarget()
	sc := h.sinkConfig()
	_, stopA := h.start(sc, target)
	h.start(sc, target)
	for v := int32(1); v <= 10; v++ {
		var evs []*change.Event
		for id := int32(1); id <= 50; id++ {
			evs = append(evs, upsert(id, v, "n"))
		}
		h.produce(evs...)
		if v == 5 {
			stopA()
		}
	}
	end := h.endOffsets()
	waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
	for k, r := range target.snapshot() {
		if r["v"] != int32(10) {
			t.Errorf("row %s: v = %v after the rebalance, want 10", k, r["v"])
		}
	}
}

func sorted(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// TestReadsEveryEncoding: one topic holding Avro single-object, JSON and a Debezium-written JSON
// record (schema and payload) is applied record by record, the encoding detected per message.
func TestReadsEveryEncoding(t *testing.T) {
	h := newHarness(t)
	h.produce(upsert(1, 1, "avro"))
	jsonEnc, err := codec.NewEncoder(codec.Format("json"), codec.TopicPrefix("wh"))
	if err != nil {
		t.Fatal(err)
	}
	ev := upsert(2, 2, "json")
	ev.Table = h.tbl
	key, val, err := jsonEnc.Encode(context.Background(), "wh.public.t", ev)
	if err != nil {
		t.Fatal(err)
	}
	h.produceRaw(key, val)
	debezium := `{"schema":{"type":"struct","fields":[{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"},{"type":"int32","optional":true,"field":"v"},{"type":"string","optional":true,"field":"note"}],"optional":true,"name":"dbserver1.public.t.Value","field":"before"},{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"},{"type":"int32","optional":true,"field":"v"},{"type":"string","optional":true,"field":"note"}],"optional":true,"name":"dbserver1.public.t.Value","field":"after"},{"type":"struct","fields":[{"type":"string","optional":false,"field":"connector"},{"type":"string","optional":false,"field":"db"},{"type":"string","optional":false,"field":"schema"},{"type":"string","optional":false,"field":"table"}],"optional":false,"name":"io.debezium.connector.postgresql.Source","field":"source"},{"type":"string","optional":false,"field":"op"},{"type":"int64","optional":true,"field":"ts_ms"}],"optional":false,"name":"dbserver1.public.t.Envelope"},` +
		`"payload":{"before":null,"after":{"id":3,"v":3,"note":"debezium"},"source":{"connector":"postgresql","db":"wh","schema":"public","table":"t"},"op":"c","ts_ms":1700000000000}}`
	h.produceRaw([]byte(`{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"dbserver1.public.t.Key"},"payload":{"id":3}}`), []byte(debezium))
	target := newMemTarget()
	h.start(h.sinkConfig(func(s *config.Sink) { s.Map = map[string]string{"id": "after.id", "note": "after.note"} }), target)
	end := h.endOffsets()
	waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
	rows := target.snapshot()
	for id, note := range map[string]string{"1": "avro", "2": "json", "3": "debezium"} {
		if rows[id]["note"] != note {
			t.Errorf("row %s = %v, want note %q", id, rows[id], note)
		}
	}
	if n := len(h.dlq("s1")); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
}

// pausingTarget answers like an API whose daily limit is spent.
type pausingTarget struct{ memTarget }

func (p *pausingTarget) Apply(context.Context, *sink.Batch) error {
	return sink.RetryAfter(errors.New("daily limit reached"), 3*time.Hour)
}

// TestLongWaitShowsAsPause: a target asking to wait for hours pauses the sink visibly (metrics,
// status) instead of failing, and nothing is committed meanwhile.
func TestLongWaitShowsAsPause(t *testing.T) {
	h := newHarness(t)
	h.produce(upsert(1, 1, "a"))
	m := observe.NewMetrics()
	sc := h.sinkConfig()
	h.cfg.Sinks = append(h.cfg.Sinks, sc)
	target := &pausingTarget{*newMemTarget()}
	s, err := sink.New(context.Background(), h.cfg, sc, map[string]sink.Factory{"mem": func(context.Context, sink.Params) (sink.Connector, error) { return target, nil }},
		sink.WithMetrics(m), sink.WithLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "the pause to show", func() bool { _, ok := m.Pauses()["s1"]; return ok })
	if p := m.Pauses()["s1"]; time.Until(p.Until) < 2*time.Hour || !strings.Contains(p.Reason, "daily limit") {
		t.Errorf("pause %+v", p)
	}
	if c := h.committed("s1"); c > 0 {
		t.Errorf("offsets moved to %d during the pause", c)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}

// blockingTarget holds every Apply until the sink shuts down.
type blockingTarget struct {
	memTarget
	called chan struct{}
	once   sync.Once
}

func (b *blockingTarget) Apply(ctx context.Context, _ *sink.Batch) error {
	b.once.Do(func() { close(b.called) })
	<-ctx.Done()
	return ctx.Err()
}

// TestShutdownMidBatchCommitsNothing: stopping while a batch is being applied must not commit its
// offsets (they would be lost for targets that keep no offsets of their own).
func TestShutdownMidBatchCommitsNothing(t *testing.T) {
	h := newHarness(t)
	h.produce(upsert(1, 1, "a"), upsert(2, 2, "b"), upsert(3, 3, "c"))
	target := &blockingTarget{memTarget: *newMemTarget(), called: make(chan struct{})}
	_, stop := h.start(h.sinkConfig(), target)
	select {
	case <-target.called:
	case <-time.After(30 * time.Second):
		t.Fatal("the sink never applied")
	}
	stop()
	if c := h.committed("s1"); c > 0 {
		t.Fatalf("offsets committed up to %d for records never applied", c)
	}
}

// recordingTarget records the batches it applies and whether two ever overlapped.
type recordingTarget struct {
	memTarget
	inFlight atomic.Int32
	overlap  atomic.Bool
	nexts    []int64       // NextOffset of each applied batch, in apply order
	sizes    []int         // records of each
	block    int           // the Apply call (1-based) that waits for ctx to end; 0: none
	blocked  chan struct{} // closed when it waits
}

func (r *recordingTarget) Apply(ctx context.Context, b *sink.Batch) error {
	if r.inFlight.Add(1) > 1 {
		r.overlap.Store(true)
	}
	defer r.inFlight.Add(-1)
	time.Sleep(5 * time.Millisecond) // give the next batch time to be prepared meanwhile
	r.mu.Lock()
	r.nexts, r.sizes = append(r.nexts, b.NextOffset), append(r.sizes, len(b.Records))
	call := len(r.nexts)
	r.mu.Unlock()
	if call == r.block {
		close(r.blocked)
		<-ctx.Done()
		return ctx.Err()
	}
	return r.memTarget.Apply(ctx, b)
}

// TestProcessRunsBatchesInOrder: a long run of one partition is applied in batches of
// max_records, one at a time and in offset order (the next one is only prepared meanwhile), and
// a failure stops the run: no later batch is applied.
func TestProcessRunsBatchesInOrder(t *testing.T) {
	h := newHarness(t)
	sc := h.sinkConfig(func(s *config.Sink) { s.Batch.MaxRecords = 10 })
	var recs []*kgo.Record
	for i := range 95 {
		ev := upsert(int32(i%7), int32(i+1), "n")
		ev.Table = h.tbl
		key, val, err := h.enc.Encode(context.Background(), "wh.public.t", ev)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: "wh.public.t", Key: key, Value: val, Offset: int64(i)})
	}
	process := func(target *recordingTarget) (sink.Counts, error) {
		h.cfg.Sinks = []config.Sink{sc}
		factories := map[string]sink.Factory{"mem": func(context.Context, sink.Params) (sink.Connector, error) { return target, nil }}
		s, err := sink.New(context.Background(), h.cfg, sc, factories, sink.WithLogger(zaptest.NewLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := s.Prepare(ctx); err != nil {
			t.Fatal(err)
		}
		if target.blocked != nil {
			go func() { <-target.blocked; cancel() }()
		}
		return s.Process(ctx, recs)
	}

	target := &recordingTarget{memTarget: *newMemTarget()}
	counts, err := process(target)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Records != 95 || counts.Applied != 68 { // 7 keys in each batch of 10, 5 in the last
		t.Errorf("counts = %+v, want 95 records, 68 applied", counts)
	}
	want := []int64{10, 20, 30, 40, 50, 60, 70, 80, 90, 95}
	if !slices.Equal(target.nexts, want) || target.overlap.Load() {
		t.Fatalf("batches applied with next offsets %v (overlapping: %v), want %v one at a time", target.nexts, target.overlap.Load(), want)
	}
	for id, row := range target.snapshot() {
		var last int32
		for i := range 95 {
			if fmt.Sprint(i%7) == id {
				last = int32(i + 1)
			}
		}
		if row["v"] != last {
			t.Errorf("row %s: v = %v, want %d", id, row["v"], last)
		}
	}

	stopping := &recordingTarget{memTarget: *newMemTarget(), block: 3, blocked: make(chan struct{})}
	if _, err := process(stopping); !errors.Is(err, context.Canceled) {
		t.Fatalf("Process = %v, want context.Canceled", err)
	}
	if !slices.Equal(stopping.nexts, []int64{10, 20, 30}) {
		t.Fatalf("after the failure at the third batch, batches up to %v were applied", stopping.nexts)
	}
}

// TestConnectorLoggerNamesTheSinkOnce: connectors log through Params.Logger, which carries the
// sink's name from the runtime once (a repeated key is a duplicate key in JSON logs).
func TestConnectorLoggerNamesTheSinkOnce(t *testing.T) {
	h := newHarness(t)
	core, logs := observer.New(zap.InfoLevel)
	var params sink.Params
	factories := map[string]sink.Factory{"mem": func(_ context.Context, p sink.Params) (sink.Connector, error) {
		params = p
		return newMemTarget(), nil
	}}
	sc := h.sinkConfig()
	h.cfg.Sinks = []config.Sink{sc}
	if _, err := sink.New(context.Background(), h.cfg, sc, factories, sink.WithLogger(zap.New(core))); err != nil {
		t.Fatal(err)
	}
	params.Logger(zap.String("table", "t")).Info("ready")
	entries := logs.FilterMessage("ready").All()
	if len(entries) != 1 {
		t.Fatalf("%d log entries", len(entries))
	}
	var sinks []any
	for _, f := range entries[0].Context {
		if f.Key == "sink" {
			sinks = append(sinks, f.String)
		}
	}
	if len(sinks) != 1 || sinks[0] != "s1" || entries[0].ContextMap()["table"] != "t" {
		t.Fatalf("fields %v: want sink s1 once and table t", entries[0].ContextMap())
	}
	sink.Params{}.Logger().Info("a connector built without a logger can still log")
}

// partitionTarget records, per partition, the batches it applies and whether two of one
// partition were ever in flight at once; one partition is slow.
type partitionTarget struct {
	memTarget
	slow     int32
	inFlight sync.Map // int32 -> *atomic.Int32
	overlap  atomic.Bool
	nexts    map[int32][]int64
}

func (p *partitionTarget) Apply(ctx context.Context, b *sink.Batch) error {
	v, _ := p.inFlight.LoadOrStore(b.Partition, &atomic.Int32{})
	n := v.(*atomic.Int32)
	if n.Add(1) > 1 {
		p.overlap.Store(true)
	}
	defer n.Add(-1)
	if b.Partition == p.slow {
		time.Sleep(20 * time.Millisecond)
	}
	p.mu.Lock()
	p.nexts[b.Partition] = append(p.nexts[b.Partition], b.NextOffset)
	p.mu.Unlock()
	return p.memTarget.Apply(ctx, b)
}

// TestRoundsPolledAheadKeepPartitionOrder: on a backlog, rounds are polled ahead and each
// partition goes on as soon as its own records are applied; with one partition slow, a
// partition's batches are still applied one at a time and in offset order, every key ends in its
// last state, and the group commits everything.
func TestRoundsPolledAheadKeepPartitionOrder(t *testing.T) {
	h := newHarness(t)
	var evs []*change.Event
	for v := int32(1); v <= 20; v++ {
		for id := int32(1); id <= 30; id++ {
			evs = append(evs, upsert(id, v, "n"))
		}
	}
	h.produce(evs...)
	target := &partitionTarget{memTarget: *newMemTarget(), slow: 0, nexts: map[int32][]int64{}}
	h.start(h.sinkConfig(func(s *config.Sink) { s.Batch.MaxRecords, s.Concurrency = 20, 3 }), target)
	end := h.endOffsets()
	waitFor(t, "offsets committed to the end", func() bool { return h.committed("s1") == end })
	if target.overlap.Load() {
		t.Fatal("two batches of one partition were applied at once")
	}
	target.mu.Lock()
	defer target.mu.Unlock()
	if len(target.nexts) != 3 {
		t.Fatalf("batches of %d partitions applied, want 3", len(target.nexts))
	}
	for p, nexts := range target.nexts {
		for i := 1; i < len(nexts); i++ {
			if nexts[i] <= nexts[i-1] {
				t.Fatalf("partition %d: batches applied with next offsets %v, want increasing", p, nexts)
			}
		}
	}
	for k, r := range target.rows {
		if r["v"] != int32(20) {
			t.Errorf("row %s: v = %v, want 20", k, r["v"])
		}
	}
	if len(target.rows) != 30 {
		t.Fatalf("target has %d rows, want 30", len(target.rows))
	}
}

// storingTarget is a memTarget that stores offsets of its own (as SQL targets do), here set by
// the test.
type storingTarget struct {
	memTarget
	stored map[string]map[int32]int64
}

func (s *storingTarget) Offsets(context.Context, string, []string) (map[string]map[int32]int64, error) {
	return s.stored, nil
}

// TestTargetThatLostItsOffsetsIsFilledAgain: a target that stores offsets but holds none for
// partitions the group has applied (a new database at the same address, a restore without the
// offsets table) gets every partition again from its start, not only what comes after the
// group's commit.
func TestTargetThatLostItsOffsetsIsFilledAgain(t *testing.T) {
	h := newHarness(t)
	h.produce(upserts(1, 30, 1)...)
	_, stop := h.start(h.sinkConfig(), newMemTarget())
	end := h.endOffsets()
	waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
	stop()
	fresh := &storingTarget{memTarget: *newMemTarget(), stored: map[string]map[int32]int64{}}
	h.start(h.sinkConfig(), fresh)
	waitFor(t, "every row in the new target", func() bool { return len(fresh.snapshot()) == 30 })
	waitFor(t, "offsets committed again", func() bool { return h.committed("s1") == end })
}

// TestTargetOffsetsAheadAreCommitted: a sink killed after the target stored a batch's offset but
// before Kafka's commit starts again from the target's offset; with no records after it, the
// group still gets that offset, and nothing is applied twice.
func TestTargetOffsetsAheadAreCommitted(t *testing.T) {
	h := newHarness(t)
	var evs []*change.Event
	for id := int32(1); id <= 30; id++ {
		evs = append(evs, upsert(id, 1, "n"))
	}
	h.produce(evs...)
	ends, err := kadm.NewClient(h.cl).ListEndOffsets(context.Background(), "wh.public.t")
	if err != nil {
		t.Fatal(err)
	}
	target := &storingTarget{memTarget: *newMemTarget(), stored: map[string]map[int32]int64{"wh.public.t": {}}}
	ends.Each(func(o kadm.ListedOffset) { target.stored[o.Topic][o.Partition] = o.Offset })
	h.start(h.sinkConfig(), target)
	end := h.endOffsets()
	waitFor(t, "the target's offsets committed to the group", func() bool { return h.committed("s1") == end })
	if n := target.applies; n != 0 {
		t.Fatalf("%d batches applied, want none: the target had them all", n)
	}
}

// TestTargetOffsetsAheadDoNotRewindTheGroup: a sink that starts where the target is ahead of
// the group, with records after that, applies and commits them; the target's older offsets must
// not be committed over its own commits on the next idle poll, which would leave the group's lag
// behind for good while the member has nothing left to fetch.
func TestTargetOffsetsAheadDoNotRewindTheGroup(t *testing.T) {
	h := newHarness(t)
	var evs []*change.Event
	for id := int32(1); id <= 60; id++ {
		evs = append(evs, upsert(id, 1, "n"))
	}
	h.produce(evs...)
	target := &storingTarget{memTarget: *newMemTarget(), stored: map[string]map[int32]int64{"wh.public.t": {}}}
	for p := range int32(3) {
		target.stored["wh.public.t"][p] = 1 // killed after the target's first record, before Kafka's commit
	}
	h.start(h.sinkConfig(), target)
	end := h.endOffsets()
	waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
	time.Sleep(2500 * time.Millisecond) // idle polls, which commit what the target was ahead at
	if got := h.committed("s1"); got != end {
		t.Fatalf("the group's offsets went back from %d to %d after the sink caught up", end, got)
	}
}

// TestIdleMemberLetsRebalancesThrough: a member that has waited for records for a while (its
// polls ending empty) still lets a rebalance through when a second member joins, so the new
// member gets partitions and applies records.
func TestIdleMemberLetsRebalancesThrough(t *testing.T) {
	h := newHarness(t)
	a, b := newMemTarget(), newMemTarget()
	sc := h.sinkConfig()
	h.start(sc, a)
	time.Sleep(2500 * time.Millisecond) // idle polls
	h.start(sc, b)
	waitFor(t, "the second member applied records", func() bool {
		var evs []*change.Event
		for id := int32(1); id <= 30; id++ {
			evs = append(evs, upsert(id, 1, "n"))
		}
		h.produce(evs...)
		return len(b.snapshot()) > 0
	})
	end := h.endOffsets()
	waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
}

// TestRowsTopicPolicies: a sink with envelope: none applies a topic of bare rows through its
// delete and filter policies: a tombstone and a row rewritten with __deleted delete (or mark,
// with soft_delete), and so does a row whose op header says d; a row the filter rejects removes
// what an earlier version put there, and a
// change envelope and the kafka connector's truncate on the topic go to the dead-letter topic.
func TestRowsTopicPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy string
		want   map[string]string // id -> v or "soft"
	}{
		{"delete", map[string]string{"1": "1", "5": "5"}},
		{"soft_delete", map[string]string{"1": "1", "2": "soft", "3": "soft", "4": "soft", "5": "5", "7": "soft"}},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			h := newHarness(t)
			key := func(id int) []byte { return fmt.Appendf(nil, `{"id":%d}`, id) }
			for _, kv := range []struct {
				id    int
				value string
			}{
				{1, `{"id":1,"v":1,"note":"keep"}`},
				{2, `{"id":2,"v":2,"note":"keep"}`}, {2, ""},
				{3, `{"id":3,"v":3,"note":"keep"}`}, {3, `{"id":3,"v":4,"note":"skip"}`},
				{4, `{"id":4,"v":4,"note":"keep","__op":"c"}`}, {4, `{"id":4,"v":4,"note":"keep","__op":"d","__deleted":"true"}`},
				{5, `{"id":5,"v":5,"note":"keep","__op":"r"}`},
				{6, `{"op":"c","after":{"id":6,"v":6,"note":"keep"},"source":{}}`},
			} {
				var value []byte
				if kv.value != "" {
					value = []byte(kv.value)
				}
				h.produceRaw(key(kv.id), value)
			}
			// A delete with its op in a header (ExtractNewRecordState add.headers=op).
			h.produceRaw(key(7), []byte(`{"id":7,"v":7,"note":"keep"}`))
			if err := h.cl.ProduceSync(context.Background(), &kgo.Record{Topic: "wh.public.t", Key: key(7),
				Value: []byte(`{"id":7,"v":7,"note":"keep"}`), Headers: []kgo.RecordHeader{{Key: "__op", Value: []byte("d")}}}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			h.produceRaw(kafka.TruncateKey, nil) // an older kafka connector's truncate
			target := newMemTarget()
			h.start(h.sinkConfig(func(s *config.Sink) {
				s.Envelope = config.EnvelopeNone
				s.Filter = `after.note != "skip"`
				s.OnDelete, s.OnFilterOut = tc.policy, config.OnFilterOutDelete
				if tc.policy == "soft_delete" {
					s.With = map[string]any{"soft_delete_column": "deleted"}
				}
			}), target)
			end := h.endOffsets()
			waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
			if got := softState(target); fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(tc.want)) {
				t.Errorf("target %v, want %v", got, tc.want)
			}
			dead := h.dlq("s1")
			if len(dead) != 2 || string(dead[0].Key) != `{"id":6}` || string(dead[1].Key) != string(kafka.TruncateKey) ||
				!strings.Contains(header(dead[1], sink.HeaderReason), "kafka connector") {
				t.Errorf("%d dead letters, want the envelope of id 6 and the truncate, with its reason", len(dead))
			}
		})
	}
}
