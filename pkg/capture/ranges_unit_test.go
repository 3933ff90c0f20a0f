package capture

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestBoundaries: evenly spaced distinct keys of the sample, never the smallest (a range below
// it would hold almost nothing), fewer when the sample is short.
func TestBoundaries(t *testing.T) {
	keys := func(ks ...string) [][]string {
		out := make([][]string, len(ks))
		for i, k := range ks {
			out[i] = []string{k, "1"}
		}
		return out
	}
	tests := []struct {
		name   string
		sample [][]string
		n      int
		want   [][]string
	}{
		{"even", keys("a", "b", "c", "d", "e", "f", "g", "h"), 4, keys("c", "e", "g")},
		{"one range", keys("a", "b"), 1, nil},
		{"short sample", keys("a", "b"), 4, keys("b")},
		{"single key", keys("a"), 4, nil},
		{"empty", nil, 4, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := boundaries(tt.sample, tt.n)
			if len(got) != len(tt.want) || len(got) > 0 && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("boundaries = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRangesCoverTheKeySpace: consecutive ranges share their bounds, the first and the last are
// open.
func TestRangesCoverTheKeySpace(t *testing.T) {
	rs := rangesAt([][]string{{"b"}, {"d"}})
	want := []rangeProgress{{Below: []string{"b"}}, {From: []string{"b"}, Below: []string{"d"}}, {From: []string{"d"}}}
	if len(rs) != len(want) {
		t.Fatalf("%d ranges, want %d", len(rs), len(want))
	}
	for i := range rs {
		if !reflect.DeepEqual(*rs[i], want[i]) {
			t.Errorf("range %d = %+v, want %+v", i, *rs[i], want[i])
		}
	}
	if one := rangesAt(nil); len(one) != 1 || one[0].From != nil || one[0].Below != nil {
		t.Errorf("no boundaries: %+v, want one open range", one)
	}
}

// TestOldStateResumesAsOneRange: a state record written before ranges existed resumes the table
// as one range after its last key, with its rows counted.
func TestOldStateResumesAsOneRange(t *testing.T) {
	var st snapshotState
	old := `{"done":false,"tables":{"public.t":{"done":false,"last_key":["5","x"],"rows":5},"public.u":{"done":false,"rows":0}}}`
	if err := json.Unmarshal([]byte(old), &st); err != nil {
		t.Fatal(err)
	}
	rs := st.Tables["public.t"].ranges()
	if len(rs) != 1 || rs[0].Rows != 5 || rs[0].Done {
		t.Fatalf("ranges %+v, want one not done with 5 rows", rs)
	}
	if b := rs[0].bounds(); !reflect.DeepEqual(b, keyBounds{after: []string{"5", "x"}}) {
		t.Errorf("resumes within %+v, want after the last key", b)
	}
	if rs := st.Tables["public.u"].ranges(); len(rs) != 0 {
		t.Errorf("a table not started has ranges %+v; it is split when it starts", rs)
	}
	resumed := &rangeProgress{From: []string{"b"}, Below: []string{"d"}, LastKey: []string{"c"}}
	if b := resumed.bounds(); !reflect.DeepEqual(b, keyBounds{after: []string{"c"}, below: []string{"d"}}) {
		t.Errorf("a started range resumes within %+v", b)
	}
}
