package capture

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/observe"
)

// partitionBook keeps, in capture's state, how many partitions each topic capture writes had
// when capture last looked, and the topic's ID.
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
//
// A topic deleted (or deleted and created again, under another ID) lost every row capture
// wrote to it: checkAll names those at start, and the running capture's checks (current) find
// them while it writes, so that their tables are written to them again in full.
type partitionBook struct {
	log     *zap.Logger
	metrics *observe.Metrics // may be nil
	running func(topic string, from, to int)

	mu     sync.Mutex
	counts map[string]int32  // by topic: as loaded, then as learned
	ids    map[string]string // by topic: its ID (kadm.TopicID.String()), as loaded, then as learned
	// missing holds the topics current found missing at its last check.
	missing map[string]bool
	store   *stateStore    // nil until load: nothing is saved before
	saving  sync.Mutex     // serializes saves, so that the last one written holds the latest counts
	saves   sync.WaitGroup // saves under way, which close waits for
}

func newPartitionBook(log *zap.Logger, m *observe.Metrics) *partitionBook {
	return &partitionBook{log: log, metrics: m, running: observe.PartitionsGrew(log, m, "capture"), counts: map[string]int32{},
		ids: map[string]string{}, missing: map[string]bool{}}
}

// partitionCounts is the book as saved in the capture state topic.
type partitionCounts struct {
	Topics map[string]int32 `json:"topics"`
	// IDs holds the topics' IDs (added later: a book saved before has none, and learns them).
	IDs map[string]string `json:"ids,omitempty"`
}

// noTopicID is the ID of a topic on a broker without topic IDs (before Kafka 2.8): unknown.
var noTopicID = kadm.TopicID{}.String()

func partitionsKey(s *stateStore) []byte { return s.stateKey("partitions") }

// load reads the counts the previous run saved; the book saves to store from then on. A topic
// checked before (ensured while capture started) is compared with its saved count now.
func (b *partitionBook) load(ctx context.Context, store *stateStore) error {
	var saved partitionCounts
	if err := store.loadKey(ctx, partitionsKey(store), &saved); err != nil {
		return err
	}
	b.mu.Lock()
	learned, learnedIDs := b.counts, b.ids
	b.counts, b.ids, b.store = saved.Topics, saved.IDs, store
	if b.counts == nil {
		b.counts = map[string]int32{}
	}
	if b.ids == nil {
		b.ids = map[string]string{}
	}
	b.mu.Unlock()
	for topic, n := range learned {
		b.check(topic, n, learnedIDs[topic])
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
// while capture was not running are reported before capture writes to any of them. It returns
// the topics the broker no longer has, or has under another ID (deleted, and maybe created again,
// while capture was not running): from capture's next change on they hold what it writes then,
// and lack every row written before.
func (b *partitionBook) checkAll(ctx context.Context, admin *kadm.Client) (deleted []string, err error) {
	details, err := b.describe(ctx, admin, b.topics())
	if err != nil {
		return nil, err
	}
	for _, t := range details {
		switch {
		case b.replaced(t):
			// Not learned here: the book keeps the old ID until capture ensures the topic again,
			// after it queued the table's refresh, so a crash in between finds it again.
			deleted = append(deleted, t.Topic)
		case t.Err == nil:
			b.check(t.Topic, int32(len(t.Partitions)), t.ID.String())
		}
	}
	return deleted, nil
}

// current returns an error naming the first of topics (those capture ensured in this run) that
// the broker no longer has, at two checks in a row (a topic just created may be missing from a
// broker's metadata for a moment), or has under another ID: deleted while capture writes to it.
// The run ends, and the next one writes the table to it again in full (checkAll). A broker that
// does not answer is no answer: capture waits for it elsewhere.
func (b *partitionBook) current(ctx context.Context, admin *kadm.Client, topics []string) error {
	details, err := b.describe(ctx, admin, topics)
	if err != nil {
		return nil
	}
	for _, t := range details {
		replaced := b.replaced(t)
		b.mu.Lock()
		missedBefore := b.missing[t.Topic]
		b.missing[t.Topic] = replaced && t.Err != nil
		if _, known := b.ids[t.Topic]; !known && t.Err == nil {
			b.ids[t.Topic] = t.ID.String() // ensured without it: the topic as found now
		}
		b.mu.Unlock()
		if replaced && (t.Err == nil || missedBefore) {
			return fmt.Errorf("topic %s was deleted while capture wrote to it; restarting, to write its table to it again in full", t.Topic)
		}
	}
	return nil
}

func (b *partitionBook) topics() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	topics := make([]string, 0, len(b.counts))
	for t := range b.counts {
		topics = append(topics, t)
	}
	return topics
}

func (b *partitionBook) describe(ctx context.Context, admin *kadm.Client, topics []string) ([]kadm.TopicDetail, error) {
	if len(topics) == 0 {
		return nil, nil
	}
	details, err := admin.ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("read the partitions of topics %v: %w", topics, err)
	}
	return details.Sorted(), nil
}

// forgetID forgets topic's ID: the topic ensured in its place may be another one.
func (b *partitionBook) forgetID(topic string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.ids, topic)
}

// replaced says whether the broker's t is not the topic the book knows: gone, or another ID.
func (b *partitionBook) replaced(t kadm.TopicDetail) bool {
	if errors.Is(t.Err, kerr.UnknownTopicOrPartition) {
		return true
	}
	b.mu.Lock()
	known := b.ids[t.Topic]
	b.mu.Unlock()
	id := t.ID.String()
	return t.Err == nil && known != "" && known != noTopicID && id != noTopicID && id != known
}

// check compares topic's count on the broker, n, with the book's: a topic that has more
// partitions than the book says gained them while capture was not running. It learns the
// topic's id, and saves what changed.
func (b *partitionBook) check(topic string, n int32, id string) {
	b.mu.Lock()
	known, ok := b.counts[topic]
	b.counts[topic] = n
	idChanged := id != "" && b.ids[topic] != id
	if id != "" {
		b.ids[topic] = id
	}
	b.mu.Unlock()
	if ok && n == known && !idChanged {
		return
	}
	if ok && n != known {
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
	store, counts, ids := b.store, maps.Clone(b.counts), maps.Clone(b.ids)
	b.mu.Unlock()
	if store == nil {
		return nil
	}
	return store.saveKey(ctx, partitionsKey(store), partitionCounts{Topics: counts, IDs: ids})
}
