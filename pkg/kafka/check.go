package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/config"
)

// Check reaches the brokers with the pipeline's connection settings (TLS, SASL) and reports, for
// each of topics, that it does not exist or cannot be described. It writes nothing.
func Check(ctx context.Context, cfg config.Kafka, log *zap.Logger, topics []string) error {
	opts, err := ClientOpts(cfg, log)
	if err != nil {
		return err
	}
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer client.Close()
	if err := client.Ping(ctx); err != nil {
		return fmt.Errorf("reach Kafka brokers %v: %w", cfg.Brokers, err)
	}
	if len(topics) == 0 {
		return nil
	}
	details, err := kadm.NewClient(client).ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("read metadata of topics %v: %w", topics, err)
	}
	var problems []error
	for _, t := range uniqueTopics(topics) {
		d, ok := details[t]
		switch {
		case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			problems = append(problems, fmt.Errorf("topic %s does not exist on brokers %v", t, cfg.Brokers))
		case d.Err != nil:
			problems = append(problems, fmt.Errorf("topic %s: %w", t, d.Err))
		}
	}
	return errors.Join(problems...)
}
