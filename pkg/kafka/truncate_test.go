package kafka

import (
	"context"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestExplicitPartitioner checks that keyed records still land where Kafka's Java client puts
// them, and that a truncate's copies land each on its own partition, whatever their shared key.
func TestExplicitPartitioner(t *testing.T) {
	const n = 6
	tp := ExplicitPartitioner(kgo.StickyKeyPartitioner(nil)).ForTopic("t")
	if _, ok := tp.(kgo.TopicPartitionerOnNewBatch); !ok {
		t.Error("the sticky partitioner's OnNewBatch is not kept")
	}
	for _, key := range []string{"21", "foobar", "a-little-bit-long-string", "abc"} {
		r := &kgo.Record{Key: []byte(key), Partition: 5}
		if got, want := tp.Partition(r, n), int(javaPartition([]byte(key), n)); got != want {
			t.Errorf("key %q: partition %d, want %d (murmur2)", key, got, want)
		}
	}
	copies := TruncateRecords(context.Background(), "t", "0/16B3748", []byte("v"), n)
	for p, r := range copies {
		if !tp.RequiresConsistency(r) {
			t.Errorf("copy %d may be moved to another partition", p)
		}
		if got := tp.Partition(r, n); got != p {
			t.Errorf("copy %d: partition %d", p, got)
		}
		c, ok := TruncateCopyOf(r)
		if !ok || c.ID != "0/16B3748" || c.Partitions != n {
			t.Errorf("copy %d: headers read as %+v, %v", p, c, ok)
		}
	}
	if got := tp.Partition(copies[5], 4); got != -1 {
		t.Errorf("copy for partition 5 of a 4-partition topic: partition %d, want a failure (-1)", got)
	}
}

func TestTruncateCopyOf(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []kgo.RecordHeader
		ok      bool
	}{
		{"no headers (older versions, Debezium)", nil, false},
		{"id only", []kgo.RecordHeader{{Key: HeaderTruncate, Value: []byte("x")}}, false},
		{"bad count", []kgo.RecordHeader{{Key: HeaderTruncate, Value: []byte("x")}, {Key: HeaderTruncatePartitions, Value: []byte("0")}}, false},
		{"copy", []kgo.RecordHeader{{Key: HeaderTruncate, Value: []byte("x")}, {Key: HeaderTruncatePartitions, Value: []byte("3")}}, true},
	} {
		if _, ok := TruncateCopyOf(&kgo.Record{Headers: tc.headers}); ok != tc.ok {
			t.Errorf("%s: copy %v, want %v", tc.name, ok, tc.ok)
		}
	}
}

// A watched partitioner tells when a topic's keyed records are spread over more partitions
// than before, once per growth, and not for keyless records or a truncate's copies.
func TestPartitionsGrew(t *testing.T) {
	type growth struct {
		topic    string
		from, to int
	}
	var got []growth
	p := explicitPartitioner{inner: kgo.StickyKeyPartitioner(nil), grew: func(topic string, from, to int) {
		got = append(got, growth{topic, from, to})
	}}
	tp := p.ForTopic("t")
	keyed := &kgo.Record{Key: []byte("k")}
	copies := TruncateRecords(context.Background(), "t", "0/1", []byte("v"), 9)
	tp.Partition(keyed, 6)
	tp.Partition(keyed, 6)
	tp.Partition(&kgo.Record{}, 9) // keyless: spread over the writable partitions, whatever their number
	tp.Partition(copies[8], 9)
	if len(got) != 0 {
		t.Fatalf("growth reported at %+v, before any", got)
	}
	tp.Partition(keyed, 12)
	tp.Partition(keyed, 12)
	want := []growth{{"t", 6, 12}}
	if !slices.Equal(got, want) {
		t.Fatalf("growth reported as %+v, want %+v", got, want)
	}
	p.ForTopic("u").Partition(keyed, 12) // another topic's first records: no growth
	if !slices.Equal(got, want) {
		t.Fatalf("growth reported as %+v, want %+v", got, want)
	}
}
