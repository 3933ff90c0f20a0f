package model

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSorterLastRecordWins: across many runs, the merge yields every key once, in order, with
// its record of the highest offset, deletes included.
func TestSorterLastRecordWins(t *testing.T) {
	so := &sorter{dir: t.TempDir(), limit: 1000} // about 14 entries per run
	want := map[string]sortEntry{}
	var offs []int64
	for i := range 2000 {
		offs = append(offs, int64(i))
	}
	rand.Shuffle(len(offs), func(i, j int) { offs[i], offs[j] = offs[j], offs[i] })
	for _, off := range offs {
		e := sortEntry{key: []byte(fmt.Sprintf("k%03d", off%300)), off: off, hash: uint64(off), live: off%7 != 0}
		if w, ok := want[string(e.key)]; !ok || w.off < off {
			want[string(e.key)] = e
		}
		if err := so.add(e); err != nil {
			t.Fatal(err)
		}
	}
	defer so.close()
	var got []sortEntry
	if err := so.merge(func(e sortEntry) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(so.runs) < 10 || len(got) != len(want) {
		t.Fatalf("%d runs, %d keys, want many runs and %d keys", len(so.runs), len(got), len(want))
	}
	if !slices.IsSortedFunc(got, compareEntries) {
		t.Fatal("merge out of key order")
	}
	for _, e := range got {
		w := want[string(e.key)]
		if e.off != w.off || e.live != w.live || e.hash != w.hash {
			t.Fatalf("key %s: got %+v, want %+v", e.key, e, w)
		}
	}
}
