package main

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTailKeyFilter: --key takes a whole one-column key or named columns, compared as text.
func TestTailKeyFilter(t *testing.T) {
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		flag string
		key  map[string]any
		want bool
	}{
		{"", map[string]any{"id": int64(1)}, true},
		{"42", map[string]any{"id": int64(42)}, true},
		{"42", map[string]any{"id": int64(4)}, false},
		{"42", map[string]any{"id": int64(42), "wh": "ams"}, false}, // a bare value needs a one-column key
		{"SKU-1", map[string]any{"sku": "SKU-1"}, true},
		{"sku=SKU-1,wh=ams", map[string]any{"sku": "SKU-1", "wh": "ams"}, true},
		{"sku=SKU-1,wh=ams", map[string]any{"sku": "SKU-1", "wh": "rtm"}, false},
		{"wh=ams", map[string]any{"sku": "SKU-1", "wh": "ams"}, true},
		{"price=19.99", map[string]any{"price": "19.99"}, true},
		{"at=2026-01-02T03:04:05Z", map[string]any{"at": when}, true},
		{"nope=1", map[string]any{"id": int64(1)}, false},
	}
	for _, tc := range cases {
		f, err := parseKeyFilter(tc.flag)
		if err != nil {
			t.Fatalf("%q: %v", tc.flag, err)
		}
		if got := f.matches(tc.key); got != tc.want {
			t.Errorf("--key %q on %v = %v, want %v", tc.flag, tc.key, got, tc.want)
		}
	}
	if _, err := parseKeyFilter("a=1,b"); err == nil {
		t.Error(`--key "a=1,b" accepted`)
	}
}

// TestTailFrom: --from takes earliest, latest, an offset or a time, and names what it expects.
func TestTailFrom(t *testing.T) {
	cases := []struct {
		in   string
		want kgo.Offset
		ok   bool
	}{
		{"earliest", kgo.NewOffset().AtStart(), true},
		{"latest", kgo.NewOffset().AtEnd(), true},
		{"17", kgo.NewOffset().At(17), true},
		{"2026-01-02T03:04:05Z", kgo.NewOffset().AfterMilli(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli()), true},
		{"-3", kgo.Offset{}, false},
		{"yesterday", kgo.Offset{}, false},
	}
	for _, tc := range cases {
		got, err := parseStart(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("parseStart(%q) = %v, %v", tc.in, got, err)
		}
	}
}
