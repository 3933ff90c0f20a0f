package capture

import (
	"context"
	"slices"
	"sync"

	"go.uber.org/zap"
)

// kafkaLoss finds the partitions where Kafka lost records capture wrote after acknowledging
// them: an unclean leader election or a truncated log, which hands the lost offsets out again,
// so that a record is acknowledged at an offset not above one acknowledged before. (Capture is
// the only writer of its topics, and a partition's records are acknowledged in offset order:
// its two producers never have records of one partition in flight at once.) The slot moved past
// those changes once Kafka acknowledged them, so the WAL cannot send them again, and franz-go
// goes on producing: left alone, the topic and every sink after it would miss them without a
// word. The stream refreshes the topic's tables in full instead (repairLoss): every row written
// again, and a delete for every key the topic holds that the table no longer does.
//
// franz-go's own data-loss signal (ProducerOnDataLossDetected) is not used: it also fires when a
// broker only forgot the producer's state of a partition idle longer than
// producer.id.expiration.ms (a day by default), which would refresh idle tables for nothing.
//
// ack runs for every acknowledged record, on franz-go's goroutines; the stream takes the
// partitions found on its own.
type kafkaLoss struct {
	mu    sync.Mutex
	acked map[lossKey]*int64 // the highest offset acknowledged per partition, this run
	lost  map[string][]int32 // topic -> partitions found since the last take
	// The partition of the last ack and its entry: a batch's records are acknowledged one after
	// another, and every record pays for this (a map lookup would double the cost).
	lastKey lossKey
	last    *int64
}

type lossKey struct {
	topic     string
	partition int32
}

func newKafkaLoss() *kafkaLoss {
	return &kafkaLoss{acked: map[lossKey]*int64{}}
}

// ack notes that Kafka acknowledged a record of topic's partition p at offset off.
func (k *kafkaLoss) ack(topic string, p int32, off int64) {
	if k == nil {
		return
	}
	key := lossKey{topic, p}
	k.mu.Lock()
	if k.last == nil || key != k.lastKey {
		at := k.acked[key]
		if at == nil {
			at = new(int64)
			*at = -1
			k.acked[key] = at
		}
		k.lastKey, k.last = key, at
	}
	if off > *k.last {
		*k.last = off
	} else {
		k.found(topic, p)
	}
	k.mu.Unlock()
}

// found notes partition p of topic as one where Kafka gave offsets out again.
func (k *kafkaLoss) found(topic string, p int32) {
	if k.lost == nil {
		k.lost = map[string][]int32{}
	}
	if !slices.Contains(k.lost[topic], p) {
		k.lost[topic] = append(k.lost[topic], p)
	}
}

// take returns the partitions found since the last take.
func (k *kafkaLoss) take() map[string][]int32 {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := k.lost
	k.lost = nil
	return out
}

// repairLoss queues a full refresh of the captured tables whose topic Kafka lost records of,
// with an error that names the topic and partitions, and counts each partition
// (backflow_capture_kafka_lost_total).
func (s *stream) repairLoss(ctx context.Context) error {
	for topic, parts := range s.c.loss.take() {
		slices.Sort(parts)
		var tables []string
		for _, t := range s.tables {
			if s.em.topicOf(t[0], t[1]) == topic {
				tables = append(tables, t[0]+"."+t[1])
			}
		}
		for range parts {
			s.c.metrics.KafkaLost(topic)
		}
		s.c.log.Error("Kafka lost records capture wrote after acknowledging them (it handed their offsets out again: an unclean "+
			"leader election, a truncated log, or the topic created again); the slot has moved past them, so capture refreshes "+
			"the topic's tables in full",
			zap.String("topic", topic), zap.Int32s("partitions", parts), zap.Strings("tables", tables))
		for _, name := range tables {
			if err := s.inc.enqueue(ctx, &SnapshotRequest{Table: name, FullRefresh: true, Reason: ReasonKafkaLost}); err != nil {
				return err
			}
		}
	}
	return nil
}
