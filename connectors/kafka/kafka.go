// Package kafkasink is the sink connector that writes mapped records to a Kafka topic
// (connector: kafka), for consumers that want the filtered, renamed stream rather than the
// change envelopes.
//
// Each upsert is a record keyed by the JSON object of the with.key fields (default the sink's
// key), in their order, e.g. {"sku":"A-1","warehouse":"ams"}: every record of a key goes to the
// same partition (murmur2, as Kafka's Java client), in order. Its value is the JSON object of
// the mapped fields (encoding/json forms: time.Time as RFC 3339, PostgreSQL's infinities as
// "infinity" and "-infinity", []byte as base64, numerics as
// the mapping's exact decimal text); fields left out for unchanged TOAST are absent. A delete is
// a tombstone, the key with a null value, which is what compaction and table-like consumers
// (Kafka Streams KTables, ksqlDB, Connect sinks with delete.enabled) read as a delete. A truncate
// cannot remove records from a topic: it is written as capture writes one, a record keyed
// __backflow_truncate with a null value in every partition, with the headers backflow.truncate
// (the same on all copies) and backflow.truncate.partitions; consumers that mirror the topic clear
// their state at it, and backflow's sinks (envelope: none) apply it once every partition reached
// its copy.
// Every record carries the headers backflow.op (upsert, delete or truncate) and backflow.topic,
// backflow.partition, backflow.offset (where its change was read).
//
// Records are produced with acks from all in-sync replicas by an idempotent producer, and Apply
// returns only once the brokers have acknowledged every record of the batch, so the sink commits
// its offsets only after the target topic has the records: at least once, duplicates after a
// crash or a retry, none missing. A broker that is down, refuses the write for the moment or does
// not answer within with.timeout fails the batch as retryable; a record the broker refuses for
// itself (too large, invalid) is returned in a *sink.PartialError.
package kafkasink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// TruncateKey is the record key of a truncate, the one capture gives its truncate records.
var TruncateKey = string(kafka.TruncateKey)

var _ sink.Factory = New

// connector produces batches to one topic.
type connector struct {
	cfg    *config
	client *kgo.Client
	ready  atomic.Bool // the target topic exists
	log    *zap.Logger
}

// New configures and opens a kafka connector from the sink's parameters (settings: see
// Descriptor).
func New(ctx context.Context, p sink.Params) (sink.Connector, error) {
	return Descriptor().Factory()(ctx, p)
}

// open builds the producer of a configured sink.
func open(cfg *config, p sink.Params) (sink.Connector, error) {
	opts := append(append([]kgo.Opt(nil), cfg.conn...),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent writes are franz-go's default, kept
		kgo.RecordDeliveryTimeout(cfg.timeout),
		// Without it the idempotent producer waits for the outcome of a request in flight to a
		// broker that went away, and Apply hangs instead of failing as retryable. The batch is
		// then produced again: at least once allows the duplicate this may make.
		kgo.AllowIdempotentProduceCancellation(),
		kgo.ProducerBatchCompression(kgo.ZstdCompression(), kgo.Lz4Compression(), kgo.SnappyCompression(), kgo.NoCompression()),
		// Keys as Kafka's Java client places them; a truncate's copies where they are sent.
		kgo.RecordPartitioner(kafka.ExplicitPartitioner(kgo.StickyKeyPartitioner(nil))),
	)
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client for topic %s: %w", cfg.topic, err)
	}
	log := p.Logger(zap.String("topic", cfg.topic))
	log.Info("kafka sink configured", zap.Strings("key", cfg.key), zap.Strings("brokers", cfg.brokers), zap.Duration("timeout", cfg.timeout))
	return &connector{cfg: cfg, client: client, log: log}, nil
}

// Close closes the producer; Apply has already waited for what it sent.
func (c *connector) Close() error {
	c.client.Close()
	return nil
}

// MaxApply is the longest an Apply waits: the delivery timeout and the topic check before it.
func (c *connector) MaxApply() time.Duration { return 2*c.cfg.timeout + 5*time.Second }

// Apply produces the batch's records and waits for every acknowledgement.
func (c *connector) Apply(ctx context.Context, b *sink.Batch) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	if err := c.ensureTopic(ctx); err != nil {
		return sink.Retryable(err)
	}
	recs, index, failed, err := c.records(ctx, b)
	if err != nil {
		return sink.Retryable(err)
	}
	if len(recs) == 0 {
		return partial(failed)
	}
	var retry error
	for i, r := range c.client.ProduceSync(ctx, recs...) {
		switch {
		case r.Err == nil:
		case recordFault(r.Err):
			failed = append(failed, sink.RecordError{Index: index[i], Reason: fmt.Sprintf("produce to %s: %v", c.cfg.topic, r.Err)})
		case retry == nil:
			retry = fmt.Errorf("produce %d record(s) to %s: %w", len(recs), c.cfg.topic, r.Err)
		}
	}
	if retry != nil {
		return sink.Retryable(retry) // the whole batch again: duplicates, never a gap
	}
	return partial(failed)
}

