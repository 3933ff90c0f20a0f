package capture

import (
	"context"

	"github.com/backflow-dev/backflow/pkg/change"
)

// chunkBytes is about how many bytes of records a snapshot chunk holds at most: a range's
// progress moves a chunk at a time, once Kafka acknowledged all of it, so snapshot_chunk rows of a
// few megabytes each would otherwise be gigabytes read again after a crash, and in flight at once.
const chunkBytes = 32 << 20

// probeRows is the first chunk of a range whose rows' width nothing tells: a re-snapshot's (it
// asks PostgreSQL nothing that could wait for a lock on the table, since it runs beside the
// stream), or a table without statistics.
const probeRows = 100

// chunkRows sizes a range's chunks in rows: snapshot_chunk, or fewer when its rows are wide, so
// that a chunk's records come to about budget bytes. It goes by the rows the range's chunks held
// so far; before any, by the table's size over its estimated rows (heap and TOAST, which may be
// compressed: the first chunk of compressible wide rows can come out a few times the budget), or
// without those by a first chunk of probeRows.
type chunkRows struct {
	max         int
	budget      int64
	estimated   float64 // bytes a row, from the table's size; 0 when unknown
	rows, bytes int64   // read so far
}

func newChunkRows(max int, budget int64, tableBytes, estimate int64) *chunkRows {
	c := &chunkRows{max: max, budget: budget}
	if tableBytes > 0 && estimate > 0 {
		c.estimated = float64(tableBytes) / float64(estimate)
	}
	return c
}

// next is how many rows the next chunk reads: between 1 and max.
func (c *chunkRows) next() int {
	perRow := c.estimated
	if c.rows > 0 {
		perRow = float64(c.bytes) / float64(c.rows)
	}
	if perRow <= 0 {
		return max(1, min(c.max, probeRows))
	}
	return int(max(1, min(float64(c.max), float64(c.budget)/perRow)))
}

// saw counts a chunk of rows rows whose records came to bytes.
func (c *chunkRows) saw(rows int, bytes int64) {
	c.rows += int64(rows)
	c.bytes += bytes
}

// tableBytes is the table's size with its TOAST data, without its indexes (pg_table_size). It
// waits for a lock that lets it read the table: the initial snapshot asks it, before streaming.
func tableBytes(ctx context.Context, db querier, t *change.Table) (int64, error) {
	var n int64
	err := tableValue(ctx, db, t, "size", "SELECT pg_table_size($1::text::regclass)", &n)
	return n, err
}
