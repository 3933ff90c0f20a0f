package sink_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/observe"
	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// deleteAll deletes every record of the harness's topic, as retention would. Kafka deletes
// records only of a topic whose cleanup.policy includes delete, so the topic gets that policy
// first.
func (h *harness) deleteAll() {
	h.t.Helper()
	ctx := context.Background()
	adm := kadm.NewClient(h.cl)
	h.setPolicy("delete")
	ends, err := adm.ListEndOffsets(ctx, "wh.public.t")
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := adm.DeleteRecords(ctx, ends.Offsets())
	if err != nil {
		h.t.Fatal(err)
	}
	if err := resp.Error(); err != nil {
		h.t.Fatal(err)
	}
}

// applyAll runs sink sc over target until its group has committed every record, then stops it;
// it returns the sink's metrics.
func (h *harness) applyAll(sc config.Sink, target sink.Connector, opts ...sink.Opt) *observe.Metrics {
	h.t.Helper()
	m := observe.NewMetrics()
	_, stop := h.start(sc, target, append([]sink.Opt{sink.WithMetrics(m)}, opts...)...)
	defer stop()
	end := h.endOffsets()
	waitFor(h.t, sc.Name+": every record committed", func() bool { return h.committed(sc.Name) == end })
	return m
}

// setPolicy sets the cleanup.policy of the harness's topic.
func (h *harness) setPolicy(policy string) {
	h.t.Helper()
	h.setTopicConfig("cleanup.policy", policy)
}

// setTopicConfig sets one configuration entry of the harness's topic.
func (h *harness) setTopicConfig(key, value string) {
	h.t.Helper()
	rs, err := kadm.NewClient(h.cl).AlterTopicConfigs(context.Background(),
		[]kadm.AlterConfig{{Op: kadm.SetConfig, Name: key, Value: kadm.StringPtr(value)}}, "wh.public.t")
	if err == nil {
		_, err = rs.On("wh.public.t", nil)
	}
	if err == nil {
		err = rs[0].Err
	}
	if err != nil {
		h.t.Fatalf("set %s %s: %v", key, value, err)
	}
}

// lostRecords sums what m counted lost and checks that status names it.
func lostRecords(t *testing.T, m *observe.Metrics) int64 {
	t.Helper()
	var n int64
	for _, r := range m.LostRanges()["s1"] {
		n += r.To - r.From
	}
	st := observe.Status{SinkOnly: true, Sinks: []observe.SinkStatus{{Name: "s1", Members: []string{"m"}}}}
	st.AddRunning(m.Running())
	if healthy := st.Healthy; healthy != (n == 0) {
		t.Errorf("status healthy = %v with %d records lost: %v", healthy, n, st.Problems)
	}
	return n
}

func upserts(from, to int32, v int32) []*change.Event {
	var evs []*change.Event
	for id := from; id <= to; id++ {
		evs = append(evs, upsert(id, v, "n"))
	}
	return evs
}