func partial(failed []sink.RecordError) error {
	if len(failed) == 0 {
		return nil
	}
	return &sink.PartialError{Failed: failed}
}

// recordFault reports whether the broker refused a record for itself, so that sending it again
// cannot help; anything else (a broker down, a leader moving, a timeout, missing rights) is
// about the target and passes.
func recordFault(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.InvalidRecord) ||
		errors.Is(err, kerr.CorruptMessage) || errors.Is(err, kerr.RecordListTooLarge)
}

// ensureTopic creates the target topic with the brokers' default sizing unless it exists, once.
func (c *connector) ensureTopic(ctx context.Context) error {
	if c.ready.Load() {
		return nil
	}
	resp, err := kadm.NewClient(c.client).CreateTopic(ctx, -1, -1, nil, c.cfg.topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", c.cfg.topic, err)
	}
	c.ready.Store(true)
	return nil
}

// records builds the Kafka records of b; index maps each to its batch record (a truncate has a
// record per partition). Records that cannot be encoded (a NaN, a key field missing) are
// returned as failed; err is for a truncate whose topic's partitions could not be counted.
func (c *connector) records(ctx context.Context, b *sink.Batch) (recs []*kgo.Record, index []int, failed []sink.RecordError, err error) {
	for i := range b.Records {
		r := &b.Records[i]
		if r.Op == sink.OpTruncate {
			copies, err := c.truncate(ctx, r)
			if err != nil {
				return nil, nil, nil, err
			}
			for _, kr := range copies {
				recs, index = append(recs, kr), append(index, i)
			}
			continue
		}
		kr, err := c.record(r)
		if err != nil {
			failed = append(failed, sink.RecordError{Index: i, Reason: err.Error()})
			continue
		}
		recs, index = append(recs, kr), append(index, i)
	}
	return recs, index, failed, nil
}

// truncate builds the copies of a truncate, one per partition of the topic, as capture writes
// its truncates (kafka.TruncateRecords): a consumer that reads the partitions apart finds the
// truncate at its place in each, and backflow's sinks apply it once all of them reached it. It
// is identified by where the truncate was read, the same when a retry writes it again.
func (c *connector) truncate(ctx context.Context, r *sink.Record) ([]*kgo.Record, error) {
	n, err := kafka.TopicPartitions(ctx, kadm.NewClient(c.client), c.cfg.topic)
	if err != nil {
		return nil, err
	}
	id := fmt.Sprintf("%s/%d@%d", r.Topic, r.Partition, r.Offset)
	copies := kafka.TruncateRecords(ctx, c.cfg.topic, id, nil, n)
	for _, kr := range copies {
		kr.Headers = append(kr.Headers, c.headers(r)...)
	}
	return copies, nil
}

// headers are the headers of every record: the op and where its change was read.
func (c *connector) headers(r *sink.Record) []kgo.RecordHeader {
	return []kgo.RecordHeader{
		{Key: "backflow.op", Value: []byte(r.Op.String())},
		{Key: "backflow.topic", Value: []byte(r.Topic)},
		{Key: "backflow.partition", Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
		{Key: "backflow.offset", Value: strconv.AppendInt(nil, r.Offset, 10)},
	}
}

// record builds the Kafka record of one mapped record.
func (c *connector) record(r *sink.Record) (*kgo.Record, error) {
	kr := &kgo.Record{Topic: c.cfg.topic, Headers: c.headers(r)}
	var err error
	if kr.Key, err = c.key(r); err != nil {
		return nil, err
	}
	if r.Op == sink.OpDelete {
		return kr, nil // a tombstone
	}
	if kr.Value, err = json.Marshal(sink.JSONTimes(r.Fields)); err != nil {
		return nil, fmt.Errorf("encode the fields of key %s as JSON: %w", kr.Key, err)
	}
	return kr, nil
}

// key is the JSON object of the key fields in with.key's order: the same bytes for the same
// key, so the same partition. Upserts take them from the mapped fields, deletes from the key.
func (c *connector) key(r *sink.Record) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, name := range c.cfg.key {
		v, ok := r.Key[name]
		if !ok {
			v, ok = r.Fields[name]
		}
		if !ok {
			return nil, fmt.Errorf("key field %q is not in the %s record (with.key names mapped fields; deletes carry only the sink's key)", name, r.Op)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		nb, _ := json.Marshal(name) // a string always encodes
		if t, ok := v.(time.Time); ok {
			if inf, ok := sink.Infinity(t); ok {
				v = inf
			}
		}
		vb, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode key field %q as JSON: %w", name, err)
		}
		b.Write(nb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
