package capture

import "testing"

// TestChunkRows: a chunk has snapshot_chunk rows unless its rows are wide: then about the
// budget's bytes, from the table's size at first (a probe without it) and from what was read
// after; never none.
func TestChunkRows(t *testing.T) {
	for _, tc := range []struct {
		name             string
		max              int
		budget           int64
		tableBytes, rows int64
		seenRows         int
		seenBytes        int64
		want             int
	}{
		{name: "narrow rows", max: 10000, budget: 32 << 20, tableBytes: 150 << 20, rows: 2_000_000, want: 10000},
		{name: "nothing known: a probe", max: 10000, budget: 32 << 20, want: probeRows},
		{name: "a probe within snapshot_chunk", max: 10, budget: 32 << 20, want: 10},
		{name: "wide rows by the table's size", max: 10000, budget: 32 << 20, tableBytes: 4 << 30, rows: 1000, want: 7},
		{name: "wide rows read", max: 10000, budget: 32 << 20, seenRows: 10, seenBytes: 40 << 20, want: 8},
		{name: "what was read wins", max: 10000, budget: 32 << 20, tableBytes: 4 << 30, rows: 1000, seenRows: 1000, seenBytes: 1 << 20, want: 10000},
		{name: "rows above the budget", max: 10000, budget: 32 << 20, seenRows: 1, seenBytes: 100 << 20, want: 1},
		{name: "empty chunks so far", max: 500, budget: 32 << 20, tableBytes: 4 << 30, rows: 1000, seenRows: 0, seenBytes: 0, want: 7},
	} {
		c := newChunkRows(tc.max, tc.budget, tc.tableBytes, tc.rows)
		c.saw(tc.seenRows, tc.seenBytes)
		if got := c.next(); got != tc.want {
			t.Errorf("%s: next() = %d, want %d", tc.name, got, tc.want)
		}
	}
}
