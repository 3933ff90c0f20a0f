package redis

import (
	"context"
	"errors"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// TestLostWritesFenceTheWorker: Redis keeps each partition's next offset after the batch's
// writes. When Redis loses data (emptied, or back at an older snapshot), a worker's next batch
// is refused as fenced and writes nothing, and Offsets says what Redis still has: nothing when
// emptied (the runtime then reads the partitions from their start), the older offset when rolled
// back. Keys of the template without any offsets of the sink (written by a version that kept
// none) make Offsets say so (ErrOffsetsNotKept), so that the runtime goes on from the group.
func TestLostWritesFenceTheWorker(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(ctx context.Context, rdb *goredis.Client, prefix, sinkName string)
		want map[int32]int64 // Offsets after the loss; nil: none
	}{
		{"emptied", func(ctx context.Context, rdb *goredis.Client, prefix, sinkName string) {
			keys := append(rdb.Keys(ctx, prefix+"*").Val(), rdb.Keys(ctx, offsetsMarker(sinkName)+"*").Val()...)
			rdb.Del(ctx, keys...)
		}, nil},
		{"back at an older snapshot", func(ctx context.Context, rdb *goredis.Client, _, sinkName string) {
			rdb.HSet(ctx, offsetsHash(sinkName, "t"), "0", 10)
		}, map[int32]int64{0: 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			rdb := direct(t)
			prefix := testPrefix(t, rdb)
			sinkName := "lost-" + prefix
			t.Cleanup(func() {
				rdb.Del(ctx, append(rdb.Keys(ctx, offsetsMarker(sinkName)+"*").Val(), FenceKeyPrefix+sinkName+":t:0")...)
			})
			c := open(t, map[string]any{"key": prefix + "{id}"}, "id")
			held := int64(-1)
			write := func(next int64, id string) error {
				b := &sink.Batch{Sink: sinkName, Topic: "t", NextOffset: next, Records: []sink.Record{upsert(map[string]any{"id": id, "v": 1}, "id")},
					Fence: sink.Fence{Held: true, Offset: held, Epoch: 1}}
				err := c.Apply(ctx, b)
				if err == nil {
					held = next
				}
				return err
			}
			for i, id := range []string{"a", "b"} {
				if err := write(int64(10*(i+1)), id); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := c.Offsets(ctx, sinkName, []string{"t"}); err != nil || got["t"][0] != 20 {
				t.Fatalf("Offsets = %v, %v; want partition 0 at 20", got, err)
			}
			tc.lose(ctx, rdb, prefix, sinkName)
			if err := write(30, "c"); !errors.Is(err, sink.ErrFenced) {
				t.Fatalf("a batch after the loss: %v, want ErrFenced", err)
			}
			// A batch of no records (all filtered) goes straight to the offset's script, which
			// checks the same.
			empty := &sink.Batch{Sink: sinkName, Topic: "t", NextOffset: 30, Fence: sink.Fence{Held: true, Offset: held, Epoch: 1}}
			if err := c.Apply(ctx, empty); !errors.Is(err, sink.ErrFenced) {
				t.Fatalf("an empty batch after the loss: %v, want ErrFenced", err)
			}
			if n := rdb.Exists(ctx, prefix+"c").Val(); n != 0 {
				t.Fatalf("the refused batch wrote its key")
			}
			got, err := c.Offsets(ctx, sinkName, []string{"t"})
			if err != nil || len(got["t"]) != len(tc.want) || got["t"][0] != tc.want[0] {
				t.Fatalf("Offsets after the loss = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestKeysWithoutOffsetsAreNotALoss(t *testing.T) {
	ctx := context.Background()
	rdb := direct(t)
	prefix := testPrefix(t, rdb)
	rdb.HSet(ctx, prefix+"a", "v", "1") // written by a version that kept no offsets
	c := open(t, map[string]any{"key": prefix + "{id}"}, "id")
	if _, err := c.Offsets(ctx, "old-"+prefix, []string{"t"}); !errors.Is(err, sink.ErrOffsetsNotKept) {
		t.Fatalf("Offsets = %v, want ErrOffsetsNotKept", err)
	}
	// Offsets kept, marker gone (evicted): the offsets count, not the marker.
	kept := "kept-" + prefix
	t.Cleanup(func() { rdb.Del(ctx, offsetsHash(kept, "t"), offsetsMarker(kept)) })
	if err := c.Apply(ctx, &sink.Batch{Sink: kept, Topic: "t", NextOffset: 7}); err != nil {
		t.Fatal(err)
	}
	rdb.Del(ctx, offsetsMarker(kept))
	if got, err := c.Offsets(ctx, kept, []string{"t"}); err != nil || got["t"][0] != 7 {
		t.Fatalf("Offsets without the marker = %v, %v; want partition 0 at 7", got, err)
	}
	empty := open(t, map[string]any{"key": prefix + "none:{id}"}, "id")
	if got, err := empty.Offsets(ctx, "new-"+prefix, []string{"t"}); err != nil || len(got["t"]) != 0 {
		t.Fatalf("Offsets of a sink with nothing written = %v, %v; want none", got, err)
	}
}

// TestResetOffsetsMovesThePosition: `backflow replay --reset` sets the offsets Redis keeps, which
// the runtime resumes from, and the fence of the next batch holds them.
func TestResetOffsetsMovesThePosition(t *testing.T) {
	ctx := context.Background()
	rdb := direct(t)
	prefix := testPrefix(t, rdb)
	sinkName := "reset-" + prefix
	t.Cleanup(func() { rdb.Del(ctx, rdb.Keys(ctx, offsetsMarker(sinkName)+"*").Val()...) })
	c := open(t, map[string]any{"key": prefix + "{id}"}, "id")
	b := &sink.Batch{Sink: sinkName, Topic: "t", NextOffset: 50, Records: []sink.Record{upsert(map[string]any{"id": "a", "v": 1}, "id")},
		Fence: sink.Fence{Held: true, Offset: -1, Epoch: 1}}
	if err := c.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := c.ResetOffsets(ctx, sinkName, map[string]map[int32]int64{"t": {0: 5, 1: 0}}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Offsets(ctx, sinkName, []string{"t"})
	if err != nil || got["t"][0] != 5 || got["t"][1] != 0 {
		t.Fatalf("Offsets = %v, %v; want 0: 5, 1: 0", got, err)
	}
	b.NextOffset, b.Fence.Offset = 6, 5
	if err := c.Apply(ctx, b); err != nil {
		t.Fatalf("a batch from the reset position: %v", err)
	}
}
