package config

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
)

// TopicFor returns the change topic of a captured table: "<topic_prefix>.<schema>.<table>",
// made legal by TopicName. schemaTable is "schema.table". The default prefix is used when none
// is set. Sinks derive their topics from `from: [tables]` with it, so they read what capture wrote.
func (p *Pipeline) TopicFor(schemaTable string) string {
	if m, ok := p.modelOf(schemaTable); ok && m.Topic != "" {
		return m.Topic // a model with a topic of its own: sinks read it with from: [model.<name>]
	}
	return TopicName(p.Kafka.topicPrefix() + "." + schemaTable)
}

// Names on the cluster. Every topic and consumer group that backflow derives from the pipeline
// (change topics, capture's state, schema and dead-letter topics, a sink's group, dead-letter
// and barrier topics) is named by the functions of this file and nowhere else, so that the
// prefixes apply to all of them alike.

// topicPrefix is kafka.topic_prefix, or its default for a pipeline that skipped ApplyDefaults.
func (k *Kafka) topicPrefix() string {
	if k.TopicPrefix == "" {
		return DefaultTopicPrefix
	}
	return k.TopicPrefix
}

// CaptureDLQTopic is capture's dead-letter topic, "<topic_prefix>._capture.dlq": the rows capture
// could not publish (too large for Kafka even compressed, refused by the broker, NULL keys,
// changes it could not decode), so that one row cannot stall the slot.
func (p *Pipeline) CaptureDLQTopic() string { return p.Kafka.CaptureStateTopic() + ".dlq" }

// CaptureStateTopic is the compacted topic where capture keeps its state (snapshot progress,
// re-snapshot requests): "<topic_prefix>._capture".
func (k *Kafka) CaptureStateTopic() string { return k.topicPrefix() + "._capture" }

// maxTopicLen is Kafka's limit on topic names.
const maxTopicLen = 249

// TopicName makes name a legal Kafka topic name the way Debezium does: every character other
// than [a-zA-Z0-9._-] becomes '_' (PostgreSQL allows any character in a quoted identifier, Kafka
// does not). A name longer than Kafka's 249 characters is cut and ends in '_' and 8 hex digits
// of a hash of the whole name, so it stays stable and distinct from other long names. Capture
// names the topics of tables with it, and TopicFor derives sinks' topics with it: both sides
// must agree. Like Debezium, two tables whose names differ only in illegal characters share a
// topic.
func TopicName(name string) string {
	legal := true
	for i := 0; i < len(name); i++ {
		if !topicChar(name[i]) {
			legal = false
			break
		}
	}
	if legal && len(name) <= maxTopicLen {
		return name
	}
	var b strings.Builder
	b.Grow(len(name))
	for _, r := range name {
		if r < 0x80 && topicChar(byte(r)) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	out := b.String()
	if len(out) > maxTopicLen {
		h := fnv.New32a()
		_, _ = h.Write([]byte(name))
		out = fmt.Sprintf("%s_%08x", out[:maxTopicLen-9], h.Sum32())
	}
	return out
}

func topicChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

var errRate = errors.New("expected N/s, N/m or N/h with N > 0, e.g. 500/s")

// ParseRate parses a sink rate limit such as "500/s", "30/m" or "1000/h" and returns it in
// records per second. N may have a fraction ("0.5/s") and must be greater than zero.
func ParseRate(s string) (perSecond float64, err error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, fmt.Errorf("invalid rate %q: %w", s, errRate)
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, fmt.Errorf("invalid rate %q: %w", s, errRate)
	}
	switch strings.TrimSpace(unit) {
	case "s":
		return n, nil
	case "m":
		return n / 60, nil
	case "h":
		return n / 3600, nil
	}
	return 0, fmt.Errorf("invalid rate %q: %w", s, errRate)
}

// HasSource reports whether the pipeline has a source to capture. Without one it is sink-only:
// validate, sink, replay, status, tail and map test work; capture, run and snapshot do not.
func (p *Pipeline) HasSource() bool {
	return p.Source.Postgres.URL != "" || len(p.Source.Postgres.Tables) > 0
}

// SinkGroup is the consumer group of the sink named sink: kafka.sink_prefix and the name. Every
// part of backflow that joins, describes or resets a sink's group names it here.
func (k *Kafka) SinkGroup(sink string) string { return k.SinkPrefix + sink }

// SinkDLQTopic is the dead-letter topic of the sink named sink: its group name and ".dlq".
func (k *Kafka) SinkDLQTopic(sink string) string { return k.SinkGroup(sink) + ".dlq" }

// SinkBarrierTopic is where the workers of the sink named sink coordinate truncates: its group
// name and ".barriers".
func (k *Kafka) SinkBarrierTopic(sink string) string { return k.SinkGroup(sink) + ".barriers" }

// SchemaTopics returns the topics a sink reads Avro schemas from: its schema_topics, or the
// pipeline's own "<topic_prefix>._schemas".
func (k *Kafka) SchemaTopics(s Sink) []string {
	if len(s.SchemaTopics) > 0 {
		return s.SchemaTopics
	}
	return []string{k.OwnSchemaTopic()}
}

// OwnSchemaTopic is the topic capture writes Avro schemas to: "<topic_prefix>._schemas" (the
// name codec.SchemasTopic gives; config cannot import codec).
func (k *Kafka) OwnSchemaTopic() string { return k.topicPrefix() + "._schemas" }
