package sink_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/observe"
	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// hangingDecoder never returns for records of one key, as a sink that hangs on a partition
// (polling goes on, the partition never commits again) would look.
type hangingDecoder struct {
	sink.Decoder
	key []byte
}

func (d hangingDecoder) Decode(ctx context.Context, topic string, key, value []byte) (*change.Event, error) {
	if bytes.Equal(key, d.key) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return d.Decoder.Decode(ctx, topic, key, value)
}

// TestStallIsReported: a partition whose lag does not move while its target answers is
// reported stalled (Warn log naming it, backflow_sink_stalled, a status problem); a sink that is
// merely idle is not, and one whose target has been down for stall_after is reported waiting
// instead (an error naming the target's answer, backflow_sink_waiting, a status problem).
func TestStallIsReported(t *testing.T) {
	tests := []struct {
		name    string
		hang    bool // the sink hangs on the partition of id 1
		down    bool // the target answers every Apply with a retryable error
		stalled bool
	}{
		{name: "hung partition", hang: true, stalled: true},
		{name: "idle", stalled: false},
		{name: "target down", down: true, stalled: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.produce(upsert(1, 1, "a"), upsert(1, 2, "b"))
			part := h.partitionWithRecords()
			target := newMemTarget()
			if tt.down {
				target.transient = 1 << 30
			}
			m := observe.NewMetrics()
			core, logs := observer.New(zap.InfoLevel)
			sc := h.sinkConfig(func(s *config.Sink) { s.StallAfter = time.Second })
			h.runSink(sc, target, m, zap.New(core), func(s *sink.Sink) {
				if tt.hang {
					sink.WrapDecoder(s, func(d sink.Decoder) sink.Decoder { return hangingDecoder{d, h.keyOf(1)} })
				}
			})
			if !tt.stalled {
				if !tt.down {
					end := h.endOffsets()
					waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
				}
				time.Sleep(3 * time.Second) // three times stall_after
			} else {
				waitFor(t, "the stall to show", func() bool { return stalledGauge(t, m, part) == 1 })
			}
			checkStall(t, m, logs, part, tt.stalled, tt.down)
		})
	}
}

func checkStall(t *testing.T, m *observe.Metrics, logs *observer.ObservedLogs, part int32, want, waiting bool) {
	t.Helper()
	if got := stalledGauge(t, m, part) == 1; got != want {
		t.Errorf("backflow_sink_stalled{partition=%d} = %v, want %v", part, got, want)
	}
	lag := metricValue(t, m, "backflow_sink_consumer_lag", map[string]string{"sink": "s1", "topic": "wh.public.t", "partition": fmt.Sprint(part)})
	if wantLag := want || waiting; (lag > 0) != wantLag { // the group's lag, whether or not anything was committed
		t.Errorf("backflow_sink_consumer_lag{partition=%d} = %v, want lag: %v", part, lag, wantLag)
	}
	warned := false
	for _, e := range logs.FilterMessageSnippet("sink stalled").All() {
		names := fmt.Sprint(e.ContextMap()["partitions"])
		warned = warned || e.Level == zap.WarnLevel && strings.Contains(names, fmt.Sprintf("wh.public.t/%d ", part))
	}
	if warned != want {
		t.Errorf("Warn naming wh.public.t/%d logged: %v, want %v", part, warned, want)
	}
	st := observe.Status{Capture: observe.CaptureStatus{Slot: "backflow", Exists: true, Active: true},
		Sinks: []observe.SinkStatus{{Name: "s1", Group: "s1", Members: []string{"m"}}}}
	st.AddRunning(m.Running())
	problems := strings.Join(st.Problems, "\n")
	problem := strings.Contains(problems, fmt.Sprintf("sink s1: stalled: lag has not moved while the target is reachable on wh.public.t/%d ", part))
	if problem != want || st.Healthy == (want || waiting) {
		t.Errorf("status healthy %v, problems %q; want a stall reported: %v", st.Healthy, st.Problems, want)
	}
	// A target down longer than stall_after: a problem naming the partition and the target's answer.
	waitProblem := strings.Contains(problems, fmt.Sprintf("waiting on its target (retried until it succeeds; nothing after it in the partition is applied) on wh.public.t/%d since ", part)) &&
		strings.Contains(problems, "target unavailable")
	gauge := metricValue(t, m, "backflow_sink_waiting", map[string]string{"sink": "s1", "topic": "wh.public.t", "partition": fmt.Sprint(part)})
	if waitProblem != waiting || (gauge == 1) != waiting {
		t.Errorf("waiting reported in status: %v, backflow_sink_waiting = %v; want waiting: %v (problems %q)", waitProblem, gauge, waiting, st.Problems)
	}
	logged := false
	for _, e := range logs.FilterMessageSnippet("has waited on its target").All() {
		logged = logged || e.Level == zap.ErrorLevel && fmt.Sprint(e.ContextMap()["partition"]) == fmt.Sprint(part)
	}
	if logged != waiting {
		t.Errorf("error for the long wait logged: %v, want %v", logged, waiting)
	}
}

