package kafkasink

import (
	"context"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/connspec"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// DefaultTimeout bounds how long one Apply waits for the brokers' acknowledgements (with.timeout):
// past it the batch fails as retryable rather than holding the partition without a word.
const DefaultTimeout = 30 * time.Second

// settings is the `with` block of a kafka sink, as declared to the docs, the schema and the
// loader. format accepts json only: mapped records have no schema of their own (a mapping
// computes values of any type), so Avro would need types the mapping does not declare.
type settings struct {
	Topic   string        `with:"topic,required" doc:"The topic to write to (created if missing)." example:"crm.leads"`
	Brokers []string      `with:"brokers" doc:"Seed brokers of another cluster; default: the pipeline's kafka.brokers." example:"[kafka-2:9092]"`
	Key     []string      `with:"key" doc:"The mapped fields whose values make the record key; default: the sink's key." example:"[sku, warehouse]"`
	Format  string        `with:"format" default:"json" enum:"json" doc:"The value format: JSON of the mapped fields (mapped records carry no Avro schema)."`
	Timeout time.Duration `with:"timeout" default:"30s" doc:"How long one batch waits for the brokers' acknowledgements before it is retried."`
}

// config is the validated `with` block of a kafka sink.
type config struct {
	topic   string
	brokers []string // nil: the pipeline's
	key     []string
	timeout time.Duration
	conn    []kgo.Opt // connection options: the pipeline's, seed brokers replaced by with.brokers
}

// Descriptor is the kafka connector for the registry.
func Descriptor() sink.Descriptor {
	return sink.Descriptor{
		Spec:  connspec.Of[settings]("kafka", "Produces each mapped record as JSON to a Kafka topic, keyed by the sink's key fields (idempotent producer, all in-sync replicas)."),
		Check: Check,
		Configure: func(p sink.Params) (sink.Opener, error) {
			cfg, err := parseConfig(p)
			if err != nil {
				return nil, err
			}
			return sink.OpenFunc(func(context.Context) (sink.Connector, error) { return open(cfg, p) }), nil
		},
	}
}

// parseConfig validates p, reporting every problem at once.
func parseConfig(p sink.Params) (*config, error) {
	s, ps := connspec.Decode[settings](p.With)
	c := &config{topic: s.Topic, brokers: s.Brokers, key: s.Key, timeout: s.Timeout, conn: p.Kafka}
	if s.Topic != "" && !validTopic(s.Topic) {
		ps.Add("with.topic", "%q is not a valid topic name; expected letters, digits, '.', '_' or '-'", s.Topic)
	}
	if c.key == nil && !ps.Has("with.key") {
		c.key = p.Key
		if len(c.key) == 0 {
			ps.Add("with.key", "required when the sink has no key: the record key of the target topic")
		}
	}
	if c.brokers != nil {
		c.conn = append(append([]kgo.Opt(nil), p.Kafka...), kgo.SeedBrokers(c.brokers...))
	}
	if len(c.conn) == 0 && !ps.Has("with.brokers") {
		ps.Add("with.brokers", "required: the pipeline names no kafka.brokers")
	}
	return c, ps.Err()
}

// validTopic checks Kafka's topic name rules.
func validTopic(t string) bool {
	return len(t) <= 249 && t != "." && t != ".." &&
		strings.Trim(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == ""
}
