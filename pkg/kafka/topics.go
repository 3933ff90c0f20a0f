package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/backflow-dev/backflow/pkg/config"
)

// Topic defaults applied by EnsureTopics to zero values of config.Topics.
const (
	DefaultPartitions        int32  = 6
	DefaultReplicationFactor int16  = 1
	DefaultCleanupPolicy     string = "compact"
)

// EnsureTopics creates the topics that do not exist yet with t's partitions, replication factor
// and cleanup.policy (zero values take the defaults above) plus extraConfigs, which win over
// cleanup.policy. Existing topics are left alone. Errors name the topic.
func EnsureTopics(ctx context.Context, adm *kadm.Client, topics []string, t config.Topics, extraConfigs map[string]string) error {
	topics = uniqueTopics(topics)
	if len(topics) == 0 {
		return nil
	}
	parts, rf := topicSizing(t)
	resps, err := adm.CreateTopics(ctx, parts, rf, topicConfigs(t, extraConfigs), topics...)
	if err != nil {
		return fmt.Errorf("create topics %v: %w", topics, err)
	}
	var errs []error
	for _, r := range resps.Sorted() {
		if r.Err == nil || errors.Is(r.Err, kerr.TopicAlreadyExists) {
			continue
		}
		if r.ErrMessage != "" {
			errs = append(errs, fmt.Errorf("create topic %q: %w: %s", r.Topic, r.Err, r.ErrMessage))
		} else {
			errs = append(errs, fmt.Errorf("create topic %q: %w", r.Topic, r.Err))
		}
	}
	return errors.Join(errs...)
}

func uniqueTopics(topics []string) []string {
	out := make([]string, 0, len(topics))
	for _, t := range topics {
		if t != "" && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

func topicSizing(t config.Topics) (int32, int16) {
	parts, rf := t.Partitions, t.ReplicationFactor
	if parts == 0 {
		parts = DefaultPartitions
	}
	if rf == 0 {
		rf = DefaultReplicationFactor
	}
	return parts, rf
}

func topicConfigs(t config.Topics, extra map[string]string) map[string]*string {
	policy := t.CleanupPolicy
	if policy == "" {
		policy = DefaultCleanupPolicy
	}
	cfgs := map[string]*string{"cleanup.policy": kadm.StringPtr(policy)}
	for k, v := range extra {
		cfgs[k] = kadm.StringPtr(v)
	}
	return cfgs
}