// stalledGauge reads backflow_sink_stalled{sink="s1",topic="wh.public.t",partition=part}.
func stalledGauge(t *testing.T, m *observe.Metrics, part int32) float64 {
	return metricValue(t, m, "backflow_sink_stalled", map[string]string{"sink": "s1", "topic": "wh.public.t", "partition": fmt.Sprint(part)})
}

// metricValue reads the gauge or counter name with labels (0 when there is none).
func metricValue(t *testing.T, m *observe.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range mt.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if maps.Equal(got, labels) {
				return mt.GetGauge().GetValue() + mt.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// partitionWithRecords is the one partition of wh.public.t that has records.
func (h *harness) partitionWithRecords() int32 {
	h.t.Helper()
	ends, err := kadm.NewClient(h.cl).ListEndOffsets(context.Background(), "wh.public.t")
	if err != nil {
		h.t.Fatal(err)
	}
	part := int32(-1)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			part = o.Partition
		}
	})
	return part
}

// keyOf is the Kafka key of public.t's row id.
func (h *harness) keyOf(id int32) []byte {
	h.t.Helper()
	ev := upsert(id, 0, "")
	ev.Table = h.tbl
	key, _, err := h.enc.Encode(context.Background(), "wh.public.t", ev)
	if err != nil {
		h.t.Fatal(err)
	}
	return key
}

// runSink runs a sink with metrics and a logger until the test ends; prepared is called after
// Prepare, before Run.
func (h *harness) runSink(sc config.Sink, target sink.Connector, m *observe.Metrics, log *zap.Logger, prepared func(*sink.Sink)) {
	h.t.Helper()
	h.cfg.Sinks = append(h.cfg.Sinks, sc)
	factories := map[string]sink.Factory{"mem": func(context.Context, sink.Params) (sink.Connector, error) { return target, nil }}
	s, err := sink.New(context.Background(), h.cfg, sc, factories, sink.WithLogger(log), sink.WithMetrics(m))
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Prepare(ctx); err != nil {
		h.t.Fatal(err)
	}
	prepared(s)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("sink run: %v", err)
		}
	})
}

// TestAbsentTopicIsNamed: a sink reading a topic that does not exist waits for it, and after
// stall_after says so once, naming it; a topic that exists is not named.
func TestAbsentTopicIsNamed(t *testing.T) {
	h := newHarness(t)
	core, logs := observer.New(zap.InfoLevel)
	sc := h.sinkConfig(func(s *config.Sink) {
		s.StallAfter = 500 * time.Millisecond
		s.Topics = []string{"wh.public.t", "wh.public.tt"}
	})
	h.runSink(sc, newMemTarget(), observe.NewMetrics(), zap.New(core), func(*sink.Sink) {})
	named := func(topic string) int {
		n := 0
		for _, e := range logs.FilterMessageSnippet("a topic this sink reads does not exist").All() {
			if e.ContextMap()["topic"] == topic {
				n++
			}
		}
		return n
	}
	waitFor(t, "the absent topic named", func() bool { return named("wh.public.tt") > 0 })
	time.Sleep(time.Second) // more checks: still once
	if n, other := named("wh.public.tt"), named("wh.public.t"); n != 1 || other != 0 {
		t.Errorf("absent topic named %d times, the existing one %d; want 1 and 0", n, other)
	}
}

// TestNoStallAtTransactionMarkers: a partition of a topic written in Kafka transactions ends in
// a marker (here after a committed and an aborted transaction), which no reader is handed, so
// the group's offset stays short of the end. A sink that applied everything committed there is
// neither stalled nor lagging.
func TestNoStallAtTransactionMarkers(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var recs []*kgo.Record
	for id := int32(1); id <= 2; id++ { // committed, aborted
		ev := upsert(id, 1, "n")
		ev.Table = h.tbl
		key, val, err := h.enc.Encode(ctx, "wh.public.t", ev)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: "wh.public.t", Partition: 0, Key: key, Value: val})
	}
	txn, err := testenv.WriteTransactions(ctx, h.kf.Brokers(),
		testenv.Transaction{Records: recs[:1], End: "commit"}, testenv.Transaction{Records: recs[1:], End: "abort"})
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	target := newMemTarget()
	m := observe.NewMetrics()
	core, logs := observer.New(zap.InfoLevel)
	h.runSink(h.sinkConfig(func(s *config.Sink) { s.StallAfter = time.Second }), target, m, zap.New(core), func(*sink.Sink) {})
	waitFor(t, "the committed row applied", func() bool { return target.snapshot()["1"] != nil })
	time.Sleep(3 * time.Second) // three times stall_after
	if end := h.endOffsets(); h.committed("s1") >= end {
		t.Fatalf("group at %d of %d: the case needs markers after its offset", h.committed("s1"), end)
	}
	checkStall(t, m, logs, 0, false, false)
}
