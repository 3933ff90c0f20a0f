package connector

import (
	"math"
	"reflect"
	"testing"
	"time"
)

func TestInfinity(t *testing.T) {
	day := int64(24 * 60 * 60)
	for _, tc := range []struct {
		name string
		t    time.Time
		want string
	}{
		{"date infinity", time.Unix(math.MaxInt32*day, 0), "infinity"},
		{"date -infinity", time.Unix(math.MinInt32*day, 0), "-infinity"},
		{"timestamp infinity", time.UnixMicro(math.MaxInt64), "infinity"},
		{"timestamp -infinity", time.UnixMicro(math.MinInt64), "-infinity"},
		{"in another zone", time.UnixMicro(math.MaxInt64).In(time.FixedZone("x", 3600)), "infinity"},
		{"a day before the date extreme", time.Unix((math.MaxInt32-1)*day, 0), ""},
		{"a microsecond after the timestamp minimum", time.UnixMicro(math.MinInt64 + 1), ""},
		{"an ordinary time", time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC), ""},
		{"the zero time", time.Time{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Infinity(tc.t)
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("Infinity = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}

func TestJSONTimes(t *testing.T) {
	inf, ninf := time.UnixMicro(math.MaxInt64), time.Unix(math.MinInt32*24*60*60, 0)
	when := time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC)
	t.Run("none", func(t *testing.T) {
		fields := map[string]any{"at": when, "tags": []any{when, "x"}, "n": 1}
		if got := JSONTimes(fields); reflect.ValueOf(got).Pointer() != reflect.ValueOf(fields).Pointer() {
			t.Errorf("a map without infinities was copied: %v", got)
		}
	})
	t.Run("infinities, BC dates, in arrays", func(t *testing.T) {
		arr := []any{when, ninf, nil}
		bc := time.Date(-43, 3, 15, 0, 0, 0, 0, time.UTC) // 44 BC
		fields := map[string]any{"until": inf, "at": when, "history": arr, "n": 1, "ides": bc}
		got := JSONTimes(fields)
		want := map[string]any{"until": "infinity", "at": when, "history": []any{when, "-infinity", nil}, "n": 1,
			"ides": "-0043-03-15T00:00:00Z"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("JSONTimes = %v, want %v", got, want)
		}
		if fields["until"] != inf || arr[1] != ninf {
			t.Errorf("the record's own values changed: %v, %v", fields["until"], arr)
		}
	})
}
