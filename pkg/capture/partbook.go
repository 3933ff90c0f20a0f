package capture

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/observe"
)

// partitionBook keeps, in capture's state, how many partitions each topic capture writes had
// when capture last looked.
//
// Partitions added to a topic move keys to other partitions from then on. While capture runs,
// its producer sees that happen (kafka.WatchPartitions) and whileRunning reports it. Partitions
// added while capture is stopped move keys just as surely, but a producer that starts afresh
// cannot tell: only the count capture kept can. So at start (load, checkAll), and whenever a
// topic is ensured (check), the book compares the broker's count with its own and reports a
// growth the way the producer does, and it saves every count it learns. Saves run in the
// background: a topic is ensured, and a growth seen, from the producer's goroutines too, which
// must not wait for Kafka. A count that could not be saved (a crash right after a growth) makes
// the next start report that growth again: twice, never unseen.
type partitionBook struct {
	log     *zap.Logger
	metrics *observe.Metrics // may be nil
	running func(topic string, from, to int)

	mu     sync.Mutex
	counts map[string]int32 // by topic: as loaded, then as learned
	store  *stateStore      // nil until load: nothing is saved before
	saving sync.Mutex       // serializes saves, so that the last one written holds the latest counts
	saves  sync.WaitGroup   // saves under way, which close waits for
}

func newPartitionBook(log *zap.Logger, m *observe.Metrics) *partitionBook {
	return &partitionBook{log: log, metrics: m, running: observe.PartitionsGrew(log, m, "capture"), counts: map[string]int32{}}
}

// partitionCounts is the book as saved in the capture state topic.
type partitionCounts struct {
	Topics map[string]int32 `json:"topics"`
}

func partitionsKey(s *stateStore) []byte { return s.stateKey("partitions") }

// load reads the counts the previous run saved; the book saves to store from then on. A topic
// checked before (ensured while capture started) is compared with its saved count now.
func (b *partitionBook) load(ctx context.Context, store *stateStore) error {
	var saved partitionCounts
	if err := store.loadKey(ctx, partitionsKey(store), &saved); err != nil {
		return err
	}
	b.mu.Lock()
	learned := b.counts
	b.counts, b.store = saved.Topics, store
	if b.counts == nil {
		b.counts = map[string]int32{}
	}
	b.mu.Unlock()
	for topic, n := range learned {
		b.check(topic, n)
	}
	return nil
}

// whileRunning is the kafka.PartitionsGrew of capture's producers: it reports the growth and
// keeps the new count, saved in the background (the producer calls it while it partitions a
// record, where nothing may wait for Kafka).
func (b *partitionBook) whileRunning(topic string, from, to int) {
	b.running(topic, from, to)
	b.mu.Lock()
	b.counts[topic] = max(b.counts[topic], int32(to))
	b.mu.Unlock()
	b.saveSoon(topic)
}

// checkAll checks every topic in the book against the broker: those that gained partitions
// while capture was not running are reported before capture writes to any of them.
func (b *partitionBook) checkAll(ctx context.Context, admin *kadm.Client) error {
	b.mu.Lock()
	topics := make([]string, 0, len(b.counts))
	for t := range b.counts {
		topics = append(topics, t)
	}
	b.mu.Unlock()
	if len(topics) == 0 {
		return nil
	}
	details, err := admin.ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("read the partitions of topics %v: %w", topics, err)
	}
	for _, t := range details.Sorted() {
		if t.Err != nil {
			continue // deleted: created again when capture writes to it, and checked then
		}
		b.check(t.Topic, int32(len(t.Partitions)))
	}
	return nil
}

// check compares topic's count on the broker, n, with the book's: a topic that has more
// partitions than the book says gained them while capture was not running. It saves what changed.
func (b *partitionBook) check(topic string, n int32) {
	b.mu.Lock()
	known, ok := b.counts[topic]
	b.counts[topic] = n
	b.mu.Unlock()
	if ok && n == known {
		return
	}
	if ok {
		b.report(topic, known, n)
	}
	b.saveSoon(topic)
}

// report says that topic, known to have had `known` partitions, now has n.
func (b *partitionBook) report(topic string, known, n int32) {
	if n < known {
		b.log.Warn("topic has fewer partitions than when capture last wrote to it: it was deleted and created again, "+
			"and the sinks of it may have lost their place; check them",
			zap.String("topic", topic), zap.Int32("had", known), zap.Int32("has", n))
		return
	}
	observe.PartitionsGrewWhileAway(b.log, b.metrics, "capture", topic, int(known), int(n))
}

// saveSoon saves the book in the background, after topic's count changed. A save gives up
// after 10 s, as a clean stop does: close, at the end of a run, waits for it.
func (b *partitionBook) saveSoon(topic string) {
	b.saves.Add(1)
	go func() {
		defer b.saves.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.save(ctx); err != nil {
			b.log.Warn("cannot save the partition count of a topic in capture's state; if it grew, the next start reports that again",
				zap.String("topic", topic), zap.Error(err))
		}
	}()
}

// close waits for the saves under way.
func (b *partitionBook) close() { b.saves.Wait() }

// save writes the book to the capture state topic (nothing before load).
func (b *partitionBook) save(ctx context.Context) error {
	b.saving.Lock()
	defer b.saving.Unlock()
	b.mu.Lock()
	store, counts := b.store, maps.Clone(b.counts)
	b.mu.Unlock()
	if store == nil {
		return nil
	}
	return store.saveKey(ctx, partitionsKey(store), partitionCounts{Topics: counts})
}
