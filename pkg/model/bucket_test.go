package model

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestBucketsInStateOrder: rows added in any order come out of the buckets, taken in order,
// sorted as a hash-ordered state, each once with its hash and columns (NULLs too); a key added
// twice is found.
func TestBucketsInStateOrder(t *testing.T) {
	for _, c := range []struct {
		name    string
		buckets int
		dup     bool
	}{{"one bucket", 1, false}, {"16 buckets", 16, false}, {"duplicate", 16, true}} {
		t.Run(c.name, func(t *testing.T) {
			bs, err := newBuckets(t.TempDir(), c.buckets)
			if err != nil {
				t.Fatal(err)
			}
			defer bs.close()
			want := map[string]uint64{}
			for i := range rand.Perm(3000) {
				key := []byte(fmt.Sprintf("user%d\x00", i))
				want[string(key)] = uint64(i)
				bs.add(keyHash(key), key, uint64(i), [][]byte{key, nil, []byte(fmt.Sprint(i))})
			}
			if c.dup {
				key := []byte("user1234\x00")
				bs.add(keyHash(key), key, 1, [][]byte{key, nil, nil})
			}
			stop := make(chan struct{})
			sorted, done := bs.sorted(stop)
			defer func() { close(stop); <-done }()
			got := map[string]uint64{}
			var keys [][]byte
			var dup []byte
			for bk := range sorted {
				if bk.err != nil {
					t.Fatal(bk.err)
				}
				if bk.dup != nil {
					dup = bk.dup
				}
				for _, r := range bk.rows {
					cols, err := bk.columns(r, nil)
					if err != nil || len(cols) != 3 || !bytes.Equal(cols[0], bk.key(r)) || cols[1] != nil || string(cols[2]) != fmt.Sprint(bk.hash(r)) && !c.dup {
						t.Fatalf("row %q: columns %q", bk.key(r), cols)
					}
					keys = append(keys, bk.key(r))
					got[string(bk.key(r))] = bk.hash(r)
				}
			}
			if c.dup {
				if string(dup) != "user1234\x00" {
					t.Fatalf("duplicate key found: %q", dup)
				}
				return
			}
			if dup != nil || !maps.Equal(got, want) || len(keys) != len(want) {
				t.Fatalf("dup %q, %d rows, want %d and no duplicate", dup, len(keys), len(want))
			}
			if !slices.IsSortedFunc(keys, func(a, b []byte) int { return stateOrder(true, a, b) }) {
				t.Fatal("buckets out of state order")
			}
		})
	}
}

// TestBucketCount: buckets are a power of two, about per rows each, at most maxBuckets.
func TestBucketCount(t *testing.T) {
	for _, c := range []struct {
		rows, per int64
		want      int
	}{{0, 100, 1}, {100, 100, 1}, {101, 100, 2}, {1_000_000, bucketRows, 32}, {1 << 40, bucketRows, maxBuckets}} {
		if got := bucketCount(c.rows, c.per); got != c.want {
			t.Errorf("bucketCount(%d, %d) = %d, want %d", c.rows, c.per, got, c.want)
		}
	}
}
