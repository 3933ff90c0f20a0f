package mapping

import (
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/change"
)

func TestValues(t *testing.T) {
	ts := time.Date(2024, 5, 1, 10, 0, 0, 1000, time.UTC)
	tests := []struct {
		kind, elem change.Kind
		in, want   any
	}{
		{change.KindString, 0, "text", "text"},
		{change.KindInt16, 0, int32(-7), int32(-7)},
		{change.KindInt32, 0, int32(7), int32(7)},
		{change.KindInt64, 0, int64(1) << 40, int64(1) << 40},
		{change.KindFloat32, 0, float32(1.5), float32(1.5)},
		{change.KindFloat64, 0, 2.25, 2.25},
		{change.KindNumeric, 0, "12.340", "12.340"},
		{change.KindNumeric, 0, "NaN", "NaN"},
		{change.KindBool, 0, true, true},
		{change.KindBytes, 0, []byte{0, 1}, []byte{0, 1}},
		{change.KindDate, 0, int32(19844), time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)},
		{change.KindDate, 0, int32(-1), time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)},
		{change.KindTime, 0, int64(10*3600+4*60+5)*1e6 + 6, "10:04:05.000006"},
		{change.KindTime, 0, int64(24 * 3600 * 1e6), "24:00:00.000000"},
		{change.KindTimestamp, 0, ts.UnixMicro(), ts},
		{change.KindTimestamp, 0, int64(-1), time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC)},
		{change.KindTimestampTZ, 0, "2024-05-01T10:00:00.000001Z", ts},
		{change.KindTimestampTZ, 0, "2024-05-01T12:00:00.000001+02:00", ts},
		{change.KindTimestampTZ, 0, "infinity", "infinity"}, // not RFC 3339: unchanged
		{change.KindInterval, 0, "P1Y2M3DT4H5M6.5S", "P1Y2M3DT4H5M6.5S"},
		{change.KindUUID, 0, "0e4f2a9c-7c1d-4f0e-9d5b-3b2a1c0d9e8f", "0e4f2a9c-7c1d-4f0e-9d5b-3b2a1c0d9e8f"},
		{change.KindJSON, 0, `{"a": 1}`, `{"a": 1}`},
		{change.KindEnum, 0, "gold", "gold"},
		{change.KindArray, change.KindInt32, []any{int32(1), nil}, []any{int32(1), nil}},
		{change.KindArray, change.KindDate, []any{int32(0), nil}, []any{time.Unix(0, 0).UTC(), nil}},
		{change.KindArray, change.KindTimestampTZ, []any{[]any{"2024-05-01T10:00:00.000001Z"}}, []any{[]any{ts}}},
		{change.KindArray, change.KindNumeric, []any{"1.50"}, []any{"1.50"}},
		{change.KindDate, 0, nil, nil},
		{change.KindArray, change.KindDate, nil, nil},
	}
	for _, tt := range tests {
		name := tt.kind.String()
		if tt.kind == change.KindArray {
			name += "/" + tt.elem.String()
		}
		t.Run(name, func(t *testing.T) {
			tab := &change.Table{Columns: []change.Column{{Name: "c", Kind: tt.kind, Elem: tt.elem}}}
			got := Values(tab, change.Row{"c": tt.in})
			if !reflect.DeepEqual(got, map[string]any{"c": tt.want}) {
				t.Errorf("Values(%#v) = %#v, want %#v", tt.in, got["c"], tt.want)
			}
			if tm, ok := got["c"].(time.Time); ok && tm.Location() != time.UTC {
				t.Errorf("location %v, want UTC", tm.Location())
			}
		})
	}
}

func TestValuesRow(t *testing.T) {
	tab := &change.Table{Columns: []change.Column{{Name: "d", Kind: change.KindDate}, {Name: "absent", Kind: change.KindDate}}}
	in := change.Row{"d": int32(1), "extra": int32(5)}
	got := Values(tab, in)
	want := map[string]any{"d": time.Date(1970, 1, 2, 0, 0, 0, 0, time.UTC), "extra": int32(5)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Values = %#v, want %#v", got, want)
	}
	if in["d"] != int32(1) {
		t.Error("Values changed its input")
	}
	if Values(tab, nil) != nil {
		t.Error("Values(nil) is not nil")
	}
}

func TestEnvValues(t *testing.T) {
	tab := &change.Table{Columns: []change.Column{
		{Name: "n", Kind: change.KindNumeric}, {Name: "ns", Kind: change.KindArray, Elem: change.KindNumeric},
		{Name: "s", Kind: change.KindString},
	}}
	plainRow := map[string]any{"n": "1.25", "ns": []any{"2", nil, "NaN", "1e5", "x"}, "s": "3"}
	got := envValues(tab, plainRow, nil)
	want := map[string]any{"n": numeric{text: "1.25"}, "ns": []any{numeric{text: "2"}, nil, math.NaN(), 1e5, "x"}, "s": "3"}
	if _, ok := got["n"].(numeric); !ok || fmt.Sprint(got) != fmt.Sprint(want) || plainRow["n"] != "1.25" {
		t.Errorf("envValues = %#v, want %#v (input %#v)", got, want, plainRow)
	}
}
