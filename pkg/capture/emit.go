package capture

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// emitter encodes events and hands them to Kafka, registering every record with the tracker so
// that the slot is confirmed only behind acknowledged records.
type emitter struct {
	client  *kgo.Client
	admin   *kadm.Client
	enc     *codec.Encoder
	tr      *tracker
	prefix  string
	topics  config.Topics
	ensured map[string]bool
	// wake and onWait keep the replication connection alive while the tracker is full.
	wake    <-chan time.Time
	onWait  func() error
	count   uint64
	metrics *observe.Metrics
}

// topic returns the change topic of a table.
func (e *emitter) topic(t *change.Table) string {
	return e.prefix + "." + t.Schema + "." + t.Name
}

// ensureTopic creates a table's topic the first time the table is seen.
func (e *emitter) ensureTopic(ctx context.Context, t *change.Table) error {
	return e.ensureTopicName(ctx, e.topic(t), e.topics.CleanupPolicy)
}

// emit publishes one event, followed by a tombstone when it is a delete so that compacted
// topics keep exactly the live rows.
func (e *emitter) emit(ctx context.Context, ev *change.Event) error {
	topic := e.topic(ev.Table)
	key, val, err := e.enc.Encode(ctx, topic, ev)
	if err != nil {
		return fmt.Errorf("encode %s event of %s: %w", ev.Op, ev.Table.QualifiedName(), err)
	}
	if err := e.produce(ctx, topic, key, val, ev); err != nil {
		return err
	}
	e.count++
	if ev.Op == change.OpDelete {
		return e.produce(ctx, topic, key, nil, nil)
	}
	return nil
}

// produce hands a record to Kafka; ev, when set, is counted in the metrics once acknowledged.
func (e *emitter) produce(ctx context.Context, topic string, key, value []byte, ev *change.Event) error {
	seq, err := e.tr.reserve(ctx, e.wake, e.onWait)
	if err != nil {
		return err
	}
	rec := &kgo.Record{Topic: topic, Key: key, Value: value}
	start := time.Now()
	// The promise runs on franz-go's goroutine; it only records the answer and never blocks.
	// Records outlive a shutdown's cancellation: stopping flushes them and confirms what they cover.
	e.client.Produce(context.WithoutCancel(ctx), rec, func(_ *kgo.Record, err error) {
		e.tr.ack(seq, err)
		if err == nil && ev != nil && e.metrics != nil {
			e.metrics.CaptureChange(ev.Table.QualifiedName(), string(ev.Op), time.Since(start))
		}
	})
	return nil
}

// ensureTopicName creates a named topic once, with the given cleanup policy.
func (e *emitter) ensureTopicName(ctx context.Context, name, cleanup string) error {
	if e.ensured[name] {
		return nil
	}
	t := e.topics
	t.CleanupPolicy = cleanup
	if err := kafka.EnsureTopics(ctx, e.admin, []string{name}, t, nil); err != nil {
		return err
	}
	e.ensured[name] = true
	return nil
}
