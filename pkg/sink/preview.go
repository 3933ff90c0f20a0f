package sink

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/mapping"
)

// Reader decodes records the way a sink does: the same decoder, schema topics and registry. It
// is for tools that look at topics (backflow tail) and writes nothing anywhere. A schema that is
// not known yet makes it read the schema topics once, as a sink does; an outage is returned,
// not waited out: a person is watching.
type Reader struct{ s *Sink }

// ReaderOpt configures a Reader.
type ReaderOpt func(*config.Sink)

// AsRows makes a Reader read values as bare rows, as a sink with envelope: none does.
func AsRows() ReaderOpt { return func(c *config.Sink) { c.Envelope = config.EnvelopeNone } }

// NewReader returns a Reader reaching the cluster of k and reading Avro schemas from
// schemaTopics (none: the pipeline's own "<topic_prefix>._schemas").
func NewReader(k config.Kafka, schemaTopics []string, opts ...ReaderOpt) (*Reader, error) {
	s := &Sink{cfg: config.Sink{SchemaTopics: schemaTopics}, kcfg: k, log: zap.NewNop()}
	for _, o := range opts {
		o(&s.cfg)
	}
	if err := s.prepareReader(); err != nil {
		return nil, err
	}
	return &Reader{s: s}, nil
}

func (s *Sink) prepareReader() error {
	base, err := kafka.ClientOpts(s.kcfg, nil)
	if err != nil {
		return err
	}
	return s.prepareDecoder(base)
}

// Decode decodes a record's value; a tombstone gives (nil, nil), or the delete of its key when
// the Reader reads rows (AsRows).
func (r *Reader) Decode(ctx context.Context, kr *kgo.Record) (*change.Event, error) {
	return r.s.decode(ctx, kr)
}

// DecodeKey decodes a record's key to its columns' plain values; nil for a record without one.
func (r *Reader) DecodeKey(ctx context.Context, topic string, key []byte) (map[string]any, error) {
	t, row, err := r.s.keyDec.DecodeKey(ctx, topic, key)
	if errors.Is(err, codec.ErrUnknownSchema) && !errors.Is(err, codec.ErrUnavailable) {
		if rerr := r.s.schemas.refresh(ctx); rerr != nil {
			return nil, fmt.Errorf("%w, and reading the schema topics failed: %w", err, rerr)
		}
		t, row, err = r.s.keyDec.DecodeKey(ctx, topic, key)
	}
	if err != nil {
		return nil, err
	}
	return mapping.Values(t, row), nil
}

// Preview runs a sink's on_delete, on_truncate, filter and mapping on events, exactly as the
// sink does before it writes, and writes nothing: it has no target, no consumer group and no
// dead-letter topic (backflow map test).
type Preview struct {
	Reader
}

// NewPreview compiles the mapping of the sink cfg of p. Its Reader reaches Kafka only when an
// Avro schema must be read; without brokers in p it decodes JSON events only.
func NewPreview(p *config.Pipeline, cfg config.Sink) (*Preview, error) {
	s, err := newUnconnected(p, cfg)
	if err != nil {
		return nil, err
	}
	if len(p.Kafka.Brokers) == 0 {
		err = s.prepareDecoder(nil)
	} else {
		err = s.prepareReader()
	}
	if err != nil {
		return nil, err
	}
	return &Preview{Reader{s: s}}, nil
}

// Topics returns the topics the sink reads.
func (pv *Preview) Topics() []string { return pv.s.Topics() }

// Map maps one decoded event. skip says why the sink would not write it ("filter",
// "on_delete: ignore", "on_truncate: ignore"); err is why it would go to the dead-letter topic:
// a *mapping.ExprError or *mapping.MissingColumnError naming the part of the mapping, or a key
// field that is null. Map owns ev from then on, as the mapping does.
func (pv *Preview) Map(ev *change.Event, topic string, partition int32, offset int64) (r Record, skip string, err error) {
	return pv.s.mapEvent(Record{Event: ev, Topic: topic, Partition: partition, Offset: offset}, pv.s.mapping.Apply)
}
