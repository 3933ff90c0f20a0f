package sink_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/kafka"
)

// produceTruncate writes a truncate of public.t as capture does: one copy on each partition.
func (h *harness) produceTruncate(id string) {
	h.t.Helper()
	ctx := context.Background()
	_, val, err := h.enc.Encode(ctx, "wh.public.t", &change.Event{Op: change.OpTruncate, Table: h.tbl})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.cl.ProduceSync(ctx, kafka.TruncateRecords(ctx, "wh.public.t", id, val, 3)...).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}

// TestTruncateBarrierAcrossMembers: rows, a truncate, rows written after it, the truncate's
// copies again (a restart of capture writes them again) and more rows, on 3 partitions read by
// two members of the group. The truncate removes exactly the rows written before it, once; its
// copies written again are passed.
func TestTruncateBarrierAcrossMembers(t *testing.T) {
	h := newHarness(t)
	target := newMemTarget()
	sc := h.sinkConfig()
	h.start(sc, target)
	h.start(sc, target)
	rows := func(from, to, v int32) {
		var evs []*change.Event
		for id := from; id <= to; id++ {
			evs = append(evs, upsert(id, v, "n"))
		}
		h.produce(evs...)
	}
	rows(1, 60, 1)
	h.produceTruncate("0/1")
	rows(31, 90, 2)
	h.produceTruncate("0/1")
	rows(91, 100, 3)

	end := h.endOffsets()
	waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
	got := target.snapshot()
	want := map[string]int32{}
	for id := int32(31); id <= 100; id++ {
		want[fmt.Sprint(id)] = map[bool]int32{true: 2, false: 3}[id <= 90]
	}
	for k, v := range want {
		if got[k] == nil || got[k]["v"] != v {
			t.Errorf("row %s: %v, want v = %d", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("row %s written before the truncate survived it", k)
		}
	}
}
