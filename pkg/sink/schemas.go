package sink

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
)

// schemaSource keeps the sink's schema store filled from its schema topics (schema_topics, by
// default `<prefix>._schemas`), reading them again whenever a message names a schema not seen
// yet, and holds the registry client when one is configured. Avro fingerprints name a schema
// whatever topic it came from, so one store serves every topic.
type schemaSource struct {
	mu       sync.Mutex
	base     []kgo.Opt
	topics   []string
	store    *codec.SchemaStore
	next     map[string]map[int32]int64 // next offset to read per topic and partition
	registry *sr.Client
}

func newSchemaSource(base []kgo.Opt, k config.Kafka, sc config.Sink) (*schemaSource, error) {
	s := &schemaSource{base: base, topics: k.SchemaTopics(sc), store: codec.NewSchemaStore(), next: map[string]map[int32]int64{}}
	for _, t := range s.topics {
		s.next[t] = map[int32]int64{}
	}
	if k.Registry.URL != "" {
		opts := []sr.ClientOpt{sr.URLs(k.Registry.URL)}
		if k.Registry.Username != "" {
			opts = append(opts, sr.BasicAuth(k.Registry.Username, k.Registry.Password))
		}
		var err error
		if s.registry, err = sr.NewClient(opts...); err != nil {
			return nil, fmt.Errorf("kafka.schema_registry: %w", err)
		}
	}
	return s, nil
}

// schemaReadTimeout bounds one read of the schema topic: a broker that does not answer makes the
// read fail (and the record wait and retry, visibly) rather than hang without a word.
const schemaReadTimeout = 30 * time.Second

// refresh reads the schema topics from where it stopped up to their current ends. A schema
// topic that does not exist holds no schema; it is not an error.
func (s *schemaSource) refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, schemaReadTimeout)
	defer cancel()
	cl, err := kgo.NewClient(s.base...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, s.topics...)
	if err != nil {
		return fmt.Errorf("read schema topics %v: %w", s.topics, err)
	}
	want := map[string]map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > s.next[o.Topic][o.Partition] {
			if want[o.Topic] == nil {
				want[o.Topic] = map[int32]kgo.Offset{}
			}
			want[o.Topic][o.Partition] = kgo.NewOffset().At(s.next[o.Topic][o.Partition])
		}
	})
	if len(want) == 0 {
		return nil
	}
	cl.AddConsumePartitions(want)
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read schema topics %v: %w", s.topics, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			_, _ = s.store.AddRecord(r.Key, r.Value) // a bad schema record only fails the messages that use it
			s.next[r.Topic][r.Partition] = r.Offset + 1
			if end, _ := ends.Lookup(r.Topic, r.Partition); s.next[r.Topic][r.Partition] >= end.Offset {
				delete(want[r.Topic], r.Partition)
				if len(want[r.Topic]) == 0 {
					delete(want, r.Topic)
				}
			}
		})
	}
	return nil
}
