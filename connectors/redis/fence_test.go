package redis

import (
	"context"
	"errors"
	"testing"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// TestFenceRefusesAnOlderGeneration: once a worker assigned the partition in a newer group
// generation has written it, a batch of a worker assigned it earlier is refused with
// sink.ErrFenced and writes nothing, in hash and json modes; the newer worker goes on, and a
// batch without a fence (a replay) is written.
func TestFenceRefusesAnOlderGeneration(t *testing.T) {
	for _, mode := range []string{ModeHash, ModeJSON} {
		t.Run(mode, func(t *testing.T) {
			rdb := direct(t)
			prefix := testPrefix(t, rdb)
			c := open(t, map[string]any{"key": prefix + "{id}", "mode": mode}, "id")
			sinkName := "fence-" + prefix
			t.Cleanup(func() {
				rdb.Del(context.Background(), FenceKeyPrefix+sinkName+":t:0", offsetsHash(sinkName, "t"), offsetsMarker(sinkName))
			})
			stored := int64(-1) // the offset Redis holds, which a fenced worker holds too
			write := func(epoch int32, held bool, v int) error {
				b := &sink.Batch{Sink: sinkName, Topic: "t", Records: []sink.Record{upsert(map[string]any{"id": "1", "v": v}, "id")},
					NextOffset: int64(v), Fence: sink.Fence{Held: held, Offset: stored, Epoch: epoch}}
				err := c.Apply(context.Background(), b)
				if err == nil {
					stored = b.NextOffset
				}
				return err
			}
			value := func() string {
				if mode == ModeJSON {
					return rdb.Get(context.Background(), prefix+"1").Val()
				}
				return rdb.HGet(context.Background(), prefix+"1", "v").Val()
			}
			if err := write(3, true, 1); err != nil {
				t.Fatal(err)
			}
			if err := write(5, true, 2); err != nil { // the new owner
				t.Fatal(err)
			}
			before := value()
			if err := write(3, true, 3); !errors.Is(err, sink.ErrFenced) { // the old one, late
				t.Fatalf("a write of generation 3 after one of generation 5 = %v, want ErrFenced", err)
			}
			if got := value(); got != before {
				t.Fatalf("the fenced write changed the value from %q to %q", before, got)
			}
			if err := write(5, true, 4); err != nil {
				t.Fatalf("the owner's next write: %v", err)
			}
			if err := write(0, false, 5); err != nil {
				t.Fatalf("an unfenced write: %v", err)
			}
		})
	}
}
