package sink_test

import (
	"strings"
	"testing"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// TestMissingColumnIsNotWrittenAsNull: a mapping that reads a column the events lack (renamed at
// the source) writes nothing for them, not a NULL; the records fail naming field and column.
func TestMissingColumnIsNotWrittenAsNull(t *testing.T) {
	h := newHarness(t)
	h.produce(upsert(1, 1, "a"), upsert(2, 2, "b"), del(3))
	target := newMemTarget()
	h.start(h.sinkConfig(func(s *config.Sink) { s.Map["title"] = "after.title" }), target)
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