// TestRecordsDeletedBeforeAppliedAreReported: a sink that was down while retention deleted
// records it had not applied cannot apply them, but says so: every deleted record the target
// never got is counted lost (metric, status), and the sink goes on from the log's start.
func TestRecordsDeletedBeforeAppliedAreReported(t *testing.T) {
	h := newHarness(t)
	h.produce(upserts(1, 30, 1)...)
	h.applyAll(h.sinkConfig(), newMemTarget())

	h.produce(upserts(31, 45, 1)...) // never applied: deleted while the sink is down
	h.deleteAll()
	h.produce(upserts(46, 60, 1)...)
	h.cfg.Sinks = nil
	target2 := newMemTarget()
	m2 := observe.NewMetrics()
	_, stop2 := h.start(h.sinkConfig(), target2, sink.WithMetrics(m2))
	end := h.endOffsets()
	waitFor(t, "the records after the deleted ones committed", func() bool { return h.committed("s1") == end })
	if n := len(target2.snapshot()); n != 15 {
		t.Fatalf("the restarted sink applied %d keys, want the 15 still in Kafka", n)
	}
	if n := lostRecords(t, m2); n != 15 {
		t.Fatalf("%d records reported lost, want the 15 deleted before the sink applied them", n)
	}
	stop2()

	// After the sink is gone, status still finds them: the dead-letter topic records each range.
	var inDLQ int64
	for _, d := range h.dlq("s1") {
		r, ok := observe.LostRangeOf(d)
		if !ok || d.Key != nil || d.Value != nil || r.Topic != "wh.public.t" {
			t.Fatalf("dead letter %+v (%+v): want only records of lost ranges of wh.public.t, without key or value", d, r)
		}
		inDLQ += r.To - r.From
	}
	if inDLQ != 15 {
		t.Fatalf("the dead-letter topic records %d lost records, want 15", inDLQ)
	}
	st, err := observe.Collect(context.Background(), h.cfg, []kgo.Opt{kgo.SeedBrokers(h.kf.Brokers()...)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var inStatus int64
	for _, r := range st.Sinks[0].Lost {
		inStatus += r.To - r.From
	}
	if inStatus != 15 || !strings.Contains(strings.Join(st.Problems, "\n"), "15 record(s) were deleted from Kafka before the sink applied them") {
		t.Errorf("status of the stopped sink: %d lost, problems %q; want the 15 records", inStatus, st.Problems)
	}
}

// TestNewSinkOnTopicMissingItsStart: a sink added to a pipeline whose topic has already lost
// its first records (retention under cleanup_policy delete) reads what is left, and the rows only
// those records carried never reach its target: the deleted records are reported lost, as for a
// sink that fell behind.
func TestNewSinkOnTopicMissingItsStart(t *testing.T) {
	h := newHarness(t)
	h.produce(upserts(1, 30, 1)...)
	h.deleteAll()
	h.produce(upserts(31, 45, 1)...)
	target := newMemTarget()
	m := observe.NewMetrics()
	_, stop := h.start(h.sinkConfig(), target, sink.WithMetrics(m))
	defer stop()
	end := h.endOffsets()
	waitFor(t, "the records still in Kafka committed", func() bool { return h.committed("s1") == end })
	if n := len(target.snapshot()); n != 15 {
		t.Fatalf("the new sink applied %d keys, want the 15 still in Kafka", n)
	}
	waitFor(t, "the deleted records reported lost", func() bool { return lostRecords(t, m) == 30 })
}

// TestCompactionIsNotLoss: on a topic whose cleanup.policy is compact alone, the embedded
// broker's compaction moves a partition's first offset past records a later record of the same
// key supersedes. A sink stopped behind them, and a new sink, get every key's latest state and
// report nothing lost.
func TestCompactionIsNotLoss(t *testing.T) {
	h := newHarness(t)
	h.produce(upserts(1, 20, 1)...)
	h.applyAll(h.sinkConfig(), newMemTarget())
	end := h.endOffsets()

	// Every key written again, then compacted: each partition's log start moves past the
	// sink's position.
	h.produce(upserts(1, 20, 2)...)
	h.produce(upserts(1, 20, 3)...)
	starts := func() (n int64) {
		o, err := kadm.NewClient(h.cl).ListStartOffsets(context.Background(), "wh.public.t")
		if err != nil {
			t.Fatal(err)
		}
		o.Each(func(l kadm.ListedOffset) { n += l.Offset })
		return n
	}
	h.kf.Cluster.Compact()
	if n := starts(); n <= end {
		t.Fatalf("compaction left the log starts at %d in all, want past the sink's position %d", n, end)
	}
	for _, tc := range []struct{ name, group string }{{"stopped behind", "s1"}, {"new", "s2"}} {
		h.cfg.Sinks = nil
		target := newMemTarget()
		m := h.applyAll(h.sinkConfig(func(s *config.Sink) { s.Name = tc.group }), target)
		rows := target.snapshot()
		for id := int32(1); id <= 20; id++ {
			if r := rows[fmt.Sprint(id)]; r == nil || fmt.Sprint(r["v"]) != "3" {
				t.Errorf("%s sink: key %d holds %v, want v 3", tc.name, id, r)
			}
		}
		if n := len(m.LostRanges()[tc.group]); n != 0 {
			t.Errorf("%s sink: %d ranges reported lost after a compaction: %v", tc.name, n, m.LostRanges())
		}
	}
}

// TestDeletesAtRisk: a sink stopped for longer than its compacted topic's delete.retention.ms
// never sees the deletes that compaction removed meanwhile, tombstone and all, and its target
// keeps those rows. Nothing in Kafka can say which keys, but the sink reports the records it
// resumes before that are older than delete.retention.ms: error log, metric, dead letter, status.
// (TestDeleteRisks in pkg/kafka covers which positions are at risk.)
// A sink that had applied the deletes, and one whose position replay --reset set, report nothing.
// A sink whose read of those records fails reports nothing either, but warns that it could not
// check, and goes on.
func TestDeletesAtRisk(t *testing.T) {
	h := newHarness(t)
	h.setTopicConfig("delete.retention.ms", "500")
	h.produce(upserts(1, 20, 1)...)
	stopped, unread := newMemTarget(), newMemTarget()
	h.applyAll(h.sinkConfig(), stopped)
	h.cfg.Sinks = nil
	h.applyAll(h.sinkConfig(func(s *config.Sink) { s.Name = "unread" }), unread)
	h.produce(del(1), del(2), del(3))
	// Rows of other keys written then stay: from their age the sink tells that it was stopped
	// longer than delete.retention.ms (with only the deletes, compaction would leave nothing to
	// tell how old they were: a warning only, see kafka.DeleteRiskUnknown).
	h.produce(upserts(41, 60, 1)...)
	h.cfg.Sinks = nil
	h.applyAll(h.sinkConfig(func(s *config.Sink) { s.Name = "applied" }), newMemTarget())
	reset := kadm.Offsets{}
	for p := range int32(3) {
		reset.Add(kadm.Offset{Topic: "wh.public.t", Partition: p, At: 0, LeaderEpoch: -1, Metadata: kafka.ResetCommitMetadata})
	}
	if _, err := kadm.NewClient(h.cl).CommitOffsets(context.Background(), "reset", reset); err != nil {
		t.Fatal(err)
	}

	time.Sleep(600 * time.Millisecond) // the deletes grow older than delete.retention.ms
	h.produce(upserts(21, 40, 1)...)   // later batches: compaction cleans the ones before
	h.kf.Cluster.Compact()
	recs, err := testenv.ConsumeAll(context.Background(), h.kf.Brokers(), "wh.public.t")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if id := h.idOf(r.Key); id <= 3 {
			t.Fatalf("compaction kept a record of deleted key %d at offset %d", id, r.Offset)
		}
	}

	for _, tc := range []struct {
		group      string
		target     *memTarget
		atRisk     bool
		unreadable bool // the sink's read of the records from its position fails
	}{{"s1", stopped, true, false}, {"applied", newMemTarget(), false, false}, {"reset", newMemTarget(), false, false},
		{"unread", unread, false, true}} {
		h.cfg.Sinks = nil
		core, logs := observer.New(zap.WarnLevel)
		if tc.unreadable {
			h.failNextFetch("wh.public.t")
		}
		m := h.applyAll(h.sinkConfig(func(s *config.Sink) { s.Name = tc.group }), tc.target, sink.WithLogger(zap.New(core)))
		warned := logs.FilterMessageSnippet("could not read the records from the sink's positions").Len() > 0
		if warned != tc.unreadable {
			t.Errorf("%s: warned that the records could not be read: %v, want %v", tc.group, warned, tc.unreadable)
		}
		var n int64
		for _, r := range m.LostRanges()[tc.group] {
			if !r.DeletesAtRisk {
				t.Errorf("%s: range %s reported lost, want only deletes at risk", tc.group, r)
			}
			n += r.To - r.From
		}
		if (n > 0) != tc.atRisk {
			t.Errorf("%s: %d record(s) reported with deletes at risk, want some: %v", tc.group, n, tc.atRisk)
		}
		if !tc.atRisk {
			continue
		}
		if _, kept := tc.target.snapshot()["1"]; !kept {
			t.Errorf("%s: the target applied a delete compaction removed: the test no longer shows the risk", tc.group)
		}
		st := observe.Status{SinkOnly: true, Sinks: []observe.SinkStatus{{Name: tc.group, Members: []string{"m"}}}}
		st.AddRunning(m.Running())
		if want := "older than their topic's delete.retention.ms"; st.Healthy || !strings.Contains(strings.Join(st.Problems, "\n"), want) {
			t.Errorf("%s: status healthy %v, problems %q: want one saying %q", tc.group, st.Healthy, st.Problems, want)
		}
		letters := h.dlq(tc.group)
		if len(letters) == 0 {
			t.Fatalf("%s: no dead letter for the records at risk", tc.group)
		}
		if r, ok := observe.LostRangeOf(letters[0]); !ok || !r.DeletesAtRisk {
			t.Errorf("%s: dead letter %v reads as %+v, want a range of deletes at risk", tc.group, letters[0].Headers, r)
		}
	}
}

// failNextFetch makes the broker answer the next fetch of topic with TOPIC_AUTHORIZATION_FAILED
// for each partition asked for; other requests go through.
func (h *harness) failNextFetch(topic string) {
	h.t.Helper()
	td, err := kadm.NewClient(h.cl).ListTopics(context.Background(), topic)
	if err != nil || td[topic].Err != nil {
		h.t.Fatalf("describe %s: %v %v", topic, err, td[topic].Err)
	}
	id := td[topic].ID
	h.kf.Cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		fr := req.(*kmsg.FetchRequest)
		resp := fr.ResponseKind().(*kmsg.FetchResponse)
		for _, rt := range fr.Topics {
			if rt.Topic != topic && rt.TopicID != id {
				continue
			}
			t := kmsg.NewFetchResponseTopic()
			t.Topic, t.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				p := kmsg.NewFetchResponseTopicPartition()
				p.Partition, p.ErrorCode = rp.Partition, kerr.TopicAuthorizationFailed.Code
				t.Partitions = append(t.Partitions, p)
			}
			resp.Topics = append(resp.Topics, t)
		}
		if len(resp.Topics) == 0 {
			return nil, nil, false // another topic's: the broker answers, and this waits for the next
		}
		return resp, nil, true
	})
}

