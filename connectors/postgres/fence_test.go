package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// TestFencedBatchWritesNothing: a batch whose fence no longer holds (another worker stored a
// different offset for the partition since this one was assigned it) is refused with
// sink.ErrFenced and writes nothing, on the upsert path and on the COPY path; one whose fence
// holds is written and moves the offset.
func TestFencedBatchWritesNothing(t *testing.T) {
	fence := func(offset int64) sink.Fence { return sink.Fence{Held: true, Offset: offset, Epoch: 1} }
	for _, tc := range []struct {
		name   string
		copy   bool
		stored []int64 // offsets stored before, in order
		fence  sink.Fence
		ok     bool
	}{
		{"holds", false, []int64{10}, fence(10), true},
		{"holds, nothing stored yet", false, nil, fence(-1), true},
		{"moved by another worker", false, []int64{10, 20}, fence(10), false},
		{"stored by another worker first", false, []int64{20}, fence(-1), false},
		{"copy: moved by another worker", true, []int64{10, 20}, fence(10), false},
		{"copy: holds", true, []int64{10}, fence(10), true},
		{"no fence (replays) writes anyway", false, []int64{10, 20}, sink.Fence{}, true},
		{"gone since the fence was taken", false, nil, fence(10), false},
		{"copy: gone since the fence was taken", true, nil, fence(10), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDB(t, nil)
			d.exec(`CREATE TABLE t (id int PRIMARY KEY, v int)`)
			c := d.open(map[string]any{"table": "t", "copy_inserts": tc.copy}, "id")
			for _, o := range tc.stored {
				apply(t, c, batch(o))
			}
			b := batch(30, created(up(map[string]any{"id": int32(1), "v": int32(7)}, "id"))...)
			b.Fence = tc.fence
			err := c.Apply(context.Background(), b)
			if tc.copy && c.copies.Load()+c.copyFallbacks.Load() != 1 {
				t.Fatalf("the batch did not take the COPY path")
			}
			if tc.ok {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				d.wantRows(`SELECT id, v FROM t`, "1|7")
				d.wantRows(`SELECT next_offset FROM backflow_offsets WHERE "partition" >= 0`, "30")
				return
			}
			if !errors.Is(err, sink.ErrFenced) {
				t.Fatalf("Apply = %v, want ErrFenced", err)
			}
			if sink.IsRetryable(err) {
				t.Fatalf("%v is retryable", err)
			}
			d.wantRows(`SELECT id, v FROM t`)
			var left []string // the offset stored last, untouched
			if n := len(tc.stored); n > 0 {
				left = append(left, fmt.Sprint(tc.stored[n-1]))
			}
			d.wantRows(`SELECT next_offset FROM backflow_offsets WHERE "partition" >= 0`, left...)
		})
	}
}
