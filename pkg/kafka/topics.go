package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/backflow-dev/backflow/pkg/config"
)

// Topic defaults applied by EnsureTopics to zero values of config.Topics.
const (
	DefaultPartitions        int32  = 6
	DefaultReplicationFactor int16  = 1
	DefaultCleanupPolicy     string = "compact"
	DefaultMaxMessageBytes   int    = config.DefaultMaxMessageBytes
)

// EnsureTopics creates the topics that do not exist yet with t's partitions, replication factor,
// cleanup.policy and max.message.bytes (zero values take the defaults above) plus extraConfigs,
// which win over those. Existing topics are left alone. Errors name the topic.
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
	cfgs := map[string]*string{
		"cleanup.policy":    kadm.StringPtr(policy),
		"max.message.bytes": kadm.StringPtr(strconv.Itoa(MaxMessageBytes(t))),
	}
	for k, v := range extra {
		cfgs[k] = kadm.StringPtr(v)
	}
	return cfgs
}

// MaxMessageBytes is the max.message.bytes EnsureTopics gives new topics: t's, or the default.
func MaxMessageBytes(t config.Topics) int {
	if t.MaxMessageBytes > 0 {
		return t.MaxMessageBytes
	}
	return DefaultMaxMessageBytes
}

// TopicMaxMessageBytes returns the max.message.bytes a topic has (its own, or the broker's
// default): a topic created before, or by someone else, may take less than the configured size,
// and a producer that packs more into one batch has the whole batch refused.
func TopicMaxMessageBytes(ctx context.Context, adm *kadm.Client, topic string) (int, error) {
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("describe config of topic %q: %w", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		return 0, fmt.Errorf("describe config of topic %q: %w", topic, err)
	}
	if rc.Err != nil {
		return 0, fmt.Errorf("describe config of topic %q: %w", topic, rc.Err)
	}
	for _, c := range rc.Configs {
		if c.Key == "max.message.bytes" && c.Value != nil {
			n, err := strconv.Atoi(*c.Value)
			if err != nil {
				return 0, fmt.Errorf("topic %q: max.message.bytes %q: %w", topic, *c.Value, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("topic %q: the broker did not report max.message.bytes", topic)
}

// CompactOnly returns which of topics have cleanup.policy compact alone. Kafka deletes nothing
// of such a topic by retention and refuses DeleteRecords on it, so its first offset moves only
// past records that compaction removed because a later record of the same key supersedes them
// (kfake, the embedded broker, moves it then; Kafka keeps it where it was). A log start past a
// reader's position there loses no row's latest state; on any other topic it may.
//
// A topic whose configuration the broker did not describe (no DESCRIBE_CONFIGS right, an
// error) is false, as is one that does not exist; the error says which and why.
func CompactOnly(ctx context.Context, adm *kadm.Client, topics ...string) (map[string]bool, error) {
	out := make(map[string]bool, len(topics))
	if len(topics) == 0 {
		return out, nil
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return out, fmt.Errorf("describe config of topics %v: %w", topics, err)
	}
	var errs []error
	for _, rc := range rcs {
		if rc.Err != nil {
			errs = append(errs, fmt.Errorf("describe config of topic %q: %w", rc.Name, rc.Err))
			continue
		}
		for _, c := range rc.Configs {
			if c.Key == "cleanup.policy" && c.Value != nil {
				out[rc.Name] = isCompactOnly(*c.Value)
			}
		}
	}
	return out, errors.Join(errs...)
}

// isCompactOnly says whether a cleanup.policy value ("compact", "delete", "compact,delete", in
// any order and spacing) is compact alone.
func isCompactOnly(policy string) bool {
	compact := false
	for _, p := range strings.Split(policy, ",") {
		switch strings.TrimSpace(p) {
		case "compact":
			compact = true
		case "":
		default:
			return false
		}
	}
	return compact
}
