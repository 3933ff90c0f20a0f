package observe

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// TopicGrowth is a topic that capture or a model run saw gain partitions while it wrote to it,
// or while it was not running: from then on a key's records may be in another
// partition than its earlier ones, and a sink that was behind on the old partition can apply an
// older version of a row after a newer one. Nothing can tell afterwards whether one was, so it
// stays a problem until the process restarts.
type TopicGrowth struct {
	Topic string    `json:"topic"`
	From  int       `json:"from"`
	To    int       `json:"to"`
	At    time.Time `json:"at"` // when it was seen
	// NotRunning, when set, names the writer ("capture", "model <name>") that was not running
	// when the partitions were added, sometime before At: the count it kept in its state says so.
	NotRunning string `json:"not_running,omitempty"`
}

// String says what the growth means, for status.
func (g TopicGrowth) String() string {
	when := "at " + g.At.UTC().Format(time.RFC3339)
	if g.NotRunning != "" {
		when = "while " + g.NotRunning + " was not running (seen at " + g.At.UTC().Format(time.RFC3339) + ")"
	}
	return fmt.Sprintf("kafka: topic %s went from %d to %d partitions %s: rows changed since then may have their records in another "+
		"partition than before, so a sink that was behind on a partition then can have applied an older version of a row after a "+
		"newer one; unless every sink of the topic had caught up at that time, replay the topic into its targets "+
		"(backflow replay); restart the process that writes it to clear this", g.Topic, g.From, g.To, when)
}

// TopicPartitionsGrew records growth g (At is set here); a later growth of the same topic
// widens the first, where the problem began.
func (m *Metrics) TopicPartitionsGrew(g TopicGrowth) {
	if m == nil {
		return
	}
	m.grownTopics.WithLabelValues(g.Topic).Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.grown == nil {
		m.grown = map[string]TopicGrowth{}
	}
	if first, seen := m.grown[g.Topic]; seen {
		first.To = g.To
		m.grown[g.Topic] = first
		return
	}
	g.At = time.Now()
	m.grown[g.Topic] = g
}

// PartitionsGrew returns the kafka.PartitionsGrew of a producer of `writer` (capture, models):
// it logs an error naming the topic and both sizes, and records the growth in m (which may be
// nil).
func PartitionsGrew(log *zap.Logger, m *Metrics, writer string) func(topic string, from, to int) {
	return func(topic string, from, to int) {
		reportGrowth(log, m, writer+" wrote to it", TopicGrowth{Topic: topic, From: from, To: to})
	}
}

// PartitionsGrewWhileAway reports, as PartitionsGrew does, that topic went from `from` to `to`
// partitions while writer ("capture", "model <name>") was not running: seen from the count the
// writer kept.
func PartitionsGrewWhileAway(log *zap.Logger, m *Metrics, writer, topic string, from, to int) {
	reportGrowth(log, m, writer+" was not running", TopicGrowth{Topic: topic, From: from, To: to, NotRunning: writer})
}

// reportGrowth logs growth g, which happened while `when`, and records it in m.
func reportGrowth(log *zap.Logger, m *Metrics, when string, g TopicGrowth) {
	log.Error("topic gained partitions while "+when+": a row's records may now be in another partition than its "+
		"earlier ones, and a sink behind on the old partition can apply an older version after a newer one; "+
		"unless every sink had caught up, replay the topic into its targets",
		zap.String("topic", g.Topic), zap.Int("from", g.From), zap.Int("to", g.To))
	m.TopicPartitionsGrew(g)
}

// GrownTopics are the topics capture or a model run saw gain partitions since the process
// started, by name.
func (m *Metrics) GrownTopics() []TopicGrowth {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]TopicGrowth, 0, len(m.grown))
	for _, g := range m.grown {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b TopicGrowth) int { return strings.Compare(a.Topic, b.Topic) })
	return out
}
