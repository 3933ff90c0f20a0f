package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

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

// Cleanup is how a topic's records go: its cleanup.policy and, when it compacts,
// delete.retention.ms.
type Cleanup struct {
	// CompactOnly is a cleanup.policy of compact alone. Kafka deletes nothing of such a topic by
	// retention and refuses DeleteRecords on it, so its first offset moves only past records
	// that compaction removed (kfake, the embedded broker, moves it then; Kafka keeps it where
	// it was).
	CompactOnly bool
	// Compacts is a cleanup.policy that includes compact.
	Compacts bool
	// DeleteRetention is the topic's delete.retention.ms: how long compaction keeps a delete's
	// tombstone (0 when the broker did not say). After it, the tombstone may go too, and with it
	// every record of its key: a reader still before it never learns that the key was deleted.
	DeleteRetention time.Duration
}

// Cleanups describes how the records of topics go (see Cleanup).
//
// A topic whose configuration the broker did not describe (no DESCRIBE_CONFIGS right, an
// error) is left out, as is one that does not exist; the error says which and why.
func Cleanups(ctx context.Context, adm *kadm.Client, topics ...string) (map[string]Cleanup, error) {
	out := make(map[string]Cleanup, len(topics))
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
		c, ok, err := cleanupOf(rc.Configs)
		if err != nil {
			errs = append(errs, fmt.Errorf("topic %q: %w", rc.Name, err))
		}
		if ok {
			out[rc.Name] = c
		}
	}
	return out, errors.Join(errs...)
}

// cleanupOf reads a topic's cleanup from its configuration; ok is false without a
// cleanup.policy.
func cleanupOf(configs []kadm.Config) (c Cleanup, ok bool, err error) {
	for _, kv := range configs {
		if kv.Value == nil {
			continue
		}
		switch kv.Key {
		case "cleanup.policy":
			ok = true
			c.CompactOnly = isCompactOnly(*kv.Value)
			c.Compacts = slices.ContainsFunc(strings.Split(*kv.Value, ","), func(p string) bool { return strings.TrimSpace(p) == "compact" })
		case "delete.retention.ms":
			ms, perr := strconv.ParseInt(*kv.Value, 10, 64)
			if perr != nil || ms < 0 {
				err = fmt.Errorf("delete.retention.ms %q is not a number of milliseconds", *kv.Value)
				continue
			}
			c.DeleteRetention = time.Duration(ms) * time.Millisecond
		}
	}
	return c, ok, err
}

// CompactOnly returns which of topics have cleanup.policy compact alone (Cleanup.CompactOnly). A
// log start past a reader's position there loses no row's latest state; on any other topic it
// may. A topic whose configuration the broker did not describe is false; the error says why.
func CompactOnly(ctx context.Context, adm *kadm.Client, topics ...string) (map[string]bool, error) {
	cs, err := Cleanups(ctx, adm, topics...)
	out := make(map[string]bool, len(cs))
	for t, c := range cs {
		out[t] = c.CompactOnly
	}
	return out, err
}

// DeleteHorizons returns, for each partition of the topics that cleanups says compact, its
// delete horizon at now: the first offset whose record is younger than the topic's
// delete.retention.ms (the partition's end when none is). Compaction may have removed a
// tombstone before it, never one after it, going by the records' timestamps (those capture
// writes are the time it produced them; Kafka starts a tombstone's retention when it first
// cleans it, which is later). A reader whose position is before a partition's horizon may have
// missed deletes there. A partition the broker did not list is left out; the error says why.
func DeleteHorizons(ctx context.Context, adm *kadm.Client, now time.Time, cleanups map[string]Cleanup) (map[string]map[int32]int64, error) {
	byRetention := map[time.Duration][]string{} // one request for the topics of each retention
	for topic, c := range cleanups {
		if c.Compacts && c.DeleteRetention > 0 {
			byRetention[c.DeleteRetention] = append(byRetention[c.DeleteRetention], topic)
		}
	}
	out := map[string]map[int32]int64{}
	var errs []error
	for retention, topics := range byRetention {
		listed, err := adm.ListOffsetsAfterMilli(ctx, now.Add(-retention).UnixMilli(), topics...)
		if err != nil {
			errs = append(errs, fmt.Errorf("list offsets of topics %v younger than their delete.retention.ms: %w", topics, err))
			continue
		}
		listed.Each(func(o kadm.ListedOffset) {
			switch {
			case o.Err != nil:
				errs = append(errs, fmt.Errorf("list offsets of %s/%d younger than its delete.retention.ms: %w", o.Topic, o.Partition, o.Err))
			case slices.Contains(topics, o.Topic):
				if out[o.Topic] == nil {
					out[o.Topic] = map[int32]int64{}
				}
				out[o.Topic][o.Partition] = o.Offset
			}
		})
	}
	return out, errors.Join(errs...)
}

// DeleteRisk is how a reader that resumes a compacted partition at a position stands with the
// deletes compaction removes once they are older than delete.retention.ms.
type DeleteRisk int

const (
	// NoDeleteRisk: every record from the position on is younger than delete.retention.ms, or
	// compaction removed none of the older ones.
	NoDeleteRisk DeleteRisk = iota
	// DeletesAtRisk: the partition holds records from the position on that are older than
	// delete.retention.ms (the reader was behind that long), and compaction removed records
	// among them: deletes may be gone.
	DeletesAtRisk
	// DeleteRiskUnknown: compaction removed every record from the position up to the delete
	// horizon, and nothing says how old they were (the embedded broker's compaction does this to
	// records that later ones of their keys superseded, an hour after they were written).
	DeleteRiskUnknown
)

// DeleteRisks tells, for each partition p of topic in positions, the DeleteRisk of a reader at
// positions[p], given the partition's delete horizon (DeleteHorizons; a partition without one
// has no risk). It reads each partition whose position is before its horizon up to the horizon,
// for a few seconds at most: a removed record (a gap in the offsets) is what puts deletes at
// risk, and a range not read to its end counts as one with a gap. opts are the connection
// options.
func DeleteRisks(ctx context.Context, opts []kgo.Opt, topic string, positions, horizons map[int32]int64) (map[int32]DeleteRisk, error) {
	out := map[int32]DeleteRisk{}
	behind := map[int32]int64{}
	for p, pos := range positions {
		if h, ok := horizons[p]; ok && pos >= 0 && pos < h {
			behind[p] = pos
		}
	}
	scans, err := scanRanges(ctx, opts, topic, behind, horizons)
	if err != nil {
		return nil, err
	}
	for p := range behind {
		out[p] = scans[p].risk(horizons[p])
	}
	return out, nil
}

// risk is the DeleteRisk of a reader whose range up to horizon s describes.
func (s rangeScan) risk(horizon int64) DeleteRisk {
	switch {
	case s.complete && !s.gap:
		return NoDeleteRisk // nothing removed before the horizon
	case s.first >= 0 && s.first < horizon:
		return DeletesAtRisk // records older than delete.retention.ms, and some removed among them
	default:
		return DeleteRiskUnknown // nothing left before the horizon
	}
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
