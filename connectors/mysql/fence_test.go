package mysql

import (
	"context"
	"errors"
	"testing"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// TestFencedBatchWritesNothing: a batch whose fence no longer holds (the partition's stored
// offset moved since this worker was assigned it) is refused with sink.ErrFenced and writes
// nothing; one whose fence holds is written.
func TestFencedBatchWritesNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		moved bool // another worker stored an offset after this one's fence was taken
		none  bool // the fence expects no stored offset yet
		gone  bool // the stored offset is gone since the fence was taken (offsets table made again)
	}{
		{name: "holds"}, {name: "moved", moved: true}, {name: "holds, nothing stored", none: true},
		{name: "stored by another worker first", none: true, moved: true},
		{name: "gone", moved: true, gone: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exec(t, "DROP TABLE IF EXISTS fenced")
			exec(t, "CREATE TABLE fenced (id BIGINT PRIMARY KEY, v INT)")
			c := newConn(t, "fenced", []string{"id"}, nil)
			forget := func() { exec(t, "DELETE FROM backflow_offsets WHERE topic = 'wh.public.fenced'") }
			forget()
			t.Cleanup(forget)
			fence := sink.Fence{Held: true, Offset: -1, Epoch: 1}
			if !tc.none {
				first := mkBatch("wh.public.fenced", []string{"id"})
				apply(t, c, first)
				fence.Offset = first.NextOffset
			}
			switch {
			case tc.gone:
				forget()
			case tc.moved:
				apply(t, c, mkBatch("wh.public.fenced", []string{"id"}))
			}
			before, _ := storedOffset(t, c, "wh.public.fenced")
			b := mkBatch("wh.public.fenced", []string{"id"}, up(map[string]any{"id": int64(1), "v": int64(7)}))
			b.Fence = fence
			err := c.Apply(context.Background(), b)
			if !tc.moved {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				wantRows(t, "SELECT id, v FROM fenced", "1|7")
				return
			}
			if !errors.Is(err, sink.ErrFenced) || sink.IsRetryable(err) {
				t.Fatalf("Apply = %v, want a permanent ErrFenced", err)
			}
			wantRows(t, "SELECT id, v FROM fenced")
			if after, _ := storedOffset(t, c, "wh.public.fenced"); after != before {
				t.Fatalf("stored offset moved from %d to %d", before, after)
			}
		})
	}
}