// gatedTarget applies batches after the test opens its gate, once it has applied first.
type gatedTarget struct {
	*memTarget
	first   int
	once    sync.Once
	blocked chan struct{}
	gate    chan struct{}
}

func (g *gatedTarget) Apply(ctx context.Context, b *sink.Batch) error {
	if g.memTarget.snapshotLen() >= g.first {
		g.once.Do(func() { close(g.blocked) })
		select {
		case <-g.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.memTarget.Apply(ctx, b)
}

func (m *memTarget) snapshotLen() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rows)
}

// TestFallingBehindRetentionWhileRunning: a running sink whose target is stuck while retention
// deletes records it has not fetched yet does not skip them silently when it goes on: whatever
// was deleted and never applied is counted lost.
func TestFallingBehindRetentionWhileRunning(t *testing.T) {
	h := newHarness(t)
	h.produce(upserts(1, 30, 1)...)
	target := &gatedTarget{memTarget: newMemTarget(), first: 30, blocked: make(chan struct{}), gate: make(chan struct{})}
	m := observe.NewMetrics()
	h.start(h.sinkConfig(), target, sink.WithMetrics(m))
	h.produce(upserts(31, 60, 1)...) // the target blocks on these
	<-target.blocked
	h.produce(upserts(61, 90, 1)...)
	h.deleteAll()
	h.produce(upserts(91, 120, 1)...)
	close(target.gate)
	end := h.endOffsets()
	waitFor(t, "the sink caught up", func() bool { return h.committed("s1") == end })
	applied := target.snapshot()
	missing := 0
	for id := 1; id <= 120; id++ {
		if _, ok := applied[fmt.Sprint(id)]; !ok {
			missing++
		}
	}
	if missing == 0 {
		t.Skip("the client had fetched every deleted record before the deletion: nothing to lose this run")
	}
	if n := lostRecords(t, m); n != int64(missing) {
		t.Fatalf("%d records reported lost, want the %d deleted before the sink applied them", n, missing)
	}
}

