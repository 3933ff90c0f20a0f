package sink_test

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/observe"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// TestMissingColumnIsNotWrittenAsNull: a mapping that reads a column the events lack (renamed at
// the source) writes nothing for them, not a NULL; the records fail naming field and column.
func TestMissingColumnIsNotWrittenAsNull(t *testing.T) {
	h := newHarness(t)
	h.produce(upsert(1, 1, "a"), upsert(2, 2, "b"), del(3))
	target := newMemTarget()
	h.start(h.sinkConfig(func(s *config.Sink) {
		s.Map["title"] = "after.title"
		s.Retry = config.Retry{MaxAttempts: 2, MaxElapsed: time.Minute}
	}), target)
	end := h.endOffsets()
	waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
	if rows := target.snapshot(); len(rows) != 0 {
		t.Errorf("rows %v, want none written", rows)
	}
	dlq := h.dlq("s1")
	if len(dlq) != 2 {
		t.Fatalf("%d dead letters, want the 2 upserts", len(dlq))
	}
	for _, r := range dlq {
		if reason := header(r, sink.HeaderReason); !strings.Contains(reason, "map.title") || !strings.Contains(reason, `"title"`) {
			t.Errorf("reason %q does not name the field and the column", reason)
		}
	}
}

// TestMissingColumnHoldsThePartition: a record whose event lacks a column the mapping reads does
// not move on at once: its partition holds (nothing committed, nothing after it applied) with
// the sink, field and column shown in the log, the metrics and status, the mapping is tried again
// under the retry policy, and only once that gives up is the record dead-lettered and the
// partition moves on.
func TestMissingColumnHoldsThePartition(t *testing.T) {
	h := newHarness(t)
	h.produce(upsert(1, 1, "a"))
	part := h.partitionWithRecords()
	target := newMemTarget()
	m := observe.NewMetrics()
	core, logs := observer.New(zap.WarnLevel)
	sc := h.sinkConfig(func(s *config.Sink) {
		s.Map["title"] = "after.title"
		s.Retry = config.Retry{MaxAttempts: 1000, MaxElapsed: 3 * time.Second}
	})
	start := time.Now()
	h.runSink(sc, target, m, zap.New(core), func(*sink.Sink) {})
	waitFor(t, "the hold to show", func() bool { _, ok := m.MappingHolds()["s1"]; return ok })
	hold := m.MappingHolds()["s1"]
	if hold.Field != "map.title" || hold.Column != "title" || hold.Partition != part || hold.Offset != 0 {
		t.Errorf("hold %+v, want map.title reading title at wh.public.t/%d@0", hold, part)
	}
	st := observe.Status{Capture: observe.CaptureStatus{Slot: "backflow", Exists: true, Active: true},
		Sinks: []observe.SinkStatus{{Name: "s1", Group: "s1", Members: []string{"m"}}}}
	st.AddRunning(m.Running())
	if problems := strings.Join(st.Problems, "\n"); st.Healthy || !strings.Contains(problems, "sink s1: holds wh.public.t/") ||
		!strings.Contains(problems, `no column "title"`) {
		t.Errorf("status while held: healthy %v, problems %q", st.Healthy, st.Problems)
	}
	if c := h.committed("s1"); c > 0 {
		t.Errorf("offsets moved to %d while the record was held", c)
	}
	end := h.endOffsets()
	waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
	if took := time.Since(start); took < 3*time.Second {
		t.Errorf("the record was dead-lettered after %s, before retry.max_elapsed (3s)", took)
	}
	if dlq := h.dlq("s1"); len(dlq) != 1 || !strings.Contains(header(dlq[0], sink.HeaderReason), `no column "title"`) {
		t.Errorf("dead letters %d, want the held record naming its column", len(dlq))
	}
	if n := metricValue(t, m, "backflow_sink_mapping_errors_total", map[string]string{"sink": "s1", "field": "map.title", "column": "title"}); n < 2 {
		t.Errorf("backflow_sink_mapping_errors_total{s1,map.title,title} = %v, want a count of every try", n)
	}
	if _, ok := m.MappingHolds()["s1"]; ok {
		t.Error("the hold is still shown after the record was dead-lettered")
	}
	if logs.FilterMessageSnippet("lacks a column").FilterField(zap.String("column", "title")).FilterField(zap.String("field", "map.title")).Len() < 2 {
		t.Errorf("logs do not name the field and the column at each try: %v", logs.All())
	}
}
