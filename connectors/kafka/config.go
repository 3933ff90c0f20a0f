package kafkasink

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// DefaultTimeout bounds how long one Apply waits for the brokers' acknowledgements (with.timeout):
// past it the batch fails as retryable rather than holding the partition without a word.
const DefaultTimeout = 30 * time.Second

// knownSettings are the keys a kafka sink's `with` block may hold.
var knownSettings = []string{"topic", "brokers", "key", "format", "timeout"}

// config is the validated `with` block of a kafka sink.
type config struct {
	topic   string
	brokers []string // nil: the pipeline's
	key     []string
	timeout time.Duration
	conn    []kgo.Opt // connection options: the pipeline's, seed brokers replaced by with.brokers
}

// parseConfig validates p.With; every error names the offending `with.<setting>`.
func parseConfig(p sink.Params) (*config, error) {
	if err := sink.CheckSettings(p.With, knownSettings); err != nil {
		return nil, err
	}
	c := &config{}
	var err error
	if c.topic, err = parseTopic(p.With["topic"]); err != nil {
		return nil, err
	}
	if c.brokers, err = stringList("brokers", p.With["brokers"]); err != nil {
		return nil, err
	}
	if c.key, err = stringList("key", p.With["key"]); err != nil {
		return nil, err
	}
	if c.key == nil {
		c.key = p.Key
	}
	if len(c.key) == 0 {
		return nil, errors.New("with.key: required when the sink has no key: the record key of the target topic")
	}
	if err := checkFormat(p.With["format"]); err != nil {
		return nil, err
	}
	if c.timeout, err = sink.DurationSetting("timeout", p.With["timeout"], DefaultTimeout); err != nil {
		return nil, err
	}
	c.conn = p.Kafka
	if c.brokers != nil {
		c.conn = append(append([]kgo.Opt(nil), p.Kafka...), kgo.SeedBrokers(c.brokers...))
	}
	if len(c.conn) == 0 {
		return nil, errors.New("with.brokers: required: the pipeline names no kafka.brokers")
	}
	return c, nil
}

// parseTopic checks with.topic against Kafka's topic name rules.
func parseTopic(v any) (string, error) {
	t, ok := v.(string)
	if !ok || t == "" {
		return "", errors.New("with.topic: required; expected the name of the topic to write to")
	}
	if len(t) > 249 || t == "." || t == ".." || strings.Trim(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
		return "", fmt.Errorf("with.topic: %q is not a valid topic name; expected letters, digits, '.', '_' or '-'", t)
	}
	return t, nil
}

// checkFormat accepts json, the only format: mapped records have no schema of their own (a
// mapping computes values of any type), so Avro would need types the mapping does not declare.
func checkFormat(v any) error {
	if v == nil || v == "json" {
		return nil
	}
	return fmt.Errorf("with.format: %v is not supported; expected json (mapped records carry no Avro schema)", v)
}

// stringList reads with.<key>: a list of non-empty strings, or one comma-separated string; nil
// when absent.
func stringList(key string, v any) ([]string, error) {
	var out []string
	switch l := v.(type) {
	case nil:
		return nil, nil
	case string:
		out = strings.Split(l, ",")
	case []string:
		out = l
	case []any:
		for _, e := range l {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("with.%s: %v is not a string", key, e)
			}
			out = append(out, s)
		}
	default:
		return nil, fmt.Errorf("with.%s: expected a list of strings, got %T", key, v)
	}
	for i, s := range out {
		out[i] = strings.TrimSpace(s)
		if out[i] == "" {
			return nil, fmt.Errorf("with.%s: empty entry", key)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("with.%s: empty list", key)
	}
	return out, nil
}