// TestForeignGroupReset: a group position another tool set (kafka-consumer-groups
// --reset-offsets commits without metadata) is named in a warning: a target that stores its
// offsets keeps its own, which win; another resumes there. The sink's own commits are not.
func TestForeignGroupReset(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target sink.Connector
		want   string
	}{
		{"target stores offsets", newOffsetTarget(), "the target stores its own and it wins"},
		{"target stores none", newMemTarget(), "the sink resumes there"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.produce(upserts(1, 30, 1)...)
			h.applyAll(h.sinkConfig(), tc.target)
			next := int32(31)
			restart := func() *observer.ObservedLogs {
				core, logs := observer.New(zap.WarnLevel)
				h.cfg.Sinks = nil
				_, stop := h.start(h.sinkConfig(), tc.target, sink.WithLogger(zap.New(core)))
				h.produce(upsert(next, 1, "n")) // applied once the sink has its partitions
				next++
				end := h.endOffsets()
				waitFor(t, "every record committed", func() bool { return h.committed("s1") == end })
				stop()
				return logs.FilterMessageSnippet("set by another tool")
			}
			if n := restart().Len(); n != 0 {
				t.Fatalf("%d warnings about the sink's own commits", n)
			}
			back := kadm.Offsets{}
			for p := range int32(3) {
				back.Add(kadm.Offset{Topic: "wh.public.t", Partition: p, At: 0, LeaderEpoch: -1})
			}
			if _, err := kadm.NewClient(h.cl).CommitOffsets(context.Background(), "s1", back); err != nil {
				t.Fatal(err)
			}
			warned := restart()
			if warned.Len() == 0 || !strings.Contains(warned.All()[0].Message, tc.want) {
				t.Errorf("warnings %v: want one saying %q", warned.All(), tc.want)
			}
		})
	}
}

