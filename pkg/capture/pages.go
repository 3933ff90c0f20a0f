package capture

// Reading a table by its pages. The initial snapshot reads a plain table in ranges of its pages
// (TID range scans, PostgreSQL 14+) rather than of its key: a TID range scan reads the heap in
// its own order and sorts nothing, where a keyset chunk walks the key's index and visits the heap
// in the index's order. PostgreSQL then spends on a snapshot about what it spends on COPY of the
// table, whatever order its rows were written in; by keys, about as much for a table written in
// key order, four times as much for one written in random key order (RESULT snapshot_read), and
// random reads when it is not cached. Re-snapshots while streaming keep key ranges: they need a
// key's place to reconcile their reads with the stream.
//
// Invariant: every row version visible in a run's snapshot is read once. Every reader of a run
// imports one snapshot (the slot's exported one, or one the run exports when it resumes), and
// every page is in exactly one range.
//
// Resuming after a crash is where pages differ from keys. A row on a page not read yet may have
// moved, since the crash, to a page already done: an UPDATE that is not HOT writes the new
// version wherever there is room. The stream replays that update, but with REPLICA IDENTITY
// DEFAULT an update leaves out unchanged TOASTed columns, so the row would never arrive whole.
// Such a version was written by a transaction the earlier runs' snapshots did not see, so its
// xmin is at least the first one's xmin (snapshotState.Xmin): a resumed run also re-reads, from
// the pages done, the rows with such an xmin (a recheck; duplicates, never a gap). A table
// rewritten in between (VACUUM FULL, CLUSTER, a rename swap: a new filenode) keeps its xmins but
// not its pages: it is read again from the start.

import (
	"context"
	"fmt"

	"github.com/backflow-dev/backflow/pkg/change"
)

// pagesSince is the first server_version_num with TID range scans; before it, a condition on
// ctid ranges reads the whole table for every chunk.
const pagesSince = 140000

// maxRowsPerPage is the most rows a heap page holds (MaxHeapTuplesPerPage of 8 KiB pages): the
// first chunk of a table without statistics assumes it, so that it stays within a chunk's rows.
const maxRowsPerPage = 291

// pageWork is what a reader reads of a page range: pages [from, end), end 0 meaning the table's
// last page as the reader finds it; xmin, for a recheck, keeps only the rows written by a
// transaction at least that xid8.
type pageWork struct {
	from, end int64
	xmin      string
}

// pageWork returns what is left to read of a page range.
func (r *rangeProgress) pageWork() *pageWork {
	if r.Pages == nil {
		return nil
	}
	return &pageWork{from: max(r.Pages.From, r.Pages.Next), end: r.Pages.End}
}

// recheckWork returns the pages of r done by an earlier run, to re-read for rows moved there
// since (see the top of this file), or nil when there are none.
func (r *rangeProgress) recheckWork(xmin string) *pageWork {
	if r.Pages == nil || r.Pages.Next <= r.Pages.From || xmin == "" {
		return nil
	}
	return &pageWork{from: r.Pages.From, end: r.Pages.Next, xmin: xmin}
}

// splitPages cuts a table of pages pages into at most n ranges of about equal pages. The last
// range is open: it reads up to the table's last page when it is read.
func splitPages(pages int64, n int) []*rangeProgress {
	n = int(max(1, min(int64(n), pages)))
	out := make([]*rangeProgress, n)
	for i := range n {
		out[i] = &rangeProgress{Pages: &pageRange{From: pages * int64(i) / int64(n)}}
		out[i].Pages.Next = out[i].Pages.From
		if i < n-1 {
			out[i].Pages.End = pages * int64(i+1) / int64(n)
		}
	}
	return out
}

// readsByPages tells whether a table can be read by pages: a plain table (a partitioned one has
// no pages of its own) without inheritance children (whose pages a read of the parent would
// mix in), on a server with TID range scans.
func readsByPages(ctx context.Context, db querier, version int, t *change.Table) (bool, error) {
	if version < pagesSince {
		return false, nil
	}
	var plain bool
	err := tableValue(ctx, db, t, "kind", "SELECT relkind = 'r' AND NOT relhassubclass FROM pg_class WHERE oid = $1::text::regclass", &plain)
	return plain, err
}

// relFilenode is the table's filenode, which a rewrite of the table changes.
func relFilenode(ctx context.Context, db querier, t *change.Table) (int64, error) {
	var node int64
	err := tableValue(ctx, db, t, "filenode", "SELECT pg_relation_filenode($1::text::regclass)::int8", &node)
	return node, err
}

// pagesQuery returns the SQL and arguments reading pages [from, below) of the table, only the
// rows written by a transaction at least xmin when xmin is set. age() counts from the same
// transaction id for both sides, and reads a frozen row as older than anything.
func (r *chunkReader) pagesQuery(from, below int64, xmin string) (string, []any) {
	sql := r.base + " WHERE " + r.cond + " AND src.ctid >= $1::text::tid AND src.ctid < $2::text::tid"
	args := []any{fmt.Sprintf("(%d,0)", from), fmt.Sprintf("(%d,0)", below)}
	if xmin != "" {
		sql += " AND age(src.xmin) <= age(xid($3::text::xid8))"
		args = append(args, xmin)
	}
	return sql, args
}

// eachPages calls fn with every row on pages [from, below) (only those written at xmin or
// later when set), as eachRaw does, and returns how many there were.
func (r *chunkReader) eachPages(ctx context.Context, db querier, from, below int64, xmin string, fn func(raw [][]byte) error) (int, error) {
	query, args := r.pagesQuery(from, below, xmin)
	n, _, err := r.eachRow(ctx, db, query, args, false, r.formats, fn)
	return n, err
}

// pageStep sizes a range's chunks in pages so that each holds about the rows asked for: from
// the table's statistics at first, then from the rows the range's chunks so far held per page.
type pageStep struct {
	perPage     float64 // the estimate
	pages, rows int64   // read so far
}

func newPageStep(estimate, pages int64) *pageStep {
	perPage := float64(maxRowsPerPage)
	if estimate > 0 && pages > 0 {
		perPage = min(perPage, max(1, float64(estimate)/float64(pages)))
	}
	return &pageStep{perPage: perPage}
}

// next is how many pages the next chunk of about rows rows reads: at most rows, as if a page
// held one row, so that a run of empty pages does not make the chunk after it huge.
func (p *pageStep) next(rows int) int64 {
	perPage := p.perPage
	if p.rows > 0 {
		perPage = max(1, float64(p.rows)/float64(p.pages))
	}
	return max(1, int64(float64(max(rows, 1))/perPage))
}

// saw counts a chunk of pages pages that held rows rows.
func (p *pageStep) saw(pages int64, rows int) {
	p.pages += pages
	p.rows += int64(rows)
}
