package sqlname

import (
	"slices"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	cases := []struct {
		in    string
		quote byte
		want  []string
		err   string
	}{
		{"t", '"', []string{"t"}, ""},
		{"Sales Data.Stock Levels", '"', []string{"Sales Data", "Stock Levels"}, ""},
		{`"a.b"."c.d"`, '"', []string{"a.b", "c.d"}, ""},
		{`"q""x".t`, '"', []string{`q"x`, "t"}, ""},
		{"`my db`.`t.x`", '`', []string{"my db", "t.x"}, ""},
		{"`a``b`", '`', []string{"a`b"}, ""},
		{"odd `name` t", '`', []string{"odd `name` t"}, ""},
		{"a.b.c", '"', []string{"a", "b", "c"}, ""},
		{"", '"', nil, "empty name part"},
		{".t", '"', nil, "empty name part"},
		{"s.", '"', nil, "empty name part"},
		{"a..b", '`', nil, "empty name part"},
		{`"open`, '"', nil, `unterminated " quote`},
		{`"a"b`, '"', nil, `unexpected "b" after a quoted name`},
	}
	for _, tc := range cases {
		got, err := Split(tc.in, tc.quote)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Split(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("Split(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
