package kafkasink

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/sink"
)

var _ sink.Check = Check

// Check reaches the sink's brokers and reads the metadata of its topic, writing nothing. A topic
// that does not exist yet is fine: the connector creates it before its first batch.
func Check(ctx context.Context, p sink.Params, _ []string) error {
	cfg, err := parseConfig(p)
	if err != nil {
		return err
	}
	client, err := kgo.NewClient(cfg.conn...)
	if err != nil {
		return fmt.Errorf("kafka client for topic %s: %w", cfg.topic, err)
	}
	defer client.Close()
	if err := client.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: reach brokers %v: %w", cfg.brokers, err)
	}
	topics, err := kadm.NewClient(client).ListTopics(ctx, cfg.topic)
	if err != nil {
		return fmt.Errorf("kafka: read metadata of topic %s: %w", cfg.topic, err)
	}
	if err := topics[cfg.topic].Err; topics.Has(cfg.topic) && err != nil {
		return fmt.Errorf("with.topic: topic %s: %w", cfg.topic, err)
	}
	return nil
}
