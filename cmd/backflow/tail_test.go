package main

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/change"
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

// printed prints ev as tail does, and reads the line back.
func printed(t *testing.T, ev *change.Event) ([]byte, envelope) {
	t.Helper()
	b, err := json.Marshal(newEnvelope(&kgo.Record{Topic: "wh.public.m"}, map[string]any{"id": int32(1)}, ev))
	if err != nil {
		t.Fatal(err)
	}
	var got envelope
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	return b, got
}

// TestEnvelopePrintsNonFiniteFloats: a real or double that is NaN or infinite prints as the
// JSON form of events spells it, rather than failing tail.
func TestEnvelopePrintsNonFiniteFloats(t *testing.T) {
	tbl := &change.Table{Schema: "public", Name: "m", Columns: []change.Column{
		{Name: "id", Kind: change.KindInt32, Key: true},
		{Name: "f8", Kind: change.KindFloat64},
		{Name: "f4", Kind: change.KindFloat32},
		{Name: "arr", Kind: change.KindArray, Elem: change.KindFloat64},
		{Name: "ok", Kind: change.KindFloat64},
	}}
	ev := &change.Event{Op: change.OpUpdate, Table: tbl,
		Before: change.Row{"id": int32(1), "f8": 1.5, "f4": float32(0), "arr": nil, "ok": 2.0},
		After:  change.Row{"id": int32(1), "f8": math.NaN(), "f4": float32(math.Inf(1)), "arr": []any{math.Inf(-1), nil, 0.5}, "ok": 2.0}}
	b, got := printed(t, ev)
	want := map[string]any{"id": 1.0, "f8": "NaN", "f4": "Infinity", "arr": []any{"-Infinity", nil, 0.5}, "ok": 2.0}
	if !reflect.DeepEqual(got.After, want) || got.Before["f8"] != 1.5 {
		t.Fatalf("printed %s, want after %v", b, want)
	}
}

// TestEnvelopePrintsAnyDate: PostgreSQL's infinite dates and timestamps print as it spells them,
// and a BC date in RFC 3339 too, rather than failing tail (encoding/json prints years 0 to 9999
// only).
func TestEnvelopePrintsAnyDate(t *testing.T) {
	tbl := &change.Table{Schema: "public", Name: "m", Columns: []change.Column{
		{Name: "id", Kind: change.KindInt32, Key: true},
		{Name: "d", Kind: change.KindDate},
		{Name: "bc", Kind: change.KindDate},
		{Name: "ts", Kind: change.KindTimestamp},
		{Name: "days", Kind: change.KindArray, Elem: change.KindDate},
		{Name: "ok", Kind: change.KindDate},
	}}
	ev := &change.Event{Op: change.OpCreate, Table: tbl, After: change.Row{"id": int32(1),
		"d": int32(math.MaxInt32), "bc": int32(-2440588 - 365), "ts": int64(math.MinInt64),
		"days": []any{int32(math.MinInt32), int32(0)}, "ok": int32(19782)}}
	b, got := printed(t, ev)
	want := map[string]any{"id": 1.0, "d": "infinity", "bc": "-4714-11-24T00:00:00Z", "ts": "-infinity",
		"days": []any{"-infinity", "1970-01-01T00:00:00Z"}, "ok": "2024-02-29T00:00:00Z"}
	if !reflect.DeepEqual(got.After, want) {
		t.Fatalf("printed %s, want after %v", b, want)
	}
}
