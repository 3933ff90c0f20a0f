package mysql

import (
	"context"
	"testing"
)

func TestResetOffsets(t *testing.T) {
	exec(t, "CREATE TABLE reset_items (id BIGINT PRIMARY KEY, name VARCHAR(50))")
	c := newConn(t, "reset_items", []string{"id"}, nil)
	b := mkBatch("wh.public.reset", []string{"id"}, up(map[string]any{"id": int64(1), "name": "one"}))
	apply(t, c, b)
	if off, ok := storedOffset(t, c, "wh.public.reset"); !ok || off != b.NextOffset {
		t.Fatalf("stored offset = %d, %v; want %d", off, ok, b.NextOffset)
	}
	if err := c.ResetOffsets(context.Background(), "test-sink", map[string]map[int32]int64{"wh.public.reset": {0: 0}}); err != nil {
		t.Fatal(err)
	}
	if off, ok := storedOffset(t, c, "wh.public.reset"); !ok || off != 0 {
		t.Fatalf("stored offset after reset = %d, %v; want 0", off, ok)
	}
}
