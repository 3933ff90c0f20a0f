package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
)

// BarrierTopic returns the topic where the workers of a sink of a pipeline without
// kafka.sink_prefix coordinate truncates (config.Kafka.SinkBarrierTopic gives the one a sink
// uses): a compacted topic of one partition, so that every worker reads the notes in one order.
func BarrierTopic(sink string) string { return (&config.Kafka{}).SinkBarrierTopic(sink) }

// barrierNote is a record of the barrier topic: a partition reached a truncate's copy, or the
// truncate was applied.
type barrierNote struct {
	Topic      string `json:"topic"`
	Truncate   string `json:"truncate"`
	Partitions int32  `json:"partitions"`
	Reached    *int32 `json:"reached,omitempty"` // the partition that reached its copy
	Applied    bool   `json:"applied,omitempty"`
}

// key is the note's compaction key: one per partition reached, and one for applied.
func (n barrierNote) key() []byte {
	what := "applied"
	if n.Reached != nil {
		what = strconv.Itoa(int(*n.Reached))
	}
	return []byte(n.Topic + "\x00" + n.Truncate + "\x00" + what)
}

// barrierID names a truncate of a topic.
type barrierID struct{ topic, truncate string }

// barrierState is what the barrier topic says of a truncate.
type barrierState struct {
	partitions int32
	reached    map[int32]bool
	applied    bool
}

// barrierLog is a worker's view of the barrier topic: it writes notes, and reads every note of
// every worker, from the start, in a goroutine of its own.
type barrierLog struct {
	topic string
	cl    *kgo.Client
	adm   *kadm.Client
	log   *zap.Logger

	mu      sync.Mutex
	state   map[barrierID]*barrierState
	next    int64         // offset after the last note read
	changed chan struct{} // closed (and replaced) whenever a note is read
	done    chan struct{}
}

// openBarrierLog creates the sink's barrier topic when it is absent and starts reading it.
func openBarrierLog(ctx context.Context, base []kgo.Opt, sink, topic string, topics config.Topics, log *zap.Logger) (*barrierLog, error) {
	opts := append(append([]kgo.Opt{}, base...), kafka.ProducerOpts()...)
	opts = append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("sink %s: barrier topic client: %w", sink, err)
	}
	b := &barrierLog{topic: topic, cl: cl, adm: kadm.NewClient(cl), log: log, state: map[barrierID]*barrierState{},
		changed: make(chan struct{}), done: make(chan struct{})}
	topics.Partitions, topics.CleanupPolicy = 1, "compact"
	if err := kafka.EnsureTopics(ctx, b.adm, []string{topic}, topics, nil); err != nil {
		cl.Close()
		return nil, fmt.Errorf("sink %s: %w", sink, err)
	}
	go b.read()
	return b, nil
}

// close stops reading and closes the client.
func (b *barrierLog) close() {
	b.cl.Close() // ends read's poll
	<-b.done
}

// read applies the notes of the topic as they come, until the client is closed.
func (b *barrierLog) read() {
	defer close(b.done)
	for {
		fs := b.cl.PollFetches(context.Background())
		if fs.IsClientClosed() {
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			b.log.Warn("reading the barrier topic", zap.String("topic", t), zap.Int32("partition", p), zap.Error(err))
		})
		fs.EachRecord(func(r *kgo.Record) {
			var n barrierNote
			if err := json.Unmarshal(r.Value, &n); err != nil || r.Value == nil {
				b.log.Warn("unreadable barrier note; skipped", zap.Int64("offset", r.Offset), zap.Error(err))
			} else {
				b.note(n)
			}
			b.mu.Lock()
			b.next = max(b.next, r.Offset+1)
			b.mu.Unlock()
		})
		b.wake()
	}
}

// note adds a note to the state.
func (b *barrierLog) note(n barrierNote) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := barrierID{n.Topic, n.Truncate}
	st := b.state[id]
	if st == nil {
		st = &barrierState{partitions: n.Partitions, reached: map[int32]bool{}}
		b.state[id] = st
	}
	if n.Reached != nil {
		st.reached[*n.Reached] = true
	}
	st.applied = st.applied || n.Applied
}

// wake wakes those waiting for a change.
func (b *barrierLog) wake() {
	b.mu.Lock()
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// changes returns a channel closed at the next note read.
func (b *barrierLog) changes() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// write writes a note and waits for Kafka to have it; the note counts at once for this worker.
func (b *barrierLog) write(ctx context.Context, n barrierNote) error {
	val, err := json.Marshal(n)
	if err != nil {
		return err
	}
	rec := &kgo.Record{Topic: b.topic, Key: n.key(), Value: val}
	if err := b.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("write truncate %s of %s to the barrier topic %s: %w", n.Truncate, n.Topic, b.topic, err)
	}
	b.note(n)
	return nil
}

// status returns whether a truncate was applied, and whether every partition reached its copy.
func (b *barrierLog) status(id barrierID) (applied, allReached bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.state[id]
	if st == nil {
		return false, false
	}
	for p := range st.partitions {
		if !st.reached[p] {
			return st.applied, false
		}
	}
	return st.applied, true
}

// missing returns the partitions not known to have reached a truncate.
func (b *barrierLog) missing(id barrierID) []int32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.state[id]
	if st == nil {
		return nil
	}
	var out []int32
	for p := range st.partitions {
		if !st.reached[p] {
			out = append(out, p)
		}
	}
	return out
}

// catchUp waits until every note written before it was called is read: a decision to apply a
// truncate must not miss the note that says someone already did.
func (b *barrierLog) catchUp(ctx context.Context) error {
	ends, err := b.adm.ListEndOffsets(ctx, b.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("list the end of the barrier topic %s: %w", b.topic, err)
	}
	end, _ := ends.Lookup(b.topic, 0)
	for {
		b.mu.Lock()
		next, changed := b.next, b.changed
		b.mu.Unlock()
		if next >= end.Offset {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
