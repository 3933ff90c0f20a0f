package sink

// The dead-letter topic: records that cannot be applied, written as they were read, with
// headers saying why and where from.

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// Headers of dead-letter records.
const (
	HeaderReason    = kafka.DLQHeaderReason    // why the record could not be applied
	HeaderSink      = kafka.DLQHeaderSink      // the sink that rejected it
	HeaderTopic     = kafka.DLQHeaderTopic     // original topic
	HeaderPartition = kafka.DLQHeaderPartition // original partition
	HeaderOffset    = kafka.DLQHeaderOffset    // original offset
	HeaderTime      = kafka.DLQHeaderTime      // when it was dead-lettered, RFC 3339
	// HeaderLostTo marks a dead letter that stands for records Kafka deleted before the sink
	// applied them (see sendLost).
	HeaderLostTo = kafka.DLQHeaderLostTo
	// HeaderLostKind says, on such a dead letter, that only the deletes among the records may be
	// gone (kafka.DLQLostDeletes).
	HeaderLostKind = kafka.DLQHeaderLostKind
)

// DLQTopic returns the dead-letter topic of a sink of a pipeline without kafka.sink_prefix;
// (*Sink).DLQTopic and config.Kafka.SinkDLQTopic give the one a sink uses.
func DLQTopic(sink string) string { return (&config.Kafka{}).SinkDLQTopic(sink) }

// deadLetters writes rejected records, unchanged, to the sink's dead-letter topic with headers
// naming the reason and the origin. Writes are synchronous: an offset is committed past a
// rejected record only once the dead-letter topic has it.
type deadLetters struct {
	client *kgo.Client
	topic  string
	sink   string

	once    sync.Once
	collect bool // keep failures in memory instead (re-drives)
	mu      sync.Mutex
	failed  []Failure
}

// Failure is a record that could not be applied, kept by CollectFailures.
type Failure struct {
	Record *kgo.Record
	Reason string
}

func newDeadLetters(ctx context.Context, base []kgo.Opt, sink, topic string, topics config.Topics, collect bool) (*deadLetters, error) {
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, base...), kafka.ProducerOpts()...)...)
	if err != nil {
		return nil, fmt.Errorf("sink %s: dead-letter producer: %w", sink, err)
	}
	d := &deadLetters{client: cl, topic: topic, sink: sink, collect: collect}
	topics.CleanupPolicy = "delete"
	if err := kafka.EnsureTopics(ctx, kadm.NewClient(cl), []string{d.topic}, topics, nil); err != nil {
		cl.Close()
		return nil, fmt.Errorf("sink %s: %w", sink, err)
	}
	return d, nil
}

func (d *deadLetters) close() { d.once.Do(d.client.Close) }

func (d *deadLetters) collected() []Failure {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Failure(nil), d.failed...)
}

// take returns the failures collected so far and forgets them.
func (d *deadLetters) take() []Failure {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.failed
	d.failed = nil
	return out
}

// send dead-letters a Kafka record as it was read.
func (d *deadLetters) send(ctx context.Context, kr *kgo.Record, reason string) error {
	if d.collect {
		d.mu.Lock()
		d.failed = append(d.failed, Failure{Record: kr, Reason: reason})
		d.mu.Unlock()
		return nil
	}
	rec := &kgo.Record{Topic: d.topic, Key: kr.Key, Value: kr.Value, Headers: append(kr.Headers[:len(kr.Headers):len(kr.Headers)],
		kgo.RecordHeader{Key: HeaderReason, Value: []byte(reason)},
		kgo.RecordHeader{Key: HeaderSink, Value: []byte(d.sink)},
		kgo.RecordHeader{Key: HeaderTopic, Value: []byte(kr.Topic)},
		kgo.RecordHeader{Key: HeaderPartition, Value: []byte(strconv.Itoa(int(kr.Partition)))},
		kgo.RecordHeader{Key: HeaderOffset, Value: []byte(strconv.FormatInt(kr.Offset, 10))},
		kgo.RecordHeader{Key: HeaderTime, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
	)}
	if err := d.client.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("sink %s: write to dead-letter topic %s: %w", d.sink, d.topic, err)
	}
	return nil
}

// sendLost writes a dead letter standing for records of r that Kafka deleted before the sink
// applied them: the dead-letter topic keeps what the target misses, and status reads it from
// there after the sink restarts (observe.LostRanges). A sink that collects its failures (a
// re-drive) has no such records to report.
func (d *deadLetters) sendLost(ctx context.Context, r observe.LostRange) error {
	if d == nil || d.collect {
		return nil
	}
	reason := fmt.Sprintf("%d record(s) deleted from Kafka (retention or DeleteRecords) before this sink applied them; "+
		"the target misses their changes: re-snapshot their tables", r.To-r.From)
	if r.DeletesAtRisk {
		reason = fmt.Sprintf("%d record(s) older than their compacted topic's delete.retention.ms when this sink resumed before them: "+
			"compaction may have removed deletes among them, and the target may keep rows the warehouse deleted. %s", r.To-r.From, observe.DeletesAtRiskRepair)
	}
	rec := &kgo.Record{Topic: d.topic, Headers: []kgo.RecordHeader{
		{Key: HeaderReason, Value: []byte(reason)},
		{Key: HeaderSink, Value: []byte(d.sink)},
		{Key: HeaderTopic, Value: []byte(r.Topic)},
		{Key: HeaderPartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
		{Key: HeaderOffset, Value: []byte(strconv.FormatInt(r.From, 10))},
		{Key: HeaderLostTo, Value: []byte(strconv.FormatInt(r.To, 10))},
		{Key: HeaderTime, Value: []byte(r.At.UTC().Format(time.RFC3339Nano))},
	}}
	if r.DeletesAtRisk {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: HeaderLostKind, Value: []byte(kafka.DLQLostDeletes)})
	}
	if err := d.client.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("sink %s: record lost offsets %s in dead-letter topic %s: %w", d.sink, r, d.topic, err)
	}
	return nil
}

// sendRecord dead-letters a mapped record by its original Kafka record, found among read, the
// records its batch was prepared from.
func (d *deadLetters) sendRecord(ctx context.Context, r Record, read []*kgo.Record, reason string) error {
	kr := readRecord(read, r)
	if kr == nil {
		// Not among those read: a record a caller built itself. Its origin still goes in the
		// headers, so the change can be found in its topic.
		kr = &kgo.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
	}
	return d.send(ctx, kr, reason)
}

// readRecord returns the Kafka record r was mapped from: the one of read at r's topic, partition
// and offset. Records keep no pointer to it (package connector knows nothing of Kafka records);
// read is one partition's records in offset order, so a binary search finds it, and a linear
// one covers a caller that passed them otherwise.
func readRecord(read []*kgo.Record, r Record) *kgo.Record {
	i, ok := slices.BinarySearchFunc(read, r.Offset, func(kr *kgo.Record, off int64) int { return cmp.Compare(kr.Offset, off) })
	if ok && read[i].Topic == r.Topic && read[i].Partition == r.Partition {
		return read[i]
	}
	for _, kr := range read {
		if kr.Offset == r.Offset && kr.Topic == r.Topic && kr.Partition == r.Partition {
			return kr
		}
	}
	return nil
}
