package capture

import (
	"context"

	"go.uber.org/zap"
)

// repairLoss queues a full refresh of the captured tables whose topic Kafka lost records of
// after acknowledging them (kafka.OffsetWatch, told of every record the emitter has
// acknowledged), with an error that names the topic and partitions, and counts each partition
// (backflow_kafka_lost_total). The slot moved past those changes once Kafka acknowledged them,
// so the WAL cannot send them again: left alone, the topic and every sink after it would miss
// them without a word. A full refresh writes every row again, and a delete for every key the
// topic holds that the table no longer does.
func (s *stream) repairLoss(ctx context.Context) error {
	return s.repairLost(ctx, s.c.loss.Take(), "while capture wrote: it handed their offsets out again")
}

// repairLost is repairLoss for the partitions lost, by topic, found as how says.
func (s *stream) repairLost(ctx context.Context, lost map[string][]int32, how string) error {
	for topic, parts := range lost {
		var tables []string
		for _, t := range s.tables {
			if s.em.topicOf(t[0], t[1]) == topic {
				tables = append(tables, t[0]+"."+t[1])
			}
		}
		for range parts {
			s.c.metrics.KafkaLost(topic)
		}
		s.c.log.Error("Kafka lost records capture wrote after acknowledging them (an unclean leader election, a truncated "+
			"log, or the topic created again); the slot has moved past them, so capture refreshes the topic's tables in full",
			zap.String("topic", topic), zap.Int32s("partitions", parts), zap.Strings("tables", tables), zap.String("found", how))
		for _, name := range tables {
			if err := s.inc.enqueue(ctx, &SnapshotRequest{Table: name, FullRefresh: true, Reason: ReasonKafkaLost}); err != nil {
				return err
			}
		}
	}
	return nil
}
