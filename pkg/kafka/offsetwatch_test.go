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

// BenchmarkOffsetWatchAck is the cost every acknowledged record pays, in batches of 100 records
// of a partition.
func BenchmarkOffsetWatchAck(b *testing.B) {
	k := NewOffsetWatch()
	for i := range b.N {
		k.Ack("wh.public.bench", int32(i/100%6), int64(i))
	}
}