// offsetTarget is a memTarget that stores each partition's next offset with the rows, as SQL
// targets do, and lets them be reset.
type offsetTarget struct {
	*memTarget
	omu    sync.Mutex
	stored map[string]map[int32]int64
	down   int // fail this many more ResetOffsets calls, as a target that is down would
}

func newOffsetTarget() *offsetTarget {
	return &offsetTarget{memTarget: newMemTarget(), stored: map[string]map[int32]int64{}}
}

func (o *offsetTarget) Apply(ctx context.Context, b *sink.Batch) error {
	if err := o.memTarget.Apply(ctx, b); err != nil {
		return err
	}
	return o.ResetOffsets(ctx, b.Sink, map[string]map[int32]int64{b.Topic: {b.Partition: b.NextOffset}})
}

func (o *offsetTarget) Offsets(_ context.Context, _ string, topics []string) (map[string]map[int32]int64, error) {
	o.omu.Lock()
	defer o.omu.Unlock()
	out := map[string]map[int32]int64{}
	for _, t := range topics {
		out[t] = maps.Clone(o.stored[t])
	}
	return out, nil
}

func (o *offsetTarget) ResetOffsets(_ context.Context, _ string, next map[string]map[int32]int64) error {
	o.omu.Lock()
	defer o.omu.Unlock()
	if o.down > 0 {
		o.down--
		return errors.New("connection refused")
	}
	for t, parts := range next {
		if o.stored[t] == nil {
			o.stored[t] = map[int32]int64{}
		}
		maps.Copy(o.stored[t], parts)
	}
	return nil
}

