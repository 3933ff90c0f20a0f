package capture

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/backflow-dev/backflow/pkg/change"
)

// samplePagesPerRange is how many table pages the split samples per range it makes: enough
// rows that the boundaries land near the key's quantiles, few enough pages that sampling a
// large table costs a fraction of reading it.
const samplePagesPerRange = 64

// splitRanges cuts a table into at most n key ranges of about equal rows, from a sample of its
// keys in key order (TABLESAMPLE SYSTEM: random whole pages, so it does not read the table).
// The boundaries only balance the work: ranges [nil, b1), [b1, b2) … [bk, nil) cover every key
// exactly once whatever they are, so a poor sample makes uneven ranges, never wrong ones.
func splitRanges(ctx context.Context, db querier, t *change.Table, n int) ([]*rangeProgress, error) {
	whole := []*rangeProgress{{}}
	if n < 2 {
		return whole, nil
	}
	pages, err := tablePages(ctx, db, t)
	if err != nil || pages == 0 {
		return whole, err
	}
	percent := min(100, 100*float64(n*samplePagesPerRange)/float64(pages))
	keys := make([]string, 0, len(t.KeyColumns()))
	cols := make([]string, 0, cap(keys))
	for _, k := range t.KeyColumns() {
		keys = append(keys, "src."+quoteIdent(k.Name))
		cols = append(cols, "src."+quoteIdent(k.Name)+"::text")
	}
	query := fmt.Sprintf("SELECT %s FROM %s AS src TABLESAMPLE SYSTEM ($1) ORDER BY %s",
		strings.Join(cols, ", "), quoteTable(t.Schema, t.Name), strings.Join(keys, ", "))
	rows, err := db.Query(ctx, query, percent)
	if err != nil {
		return nil, fmt.Errorf("sample the keys of %s: %w", t.QualifiedName(), err)
	}
	defer rows.Close()
	var sample [][]string
	for rows.Next() {
		key := make([]string, len(keys))
		for i, v := range rows.RawValues() {
			key[i] = string(v)
		}
		sample = append(sample, key)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sample the keys of %s: %w", t.QualifiedName(), err)
	}
	return rangesAt(boundaries(sample, n)), nil
}

// boundaries picks up to n-1 distinct keys of a sorted sample, evenly spaced.
func boundaries(sample [][]string, n int) [][]string {
	var out [][]string
	for i := 1; i < n; i++ {
		b := sample[i*len(sample)/n:]
		if len(b) == 0 {
			break
		}
		if len(out) > 0 && slices.Equal(out[len(out)-1], b[0]) {
			continue
		}
		out = append(out, b[0])
	}
	if len(out) > 0 && len(sample) > 0 && slices.Equal(out[0], sample[0]) {
		out = out[1:] // a first range below the smallest key sampled would be tiny
	}
	return out
}

// rangesAt returns the ranges the sorted boundaries cut the key space into.
func rangesAt(bounds [][]string) []*rangeProgress {
	out := make([]*rangeProgress, 0, len(bounds)+1)
	var from []string
	for _, b := range bounds {
		out = append(out, &rangeProgress{From: from, Below: b})
		from = b
	}
	return append(out, &rangeProgress{From: from})
}

// tablePages is the table's size in pages, read from its file (no statistics needed).
func tablePages(ctx context.Context, db querier, t *change.Table) (int64, error) {
	var pages int64
	err := tableValue(ctx, db, t, "size", "SELECT pg_relation_size($1::text::regclass) / current_setting('block_size')::int8", &pages)
	return pages, err
}
