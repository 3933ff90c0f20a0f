package kafka

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A source TRUNCATE is written to every partition of its table's topic, one copy each, so that
// sinks can apply it at its place in every partition (see package sink's barriers). The copies
// carry these headers, and TruncateKey as key: compacted topics refuse records without a key,
// and compaction keeps a partition's latest copy, the one that matters.
const (
	// HeaderTruncate identifies the truncate: the same value on all its copies, and on the copies
	// a restart of capture writes again.
	HeaderTruncate = "backflow.truncate"
	// HeaderTruncatePartitions is how many partitions the truncate was written to, 0 to n-1.
	HeaderTruncatePartitions = "backflow.truncate.partitions"
)

// TruncateKey is the key of every truncate copy. It decodes as no key: sinks read it through the
// headers, and a full refresh does not take it for a row.
var TruncateKey = []byte("__backflow_truncate")

// TruncateCopy is one copy of a truncate on its partition.
type TruncateCopy struct {
	ID         string // HeaderTruncate
	Partitions int32  // HeaderTruncatePartitions
}

// TruncateCopyOf returns the truncate copy r is, if r is one. A truncate written by an older
// version, or by Debezium (one record, null key, no headers), is not a copy.
func TruncateCopyOf(r *kgo.Record) (TruncateCopy, bool) {
	var c TruncateCopy
	var hasID, hasN bool
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderTruncate:
			c.ID, hasID = string(h.Value), true
		case HeaderTruncatePartitions:
			n, err := strconv.ParseInt(string(h.Value), 10, 32)
			c.Partitions, hasN = int32(n), err == nil && n > 0
		}
	}
	return c, hasID && hasN
}

// TruncateRecords returns the copies of a truncate for a topic of n partitions: record p goes to
// partition p, through ExplicitPartitioner.
func TruncateRecords(ctx context.Context, topic, id string, value []byte, n int32) []*kgo.Record {
	out := make([]*kgo.Record, n)
	headers := []kgo.RecordHeader{
		{Key: HeaderTruncate, Value: []byte(id)},
		{Key: HeaderTruncatePartitions, Value: []byte(strconv.Itoa(int(n)))},
	}
	for p := range n {
		out[p] = &kgo.Record{Topic: topic, Partition: p, Key: TruncateKey, Value: value, Headers: headers,
			Context: WithExplicitPartition(ctx)}
	}
	return out
}

// TopicPartitions returns how many partitions a topic has now.
func TopicPartitions(ctx context.Context, adm *kadm.Client, topic string) (int32, error) {
	d, err := DescribeTopic(ctx, adm, topic)
	if err != nil {
		return 0, err
	}
	return int32(len(d.Partitions)), nil
}

// DescribeTopic returns what the broker says of topic (its ID and partitions); a topic the
// broker does not have, or without partitions, is an error (kerr.UnknownTopicOrPartition for
// the first).
func DescribeTopic(ctx context.Context, adm *kadm.Client, topic string) (kadm.TopicDetail, error) {
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return kadm.TopicDetail{}, fmt.Errorf("list partitions of %s: %w", topic, err)
	}
	d, ok := td[topic]
	switch {
	case !ok:
		return d, fmt.Errorf("list partitions of %s: topic not in the metadata", topic)
	case d.Err != nil:
		return d, fmt.Errorf("list partitions of %s: %w", topic, d.Err)
	case len(d.Partitions) == 0:
		return d, fmt.Errorf("list partitions of %s: no partitions", topic)
	}
	return d, nil
}

// explicitCtx is a record context marked by WithExplicitPartition: a type of its own, so that the
// partitioner, which runs for every record produced, tells a marked record by its context's type
// rather than by looking a value up the context chain.
type explicitCtx struct{ context.Context }

// WithExplicitPartition marks a record's context: ExplicitPartitioner sends the record to its
// Partition field instead of hashing its key. The mark is on the context itself: a context
// derived from it is not marked.
func WithExplicitPartition(ctx context.Context) context.Context {
	if ctx == nil {
		ctx = context.Background()
	}
	return explicitCtx{ctx}
}

func explicit(r *kgo.Record) bool {
	_, ok := r.Context.(explicitCtx)
	return ok
}

// ExplicitPartitioner partitions like inner, except records marked with WithExplicitPartition,
// which go to their Partition field (a truncate's copies, one per partition). A marked record
// whose partition the topic does not have (fewer partitions than when it was built) fails in the
// client rather than land elsewhere.
func ExplicitPartitioner(inner kgo.Partitioner) kgo.Partitioner {
	return explicitPartitioner{inner: inner}
}

// PartitionsGrew is called when a topic's keyed records start being spread over more
// partitions than before in this client: partitions were added to the topic, and a key's
// records from then on may be in another partition than its earlier ones.
type PartitionsGrew func(topic string, from, to int)

type explicitPartitioner struct {
	inner kgo.Partitioner
	grew  PartitionsGrew // nil: not watched
}

func (p explicitPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	inner := p.inner.ForTopic(topic)
	t := explicitTopic{inner: inner, topic: topic, grew: p.grew, seen: new(atomic.Int64)}
	if nb, ok := inner.(kgo.TopicPartitionerOnNewBatch); ok {
		// Keep the sticky partitioner's batch switching for keyless records.
		return explicitOnNewBatch{t, nb}
	}
	return t
}

type explicitTopic struct {
	inner kgo.TopicPartitioner
	topic string
	grew  PartitionsGrew
	seen  *atomic.Int64 // the partitions keyed records were last spread over
}

func (t explicitTopic) RequiresConsistency(r *kgo.Record) bool {
	return explicit(r) || t.inner.RequiresConsistency(r)
}

func (t explicitTopic) Partition(r *kgo.Record, n int) int {
	if explicit(r) {
		if int(r.Partition) >= n || r.Partition < 0 {
			return -1 // franz-go fails a record with a partition out of range
		}
		return int(r.Partition)
	}
	// A keyed record is partitioned over all of the topic's partitions (franz-go passes the
	// writable ones only for records that may move): n is the topic's size.
	// Of the producer's goroutines that see the new size, the one that swaps it in reports.
	if t.grew != nil && r.Key != nil && t.inner.RequiresConsistency(r) {
		if seen := t.seen.Load(); seen != int64(n) && t.seen.CompareAndSwap(seen, int64(n)) && seen != 0 && int64(n) > seen {
			t.grew(t.topic, int(seen), n)
		}
	}
	return t.inner.Partition(r, n)
}

type explicitOnNewBatch struct {
	explicitTopic
	nb kgo.TopicPartitionerOnNewBatch
}

func (t explicitOnNewBatch) OnNewBatch() { t.nb.OnNewBatch() }