// recreateTopic deletes the harness's topic and creates it again, and gives the harness a new
// producer (its own knows the old topic's ID).
func (h *harness) recreateTopic() {
	h.t.Helper()
	ctx := context.Background()
	adm := kadm.NewClient(h.cl)
	if _, err := adm.DeleteTopics(ctx, "wh.public.t"); err != nil {
		h.t.Fatal(err)
	}
	if err := kafka.EnsureTopics(ctx, adm, []string{"wh.public.t"}, h.cfg.Kafka.Topics, nil); err != nil {
		h.t.Fatal(err)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(h.kf.Brokers()...)}, kafka.ProducerOpts()...)...)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(cl.Close)
	h.cl = cl
}

// waitForIDs waits until target holds a row of every id in [from, to].
func waitForIDs(t *testing.T, target *memTarget, from, to int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("ids %d-%d applied", from, to), func() bool {
		rows := target.snapshot()
		for id := from; id <= to; id++ {
			if _, ok := rows[fmt.Sprint(id)]; !ok {
				return false
			}
		}
		return true
	})
}

// TestTopicRecreatedWhileRunning: a topic deleted and created again while a sink consumes it
// is read again, from its start: a client that has read a topic never reads another of the same
// name, and the sink would otherwise wait on it for good, looking healthy.
func TestTopicRecreatedWhileRunning(t *testing.T) {
	for _, stores := range []bool{false, true} {
		t.Run(fmt.Sprintf("offsets in target %v", stores), func(t *testing.T) {
			h := newHarness(t)
			h.produce(upserts(1, 30, 1)...)
			var target sink.Connector
			mem := newMemTarget()
			target = mem
			if stores {
				ot := newOffsetTarget()
				target, mem = ot, ot.memTarget
			}
			h.start(h.sinkConfig(), target)
			waitForIDs(t, mem, 1, 30)
			h.recreateTopic()
			h.produce(upserts(101, 190, 1)...)
			waitForIDs(t, mem, 101, 190)
		})
	}
}

// TestRecreatedTopicIsReadFromItsStart: a target that stores offsets keeps them across a sink's
// restarts; when the topic was deleted and created again meanwhile (a new cluster, say), those
// offsets count in the old topic, and may still be in range of the new one. The sink reads the
// new topic from its start instead of skipping its first records.
func TestRecreatedTopicIsReadFromItsStart(t *testing.T) {
	h := newHarness(t)
	h.produce(upserts(1, 30, 1)...)
	target := newOffsetTarget()
	_, stop := h.start(h.sinkConfig(), target)
	end := h.endOffsets()
	waitFor(t, "the first records committed", func() bool { return h.committed("s1") == end })
	stop()
	stored, _ := target.Offsets(context.Background(), "s1", []string{"wh.public.t"})
	for p := range int32(3) {
		if _, ok := stored["wh.public.t"][-1-p]; !ok {
			t.Fatalf("the target holds no topic ID for partition %d: %v", p, stored)
		}
	}

	h.recreateTopic()
	h.produce(upserts(101, 190, 1)...) // more records per partition than the stored offsets
	h.cfg.Sinks = nil
	h.start(h.sinkConfig(), target)
	waitForIDs(t, target.memTarget, 101, 190)
}

