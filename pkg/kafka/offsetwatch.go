package kafka

import (
	"slices"
	"sync"
)

// OffsetWatch finds the partitions where Kafka lost records a producer wrote after
// acknowledging them: an unclean leader election or a truncated log hands the lost offsets out
// again, so that a record is acknowledged at an offset not above the one acknowledged before it. It
// holds for a producer that is the only writer of its partitions and has the records of a
// partition acknowledged in offset order (one producer, or two that never have records of one
// partition in flight at once), as capture's and a model's are. The producer has moved on once
// Kafka acknowledged the lost records, and franz-go goes on producing: the watch is what tells.
//
// franz-go's own data-loss signal (kgo.ProducerOnDataLossDetected) is not a substitute: it also
// fires when a broker only forgot the producer's state of a partition idle longer than
// producer.id.expiration.ms (a day by default).
//
// Ack runs for every acknowledged record, from any goroutine, and costs about 13 ns
// (BenchmarkOffsetWatchAck).
type OffsetWatch struct {
	mu    sync.Mutex
	acked map[offsetKey]*int64 // the last offset acknowledged per partition
	lost  map[string][]int32   // topic -> partitions found since the last Take
	// The partition of the last ack and its entry: a batch's records are acknowledged one after
	// another, and a map lookup for each would double the cost.
	lastKey offsetKey
	last    *int64
}

type offsetKey struct {
	topic     string
	partition int32
}

// NewOffsetWatch returns a watch that has seen no acknowledgement.
func NewOffsetWatch() *OffsetWatch {
	return &OffsetWatch{acked: map[offsetKey]*int64{}}
}

// Ack notes that Kafka acknowledged a record of topic's partition p at offset off. A nil watch
// does nothing.
func (w *OffsetWatch) Ack(topic string, p int32, off int64) {
	if w == nil {
		return
	}
	key := offsetKey{topic, p}
	w.mu.Lock()
	if w.last == nil || key != w.lastKey {
		at := w.acked[key]
		if at == nil {
			at = new(int64)
			*at = -1
			w.acked[key] = at
		}
		w.lastKey, w.last = key, at
	}
	if off <= *w.last {
		w.found(topic, p)
	}
	// After a loss the log goes on from the offsets handed out again: the records after it are
	// compared with those, and one loss is found once.
	*w.last = off
	w.mu.Unlock()
}

// found notes partition p of topic as one where Kafka gave offsets out again.
func (w *OffsetWatch) found(topic string, p int32) {
	if w.lost == nil {
		w.lost = map[string][]int32{}
	}
	if !slices.Contains(w.lost[topic], p) {
		w.lost[topic] = append(w.lost[topic], p)
	}
}

// Take returns the partitions, by topic and sorted, where Kafka gave offsets out again since
// the last Take.
func (w *OffsetWatch) Take() map[string][]int32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.lost
	w.lost = nil
	for _, ps := range out {
		slices.Sort(ps)
	}
	return out
}

// TakeTopic is Take for one topic: the partitions of topic found since it was last taken,
// sorted. Those of other topics stay for their own takers.
func (w *OffsetWatch) TakeTopic(topic string) []int32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	ps := w.lost[topic]
	delete(w.lost, topic)
	slices.Sort(ps)
	return ps
}

// Acked returns the last offset acknowledged on each partition the watch has seen, by topic.
func (w *OffsetWatch) Acked() map[string]map[int32]int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]map[int32]int64{}
	for k, at := range w.acked {
		if out[k.topic] == nil {
			out[k.topic] = map[int32]int64{}
		}
		out[k.topic][k.partition] = *at
	}
	return out
}

// Reset takes off as the last offset acknowledged on topic's partition p: where the partition's
// log ends now that a loss was found some other way (see capture's ackBook), so that the records
// written next are compared with it rather than found as the same loss again.
func (w *OffsetWatch) Reset(topic string, p int32, off int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	key := offsetKey{topic, p}
	if at := w.acked[key]; at != nil {
		*at = off // the cached last entry, if it is this one, is the same pointer
		return
	}
	at := new(int64)
	*at = off
	w.acked[key] = at
}
