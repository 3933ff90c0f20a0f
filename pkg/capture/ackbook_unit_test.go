package capture

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// The ack book saves the offsets the watch saw acknowledged while capture runs, at most every
// ackSaveEvery, and a start finds the partitions whose log now ends at or below them, once.
func TestAckBook(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kf := testenv.NewKafka(t)
	opts := []kgo.Opt{kgo.SeedBrokers(kf.Brokers()...)}
	cl, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic("t"), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	store := newStateStore(cl, adm, opts, "state", "slot")
	if err := store.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	for p := range int32(2) { // ten records in each partition: offsets 0 to 9
		for range 10 {
			if err := cl.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte("v")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	saveDue := func(b *ackBook, w *kafka.OffsetWatch) {
		t.Helper()
		b.saveDue(w, func(err error) { t.Errorf("save: %v", err) })
		for !b.saving.TryLock() { // until the save under way, if any, is done
			time.Sleep(time.Millisecond)
		}
		b.saving.Unlock()
	}

	b := &ackBook{store: store, saved: map[string]map[int32]int64{}}
	w := kafka.NewOffsetWatch()
	w.Ack("t", 0, 12) // partition 0 held offsets up to 12, of which the broker lost 10 to 12
	w.Ack("t", 1, 9)
	saveDue(b, w)
	want := map[string]map[int32]int64{"t": {0: 12, 1: 9}}
	if got := loadAckBookOrFail(ctx, t, store).saved; !maps.EqualFunc(got, want, maps.Equal) {
		t.Fatalf("saved %v, want %v", got, want)
	}
	w.Ack("t", 1, 10)
	saveDue(b, w)
	if got := loadAckBookOrFail(ctx, t, store).saved; got["t"][1] != 9 {
		t.Errorf("saved again at once (%v): saves are ackSaveEvery apart", got)
	}

	start := loadAckBookOrFail(ctx, t, store)
	lost, err := start.lost(ctx, adm, nil, w) // w: as a run of the same process before this one left it
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(lost["t"], []int32{0}) || len(lost) != 1 {
		t.Errorf("lost %v, want partition 0 of t (its log ends at 10, below the 12 acknowledged)", lost)
	}
	if at := w.Acked()["t"][0]; at != 9 {
		t.Errorf("the watch still takes %d for the last offset acknowledged on partition 0, whose log ends at 10: "+
			"the next record written there would be found as the same loss again", at)
	}
	if again, _ := start.lost(ctx, adm, nil, w); len(again) != 0 {
		t.Errorf("the same loss found again: %v", again)
	}
	if skipped, _ := loadAckBookOrFail(ctx, t, store).lost(ctx, adm, []string{"t"}, kafka.NewOffsetWatch()); len(skipped) != 0 {
		t.Errorf("a topic refreshed as deleted was checked: %v", skipped)
	}
}

func loadAckBookOrFail(ctx context.Context, t *testing.T, store *stateStore) *ackBook {
	t.Helper()
	b, err := loadAckBook(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