// TestTopicIDsWaitForTheTarget: a target that cannot store the topic IDs when the sink is
// assigned its partitions (down for the moment) fails the run, naming the target, as a target
// down at any other point does; the run after it (the process restarts a failed sink) stores
// them and applies every record.
func TestTopicIDsWaitForTheTarget(t *testing.T) {
	h := newHarness(t)
	h.produce(upserts(1, 30, 1)...)
	target := newOffsetTarget()
	target.down = 1
	sc := h.sinkConfig()
	h.cfg.Sinks = append(h.cfg.Sinks, sc)
	factories := map[string]sink.Factory{"mem": func(context.Context, sink.Params) (sink.Connector, error) { return target, nil }}
	s, err := sink.New(context.Background(), h.cfg, sc, factories, sink.WithLogger(zaptest.NewLogger(t)),
		sink.WithKafkaOpts(kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(500*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			if err := s.Run(ctx); i == 0 {
				first <- err
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	if err := <-first; err == nil || !strings.Contains(err.Error(), "store topic IDs in the target: connection refused") {
		t.Fatalf("first run: %v, want the target's failure", err)
	}
	waitForIDs(t, target.memTarget, 1, 30)
	stored, _ := target.Offsets(context.Background(), "s1", []string{"wh.public.t"})
	for p := range int32(3) {
		if _, ok := stored["wh.public.t"][-1-p]; !ok {
			t.Errorf("no topic ID stored for partition %d: %v", p, stored)
		}
	}
}

// TestLostRangeWaitsForTheDeadLetterTopic: a sink that finds records deleted before it applied
// them while its dead-letter topic refuses writes does not move past them unrecorded: it stops
// with an error naming them, commits nothing past them, and the next run records them and goes on.
func TestLostRangeWaitsForTheDeadLetterTopic(t *testing.T) {
	h := newHarness(t)
	h.produce(upserts(1, 30, 1)...)
	_, stop := h.start(h.sinkConfig(), newMemTarget())
	end := h.endOffsets()
	waitFor(t, "the first records committed", func() bool { return h.committed("s1") == end })
	stop()
	before := h.committed("s1")
	h.produce(upserts(31, 45, 1)...)
	h.deleteAll()
	h.produce(upserts(46, 60, 1)...)

	topics, err := kadm.NewClient(h.cl).ListTopics(context.Background(), sink.DLQTopic("s1"))
	if err != nil {
		t.Fatal(err)
	}
	dlqID := topics[sink.DLQTopic("s1")].ID
	var refusing atomic.Bool
	refusing.Store(true)
	c := h.kf.Cluster
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		r := req.(*kmsg.ProduceRequest)
		toDLQ := len(r.Topics) == 1 && (r.Topics[0].Topic == sink.DLQTopic("s1") || r.Topics[0].TopicID == dlqID)
		if !toDLQ || !refusing.Load() {
			return nil, nil, false
		}
		resp := r.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	h.cfg.Sinks = []config.Sink{h.sinkConfig()}
	target := newMemTarget()
	factories := map[string]sink.Factory{"mem": func(context.Context, sink.Params) (sink.Connector, error) { return target, nil }}
	s, err := sink.New(context.Background(), h.cfg, h.cfg.Sinks[0], factories, sink.WithLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = s.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "dead-letter topic s1.dlq") || !strings.Contains(err.Error(), "wh.public.t/") {
		t.Fatalf("run with the dead-letter topic refusing writes: %v; want an error naming the lost records and the topic", err)
	}
	if got := h.committed("s1"); got != before || len(target.snapshot()) != 0 {
		t.Fatalf("the failed run committed %d (before: %d) and applied %d keys: it moved past records it did not record", got, before, len(target.snapshot()))
	}

	refusing.Store(false)
	h.cfg.Sinks = nil
	h.start(h.sinkConfig(), target)
	end = h.endOffsets()
	waitFor(t, "the records after the deleted ones committed", func() bool { return h.committed("s1") == end })
	var recorded int64
	for _, d := range h.dlq("s1") {
		if r, ok := observe.LostRangeOf(d); ok {
			recorded += r.To - r.From
		}
	}
	if recorded != 15 {
		t.Fatalf("the dead-letter topic records %d lost records, want the 15 deleted", recorded)
	}
	if n := len(target.snapshot()); n != 15 {
		t.Fatalf("the sink applied %d keys, want the 15 still in Kafka", n)
	}
}
