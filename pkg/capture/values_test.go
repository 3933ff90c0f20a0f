package capture

import (
	"reflect"
	"strings"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
)

func TestDecodeTimestampTZ(t *testing.T) {
	cases := map[string]string{
		"2024-02-29 13:45:06.123456+00": "2024-02-29T13:45:06.123456Z",
		"2024-02-29 13:45:06.1+00":      "2024-02-29T13:45:06.100000Z",
		"2024-02-29 13:45:06+00":        "2024-02-29T13:45:06.000000Z",
		"2024-02-29 13:45:06+05:30":     "2024-02-29T08:15:06.000000Z",
		"2024-02-29 13:45:06.5-02":      "2024-02-29T15:45:06.500000Z",
		"infinity":                      "infinity",
	}
	for in, want := range cases {
		got, err := decodeScalar(change.KindTimestampTZ, []byte(in))
		if err != nil || got != want {
			t.Errorf("decode %q = %v, %v; want %q", in, got, err, want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		kind change.Kind
		text string
	}{
		{change.KindInt32, "x"}, {change.KindInt16, "99999999999"}, {change.KindBytes, "zz"},
		{change.KindDate, "2024-13-01"}, {change.KindTimestamp, "yesterday"}, {change.KindTime, "25:99"},
	}
	for _, tc := range cases {
		if v, err := decodeScalar(tc.kind, []byte(tc.text)); err == nil {
			t.Errorf("%s %q decoded as %v, want an error", tc.kind, tc.text, v)
		}
	}
}

// TestDecodeArrays: one-dimensional arrays decode element by element; a multi-dimensional one is
// an error (its row is dead-lettered) rather than flattened into a different value.
func TestDecodeArrays(t *testing.T) {
	d := newDecoder()
	col := change.Column{Name: "a", Kind: change.KindArray, Elem: change.KindInt32}
	ok := []struct {
		text string
		want []any
	}{
		{"{1,NULL,3}", []any{int32(1), nil, int32(3)}},
		{"{}", []any{}},
		{"[0:1]={7,8}", []any{int32(7), int32(8)}},
	}
	for _, tc := range ok {
		got, err := d.decode(col, []byte(tc.text))
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("decode %q = %#v, %v; want %#v", tc.text, got, err, tc.want)
		}
	}
	for _, text := range []string{"{{1,2},{3,4}}", "[1:2][1:1]={{1},{2}}", "{{{1}}}"} {
		if got, err := d.decode(col, []byte(text)); err == nil || !strings.Contains(err.Error(), "dimensions") {
			t.Errorf("decode %q = %#v, %v; want an error naming its dimensions", text, got, err)
		}
	}
}
