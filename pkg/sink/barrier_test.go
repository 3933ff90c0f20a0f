package sink_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/testenv"
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

// TestTruncateBarrierAfterCrash starts a member where crashed ones left off, at a truncate of
// 3 partitions: every partition noted it reached the truncate and then either nothing more
// happened (the truncate must be applied: the rows before it go), or the truncate was applied and
// noted and partition 1 went past its copy and applied the rows after it (the copies must be
// passed: applying the truncate again would remove partition 1's newer rows).
func TestTruncateBarrierAfterCrash(t *testing.T) {
	for _, tc := range []struct {
		name    string
		applied bool
		passed  int32 // a partition past its copy, or -1
	}{
		{"all reached, not applied", false, -1},
		{"applied, partition 1 past its copy", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			for id := int32(1); id <= 30; id++ {
				h.produce(upsert(id, 1, "n"))
			}
			h.produceTruncate("0/2")
			for id := int32(31); id <= 60; id++ {
				h.produce(upsert(id, 2, "n"))
			}
			target := h.crashedAt(t, "0/2", tc.applied, tc.passed)
			end := h.endOffsets()
			h.start(h.sinkConfig(), target)
			waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
			got := target.snapshot()
			for id := int32(1); id <= 60; id++ {
				r, want := got[fmt.Sprint(id)], id > 30
				if (r != nil) != want {
					t.Errorf("row %d present %v, want %v", id, r != nil, want)
				}
			}
		})
	}
}

// crashedAt sets up what members of group s1 that crashed at truncate id of public.t leave: the
// target with the rows before the copies (none when the truncate was applied) and those after
// the copy of partition passed, the group's offsets at the copies (passed's at its end), and the
// barrier notes.
func (h *harness) crashedAt(t *testing.T, id string, applied bool, passed int32) *memTarget {
	ctx := context.Background()
	recs, err := testenv.ConsumeAll(ctx, h.kf.Brokers(), "wh.public.t")
	if err != nil {
		t.Fatal(err)
	}
	target := newMemTarget()
	offsets := kadm.Offsets{}
	copyAt := map[int32]bool{}
	for _, r := range recs {
		if _, ok := kafka.TruncateCopyOf(r); ok {
			copyAt[r.Partition] = true
			if r.Partition != passed {
				offsets.Add(kadm.Offset{Topic: r.Topic, Partition: r.Partition, At: r.Offset, LeaderEpoch: -1})
			}
			continue
		}
		if copyAt[r.Partition] && r.Partition == passed || !copyAt[r.Partition] && !applied {
			id := h.idOf(r.Key)
			target.rows[fmt.Sprint(id)] = map[string]any{"id": id, "v": int32(2), "note": "n"}
		}
		if r.Partition == passed {
			offsets.Add(kadm.Offset{Topic: r.Topic, Partition: r.Partition, At: r.Offset + 1, LeaderEpoch: -1})
		}
	}
	if _, err := kadm.NewClient(h.cl).CommitOffsets(ctx, "s1", offsets); err != nil {
		t.Fatal(err)
	}
	if err := sink.NoteTruncate(ctx, []kgo.Opt{kgo.SeedBrokers(h.kf.Brokers()...)}, "s1", "wh.public.t", id, 3, []int32{0, 1, 2}, applied); err != nil {
		t.Fatal(err)
	}
	return target
}

// idOf returns the id of a record key of public.t.
func (h *harness) idOf(key []byte) int32 {
	h.t.Helper()
	for id := int32(1); id <= 1000; id++ {
		k, err := h.enc.EncodeKey(context.Background(), "wh.public.t", h.tbl, change.Row{"id": id})
		if err != nil {
			h.t.Fatal(err)
		}
		if string(k) == string(key) {
			return id
		}
	}
	h.t.Fatalf("no id for key %x", key)
	return 0
}

// TestWaitAtTruncateLetsRebalancesThrough: a member holds every partition at a truncate that
// cannot complete (its copies claim a fourth partition the topic does not have). A second member
// still joins and gets partitions, and no record after a copy is applied.
func TestWaitAtTruncateLetsRebalancesThrough(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	target := newMemTarget()
	h.produce(upsert(1, 1, "n"), upsert(2, 1, "n"), upsert(3, 1, "n"))
	_, val, err := h.enc.Encode(ctx, "wh.public.t", &change.Event{Op: change.OpTruncate, Table: h.tbl})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.cl.ProduceSync(ctx, kafka.TruncateRecords(ctx, "wh.public.t", "0/3", val, 4)[:3]...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for id := int32(10); id <= 40; id++ {
		h.produce(upsert(id, 2, "n"))
	}
	sc := h.sinkConfig()
	h.start(sc, target)
	waitFor(t, "the rows before the truncate applied", func() bool { return len(target.snapshot()) == 3 })
	h.start(sc, newMemTarget())
	adm := kadm.NewClient(h.cl)
	waitFor(t, "both members assigned partitions", func() bool {
		described, err := adm.DescribeGroups(ctx, "s1")
		if err != nil {
			return false
		}
		assigned := 0
		for _, m := range described["s1"].Members {
			if a, ok := m.Assigned.AsConsumer(); ok && len(a.Topics) > 0 && len(a.Topics[0].Partitions) > 0 {
				assigned++
			}
		}
		return assigned == 2
	})
	if n := len(target.snapshot()); n != 3 {
		t.Errorf("%d rows in the target, want the 3 before the truncate: a partition went past its copy", n)
	}
}

// TestTruncateCopyStoresItsOffset: a truncate of a table with no rows on the topic yet leaves
// each partition with its copy only. Once the truncate is applied, the target stores every
// partition's offset past its copy, as the group does; otherwise the next start would take the
// target for one that lost what the sink wrote, and read every partition again from its start.
func TestTruncateCopyStoresItsOffset(t *testing.T) {
	h := newHarness(t)
	target := newOffsetTarget()
	h.produceTruncate("0/3")
	end := h.endOffsets()
	h.start(h.sinkConfig(), target)
	waitFor(t, "offsets committed", func() bool { return h.committed("s1") == end })
	stored, err := target.Offsets(context.Background(), "s1", []string{"wh.public.t"})
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 3; p++ {
		if got := stored["wh.public.t"][p]; got != 1 {
			t.Errorf("partition %d: the target stores offset %d, want 1 (past the copy at 0)", p, got)
		}
	}
}
