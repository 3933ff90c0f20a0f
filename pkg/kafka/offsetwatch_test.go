package kafka

import (
	"maps"
	"testing"
)

// TestOffsetWatch: a partition whose records are acknowledged at offsets not
// above one acknowledged before is found once, until taken; offsets that only rise, on any
// partition and after gaps (compaction, transactions of others), are not.
func TestOffsetWatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		acks []offsetKey // the partition of each ack; offs holds its offset
		offs []int64
		want map[string][]int32
	}{
		{"rising", []offsetKey{{"a", 0}, {"a", 0}, {"a", 1}, {"a", 0}}, []int64{0, 5, 0, 6}, nil},
		{"given again", []offsetKey{{"a", 0}, {"a", 0}, {"a", 0}, {"a", 0}}, []int64{10, 11, 11, 4}, map[string][]int32{"a": {0}}},
		{"the same offset twice", []offsetKey{{"a", 2}, {"a", 2}}, []int64{9, 9}, map[string][]int32{"a": {2}}},
		{"two partitions", []offsetKey{{"a", 0}, {"a", 1}, {"b", 1}, {"a", 1}, {"b", 1}}, []int64{3, 3, 7, 2, 8}, map[string][]int32{"a": {1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := NewOffsetWatch()
			for i, a := range tc.acks {
				k.Ack(a.topic, a.partition, tc.offs[i])
			}
			if got := k.Take(); !maps.EqualFunc(got, tc.want, func(a, b []int32) bool { return len(a) == len(b) && (len(a) == 0 || a[0] == b[0]) }) {
				t.Errorf("found %v, want %v", got, tc.want)
			}
			if got := k.Take(); got != nil {
				t.Errorf("found %v again after a take", got)
			}
		})
	}
}

// TestOffsetWatchGoesOnAfterALoss: after offsets were handed out again, the log goes on from
// them; the records written after the loss are not taken for losses of their own (a capture
// refresh or a model rebuild would otherwise be repeated until the offsets passed the old
// ones). Each topic's partitions are taken apart from the others'.
func TestOffsetWatchGoesOnAfterALoss(t *testing.T) {
	w := NewOffsetWatch()
	for _, o := range []int64{10, 11, 4} {
		w.Ack("a", 0, o)
	}
	w.Ack("b", 1, 3)
	w.Ack("b", 1, 2)
	if got := w.TakeTopic("a"); len(got) != 1 || got[0] != 0 {
		t.Fatalf("topic a: %v, want [0]", got)
	}
	for _, o := range []int64{5, 6, 7} {
		w.Ack("a", 0, o)
	}
	if got := w.TakeTopic("a"); got != nil {
		t.Errorf("records after the loss found as a loss of their own: %v", got)
	}
	if got := w.Take(); len(got) != 1 || len(got["b"]) != 1 || got["b"][0] != 1 {
		t.Errorf("taking topic a took %v of b too; want b: [1] left", got)
	}
}

// BenchmarkOffsetWatchAck is the cost every acknowledged record pays, in batches of 100 records
// of a partition.
func BenchmarkOffsetWatchAck(b *testing.B) {
	k := NewOffsetWatch()
	for i := range b.N {
		k.Ack("wh.public.bench", int32(i/100%6), int64(i))
	}
}
