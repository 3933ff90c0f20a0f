package capture

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/backflow-dev/backflow/pkg/kafka"
)

// ackBook keeps, in capture's state, the last offset Kafka acknowledged on each partition capture
// writes, so that a loss the running capture did not live to see is found at its next start.
//
// A broker that loses records capture wrote after acknowledging them hands their offsets out
// again; kafka.OffsetWatch finds that when a later record of the same process is acknowledged at
// such an offset. If the process stops first, a new one starts without that baseline, and the
// topic would lack those changes for good. So the book saves the watch's offsets (every
// ackSaveEvery while they change, and at a clean stop), and at start a partition whose log now
// ends at or below its saved offset lost records. A loss after the last save, before a crash,
// stays unseen: the window is ackSaveEvery.
type ackBook struct {
	mu       sync.Mutex
	store    *stateStore
	saved    map[string]map[int32]int64 // as loaded, then as saved
	lastSave time.Time
	saving   sync.Mutex     // one save at a time (the last one written is the latest); a tick finding one under way skips its own
	saves    sync.WaitGroup // background saves under way, which wait waits for
}

// ackSaveEvery bounds how often the running capture saves the offsets.
const ackSaveEvery = 5 * time.Second

func ackedKey(s *stateStore) []byte { return s.stateKey("acked") }

// loadAckBook reads the offsets the previous run saved.
func loadAckBook(ctx context.Context, store *stateStore) (*ackBook, error) {
	b := &ackBook{store: store, saved: map[string]map[int32]int64{}}
	if err := store.loadKey(ctx, ackedKey(store), &b.saved); err != nil {
		return nil, err
	}
	if b.saved == nil {
		b.saved = map[string]map[int32]int64{}
	}
	return b, nil
}

// lost returns, by topic, the partitions whose log ends at or below the offset saved for it:
// Kafka lost records it had acknowledged. Topics in skip (deleted or created again: refreshed
// for that) and topics the broker cannot say anything of are not checked. The book, and w (which
// may hold offsets from an earlier run of this process), then take the logs' ends as they are,
// so that one loss is found once.
func (b *ackBook) lost(ctx context.Context, admin *kadm.Client, skip []string, w *kafka.OffsetWatch) (map[string][]int32, error) {
	b.mu.Lock()
	topics := slices.Collect(maps.Keys(b.saved))
	b.mu.Unlock()
	topics = slices.DeleteFunc(topics, func(t string) bool { return slices.Contains(skip, t) })
	if len(topics) == 0 {
		return nil, nil
	}
	ends, err := admin.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("read the last offsets of topics %v: %w", topics, err)
	}
	out := map[string][]int32{}
	b.mu.Lock()
	defer b.mu.Unlock()
	ends.Each(func(o kadm.ListedOffset) {
		at, ok := b.saved[o.Topic][o.Partition]
		if o.Err != nil || !ok || o.Offset > at {
			return
		}
		out[o.Topic] = append(out[o.Topic], o.Partition)
		b.saved[o.Topic][o.Partition] = o.Offset - 1
		w.Reset(o.Topic, o.Partition, o.Offset-1)
	})
	for _, ps := range out {
		slices.Sort(ps)
	}
	return out, nil
}

// saveDue saves the watch's offsets in the background when they changed and the last save is
// ackSaveEvery old; the stream's status ticks call it.
func (b *ackBook) saveDue(w *kafka.OffsetWatch, onErr func(error)) {
	b.mu.Lock()
	due := time.Since(b.lastSave) >= ackSaveEvery
	b.mu.Unlock()
	if !due || !b.saving.TryLock() {
		return
	}
	b.saves.Add(1)
	go func() {
		defer b.saves.Done()
		defer b.saving.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.saveLocked(ctx, w); err != nil {
			onErr(err)
		}
	}()
}

// wait waits for the background saves under way: they use the run's Kafka client.
func (b *ackBook) wait() { b.saves.Wait() }

// save writes the watch's offsets over those saved (a partition this process has not written
// keeps its saved offset), when they changed.
func (b *ackBook) save(ctx context.Context, w *kafka.OffsetWatch) error {
	b.saving.Lock()
	defer b.saving.Unlock()
	return b.saveLocked(ctx, w)
}

// saveLocked is save for a caller holding b.saving.
func (b *ackBook) saveLocked(ctx context.Context, w *kafka.OffsetWatch) error {
	b.mu.Lock()
	next := map[string]map[int32]int64{}
	for t, ps := range b.saved {
		next[t] = maps.Clone(ps)
	}
	changed := false
	for t, ps := range w.Acked() {
		if next[t] == nil {
			next[t] = map[int32]int64{}
		}
		for p, at := range ps {
			if old, ok := next[t][p]; !ok || old != at {
				next[t][p], changed = at, true
			}
		}
	}
	b.lastSave = time.Now()
	b.mu.Unlock()
	if !changed {
		return nil
	}
	if err := b.store.saveKey(ctx, ackedKey(b.store), next); err != nil {
		return err
	}
	b.mu.Lock()
	b.saved = next
	b.mu.Unlock()
	return nil
}
