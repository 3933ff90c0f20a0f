package capture

import (
	"testing"
)

// TestSplitPages: the ranges cover pages 0 to the end exactly once, the last one open.
func TestSplitPages(t *testing.T) {
	for _, tc := range []struct {
		pages int64
		n     int
		want  [][2]int64 // from, end
	}{
		{pages: 0, n: 4, want: [][2]int64{{0, 0}}},
		{pages: 100, n: 1, want: [][2]int64{{0, 0}}},
		{pages: 100, n: 4, want: [][2]int64{{0, 25}, {25, 50}, {50, 75}, {75, 0}}},
		{pages: 10, n: 3, want: [][2]int64{{0, 3}, {3, 6}, {6, 0}}},
		{pages: 2, n: 8, want: [][2]int64{{0, 1}, {1, 0}}},
	} {
		got := splitPages(tc.pages, tc.n)
		if len(got) != len(tc.want) {
			t.Errorf("splitPages(%d, %d): %d ranges, want %d", tc.pages, tc.n, len(got), len(tc.want))
			continue
		}
		for i, r := range got {
			p := r.Pages
			if p.From != tc.want[i][0] || p.End != tc.want[i][1] || p.Next != p.From || r.Done {
				t.Errorf("splitPages(%d, %d) range %d = %+v, want from %d end %d", tc.pages, tc.n, i, *p, tc.want[i][0], tc.want[i][1])
			}
		}
	}
}

// TestPageWork: a range resumes at its next page; its recheck covers the pages done before,
// and only those.
func TestPageWork(t *testing.T) {
	keys := &rangeProgress{LastKey: []string{"7"}}
	if keys.pageWork() != nil || keys.recheckWork("100") != nil {
		t.Errorf("a key range has page work")
	}
	fresh := &rangeProgress{Pages: &pageRange{From: 10, End: 20, Next: 10}}
	if w := fresh.pageWork(); *w != (pageWork{from: 10, end: 20}) {
		t.Errorf("fresh range: %+v", *w)
	}
	if w := fresh.recheckWork("100"); w != nil {
		t.Errorf("a range not started has a recheck: %+v", *w)
	}
	half := &rangeProgress{Pages: &pageRange{From: 10, Next: 15}}
	if w := half.pageWork(); *w != (pageWork{from: 15, end: 0}) {
		t.Errorf("half-read open range: %+v", *w)
	}
	if w := half.recheckWork("100"); w == nil || *w != (pageWork{from: 10, end: 15, xmin: "100"}) {
		t.Errorf("recheck of a half-read range: %+v", w)
	}
	if w := half.recheckWork(""); w != nil {
		t.Errorf("a recheck without an xmin to start from: %+v", *w)
	}
}

// TestPageStep: chunks of size rows start from the statistics (or the densest pages possible
// without them) and follow the rows the range's pages held; never more pages than rows asked for.
func TestPageStep(t *testing.T) {
	for _, tc := range []struct {
		name            string
		size            int
		estimate, pages int64
		seen            [][2]int64 // pages, rows
		want            int64
	}{
		{name: "from statistics", size: 10000, estimate: 1_000_000, pages: 10000, want: 100},
		{name: "no statistics", size: 10000, want: 10000 / maxRowsPerPage},
		{name: "wide rows", size: 100, estimate: 1000, pages: 5000, want: 100},
		{name: "tiny chunks", size: 1, estimate: 1_000_000, pages: 1000, want: 1},
		{name: "follows what it read", size: 1000, estimate: 1_000_000, pages: 10000, seen: [][2]int64{{10, 500}}, want: 20},
		{name: "empty pages", size: 1000, estimate: 1_000_000, pages: 10000, seen: [][2]int64{{10, 0}}, want: 10},
		{name: "sparse pages", size: 1000, seen: [][2]int64{{100, 1}}, want: 1000},
	} {
		p := newPageStep(tc.estimate, tc.pages)
		for _, s := range tc.seen {
			p.saw(s[0], int(s[1]))
		}
		if got := p.next(tc.size); got != tc.want {
			t.Errorf("%s: next() = %d, want %d", tc.name, got, tc.want)
		}
	}
}
