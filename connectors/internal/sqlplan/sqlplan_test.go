package sqlplan

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/backflow-dev/backflow/pkg/connector"
)

// The table of the tests: columns id (the key), a, b, c, and mark.
var cols = []string{"id", "a", "b", "c", "mark"}

func table(split bool, always ...int) Table[string, string] {
	return Table[string, string]{
		Columns: len(cols), KeyColumns: []int{0}, Always: always, SplitOnRepeat: split,
		Key: func(r *connector.Record) (string, string, error) {
			v, ok := r.Key["id"]
			if !ok {
				return "", "", errors.New(Ref(r) + ": no id")
			}
			return fmt.Sprint(v), fmt.Sprint(v), nil
		},
		Column: func(name string) (int, bool) {
			i := slices.Index(cols, name)
			return i, i >= 0
		},
	}
}

func up(off int64, id int, fields ...string) connector.Record {
	r := connector.Record{Op: connector.OpUpsert, Key: map[string]any{"id": id}, Fields: map[string]any{"id": id}, Offset: off}
	for _, f := range fields {
		name, val, _ := strings.Cut(f, "=")
		r.Fields[name] = val
	}
	return r
}

func del(off int64, id int) connector.Record {
	return connector.Record{Op: connector.OpDelete, Key: map[string]any{"id": id}, Offset: off}
}

func trunc(off int64) connector.Record {
	return connector.Record{Op: connector.OpTruncate, Offset: off}
}

// describe spells a plan: segments separated by " | ", each its deletes ("-id"), its groups
// ("+[columns]{id:fields…}") and its truncate ("T@offset").
func describe(p *Plan[string]) string {
	var segs []string
	for _, s := range p.Segments {
		var parts []string
		for _, d := range s.Deletes {
			parts = append(parts, "-"+d.Key)
		}
		for _, g := range s.Upserts {
			var names, rows []string
			for _, ci := range g.Cols {
				names = append(names, cols[ci])
			}
			for _, it := range g.Items {
				var fs []string
				for _, name := range cols[1:] {
					if v, ok := it.Fields[name]; ok {
						fs = append(fs, fmt.Sprint(v))
					}
				}
				rows = append(rows, it.Key+":"+strings.Join(fs, ","))
			}
			parts = append(parts, "+["+strings.Join(names, ",")+"]{"+strings.Join(rows, " ")+"}")
		}
		if s.Truncate != nil {
			parts = append(parts, fmt.Sprintf("T@%d", s.Truncate.Offset))
		}
		segs = append(segs, strings.Join(parts, " "))
	}
	return strings.Join(segs, " | ")
}

func TestBuild(t *testing.T) {
	for _, tc := range []struct {
		name    string
		split   bool
		always  []int
		records []connector.Record
		want    string
		unknown []string
	}{
		{name: "deletes first, then upserts by field set in order of appearance",
			records: []connector.Record{up(0, 1, "a=x", "b=y"), up(1, 2, "a=z"), del(2, 3), up(3, 4, "a=w", "b=v")},
			want:    "-3 +[id,a,b]{1:x,y 4:w,v} +[id,a]{2:z}"},
		{name: "a truncate ends a segment",
			records: []connector.Record{up(0, 1, "a=x"), trunc(1), del(2, 1), up(3, 2, "a=y"), trunc(4)},
			want:    "+[id,a]{1:x} T@1 | -1 +[id,a]{2:y} T@4"},
		{name: "a batch that is a truncate",
			records: []connector.Record{trunc(0)},
			want:    "T@0"},
		{name: "a repeated key is merged into its last state, fields of the earlier upsert kept",
			records: []connector.Record{up(0, 1, "a=x", "b=y"), up(1, 2, "a=q"), up(2, 1, "a=z"), del(3, 2)},
			want:    "-2 +[id,a,b]{1:z,y}"},
		{name: "a delete then an upsert of one key is the upsert",
			records: []connector.Record{del(0, 1), up(1, 1, "a=x")},
			want:    "+[id,a]{1:x}"},
		{name: "a repeated key starts a new segment with SplitOnRepeat",
			split:   true,
			records: []connector.Record{up(0, 1, "a=x", "b=y"), del(1, 2), up(2, 1, "a=z"), up(3, 3, "a=w")},
			want:    "-2 +[id,a,b]{1:x,y} | +[id,a]{1:z 3:w}"},
		{name: "columns every upsert writes",
			always:  []int{4},
			records: []connector.Record{up(0, 1, "a=x"), up(1, 2, "a=y", "mark=true")},
			want:    "+[id,a,mark]{1:x 2:y,true}"},
		{name: "unknown fields are reported and their records left out",
			records: []connector.Record{up(0, 1, "a=x", "nope=1"), up(1, 2, "a=y"), up(2, 3, "zip=2", "nope=3")},
			want:    "+[id,a]{2:y}", unknown: []string{"nope", "zip"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Build(tc.records, table(tc.split, tc.always...))
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(p); got != tc.want {
				t.Errorf("plan %q, want %q", got, tc.want)
			}
			slices.Sort(p.Unknown)
			if !slices.Equal(p.Unknown, tc.unknown) {
				t.Errorf("unknown %v, want %v", p.Unknown, tc.unknown)
			}
		})
	}
}

// TestSharedFieldOrder: records that share one FieldOrder slice (the runtime's records with
// every mapped field) go to one group without their fields being looked at again, and a record
// with other fields between them still gets a group of its own.
func TestSharedFieldOrder(t *testing.T) {
	order := []string{"id", "a", "b"}
	recs := []connector.Record{up(0, 1, "a=1", "b=1"), up(1, 2, "a=2", "b=2"), up(2, 3, "a=3"), up(3, 4, "a=4", "b=4")}
	for _, i := range []int{0, 1, 3} {
		recs[i].FieldOrder = order
	}
	recs[2].FieldOrder = order[:2]
	p, err := Build(recs, table(false))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := describe(p), "+[id,a,b]{1:1,1 2:2,2 4:4,4} +[id,a]{3:3}"; got != want {
		t.Errorf("plan %q, want %q", got, want)
	}
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  connector.Record
		want string
	}{
		{"key", connector.Record{Op: connector.OpDelete, Topic: "t", Partition: 1, Offset: 7}, "record t/1@7: no id"},
		{"operation", connector.Record{Op: connector.Op(9), Topic: "t", Offset: 3}, "record t/0@3: unknown operation op(9)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build([]connector.Record{up(0, 1, "a=x"), tc.rec}, table(false))
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
