package mapping

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/change"
)

// inventory is the table of the examples in DESIGN.md, with a column of most kinds.
var inventory = &change.Table{Schema: "public", Name: "inventory", Columns: []change.Column{
	{Name: "sku", Kind: change.KindString, Key: true},
	{Name: "warehouse", Kind: change.KindString, Key: true},
	{Name: "qty", Kind: change.KindInt32},
	{Name: "reserved", Kind: change.KindInt32},
	{Name: "price", Kind: change.KindNumeric},
	{Name: "active", Kind: change.KindBool},
	{Name: "name", Kind: change.KindString},
	{Name: "description", Kind: change.KindString},
	{Name: "added", Kind: change.KindDate},
	{Name: "updated_at", Kind: change.KindTimestampTZ},
	{Name: "tags", Kind: change.KindArray, Elem: change.KindString},
	{Name: "unit price", Kind: change.KindNumeric},
}}

// row returns a full inventory row in wire forms, with changes applied.
func row(changes ...any) change.Row {
	r := change.Row{
		"sku": "A-1", "warehouse": "north", "qty": int32(10), "reserved": int32(3),
		"price": "19.99", "active": true, "name": " Widget ", "description": "long text",
		"added": int32(19844), "updated_at": "2024-05-01T10:00:00.000001Z",
		"tags": []any{"red", nil}, "unit price": "0.125",
	}
	for i := 0; i+1 < len(changes); i += 2 {
		r[changes[i].(string)] = changes[i+1]
	}
	return r
}

func upsert(after change.Row) *change.Event {
	return &change.Event{Op: change.OpUpdate, Table: inventory, After: after,
		Source: change.Source{DB: "wh", Schema: "public", Table: "inventory", TxID: 77, LSN: 1234, TsMs: 1714557600000, Snapshot: "false"}}
}

func deleted(before change.Row) *change.Event {
	return &change.Event{Op: change.OpDelete, Table: inventory, Before: before}
}

// keyOnly is the old row of a delete without REPLICA IDENTITY FULL.
var keyOnly = change.Row{"sku": "A-1", "warehouse": "north"}

var stockKey = []string{"sku", "warehouse"}

func TestApply(t *testing.T) {
	updated := time.Date(2024, 5, 1, 10, 0, 0, 1000, time.UTC)
	tests := []struct {
		name   string
		fields map[string]string
		key    []string
		filter string
		ev     *change.Event
		want   map[string]any // nil when the filter rejects the event
	}{
		{"renames", map[string]string{"code": "after.sku", "site": `after["warehouse"]`, "title": "after.name"},
			[]string{"code", "site"}, "", upsert(row()),
			map[string]any{"code": "A-1", "site": "north", "title": " Widget "}},
		{"casts", map[string]string{"sku": "after.sku", "qty_text": "string(after.qty)", "price_int": "int(after.price)",
			"qty_float": "float(after.qty)", "price_float": "float(after.price)"},
			[]string{"sku"}, "", upsert(row()),
			map[string]any{"sku": "A-1", "qty_text": "10", "price_int": 19, "qty_float": 10.0, "price_float": 19.99}},
		{"constants", map[string]string{"sku": "after.sku", "channel": `"web"`, "n": "42", "on": "true", "none": "nil"},
			[]string{"sku"}, "", upsert(row()),
			map[string]any{"sku": "A-1", "channel": "web", "n": 42, "on": true, "none": nil}},
		{"string functions", map[string]string{"sku": "lower(after.sku)", "name": "upper(trim(after.name))",
			"label": `concat(after.sku, "/", after.warehouse, ":", after.qty, nil, " ", after.price)`,
			"first": "coalesce(after?.missing, nil, after.name)", "tags": `join(filter(after.tags, # != nil), ",")`},
			[]string{"sku"}, "", upsert(row()),
			map[string]any{"sku": "a-1", "name": "WIDGET", "label": "A-1/north:10 19.99", "first": " Widget ", "tags": "red"}},
		{"number functions", map[string]string{"sku": "after.sku", "available": "after.qty - after.reserved",
			"price_cents": "cents(after.price)", "unit_cents": `cents(after["unit price"])`, "truncated": "int(after.price * 100)",
			"gross": "round(after.price * 1.2 * 100) / 100", "text_cents": `cents("2.675")`, "null_cents": "cents(after.description)"},
			[]string{"sku"}, "", upsert(row("description", nil)),
			map[string]any{"sku": "A-1", "available": 7, "price_cents": int64(1999), "unit_cents": int64(13),
				"truncated": 1999, "gross": 23.99, "text_cents": int64(268), "null_cents": nil}},
		{"time functions", map[string]string{"sku": "after.sku", "year": "after.updated_at.Year()", "added": "after.added",
			"day": `after.added.Format("2006-01-02")`, "fresh": `now() - after.updated_at < duration("1h")`,
			"since": `after.updated_at > date("2024-01-01")`, "later": `after.updated_at + duration("1h")`},
			[]string{"sku"}, "", upsert(row()),
			map[string]any{"sku": "A-1", "year": 2024, "added": time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC), "day": "2024-05-01",
				"fresh": false, "since": true, "later": updated.Add(time.Hour)}},
		{"conditionals", map[string]string{"sku": "after.sku", "stock": `after.qty > after.reserved ? "in" : "out"`,
			"name": `after?.nickname ?? "unnamed"`, "status": `after.active ? "live" : "hidden"`},
			[]string{"sku"}, "", upsert(row("active", false)),
			map[string]any{"sku": "A-1", "stock": "in", "name": "unnamed", "status": "hidden"}},
		{"exact pass-through of numerics", map[string]string{"sku": "after.sku", "price": "after.price",
			"unit": `after["unit price"]`, "old": "before?.price", "times": "after.price * 100", "paren": "((after.price))",
			"plus": "after.price + 0", "either": "after.price ?? before.price", "spaced": "after\n  .price"},
			[]string{"sku"}, "", &change.Event{Op: change.OpUpdate, Table: inventory, After: row(), Before: row("price", "18.50")},
			map[string]any{"sku": "A-1", "price": "19.99", "unit": "0.125", "old": "18.50", "times": 1999.0,
				"paren": "19.99", "plus": 19.99, "either": 19.99, "spaced": "19.99"}},
		{"environment", map[string]string{"sku": "key.sku", "op": "op", "table": "table", "db": "source.db",
			"lsn": "source.lsn", "tx": "source.txId", "ts": "source.ts_ms", "snap": "source.snapshot",
			"where": "source.schema + '.' + source.table", "inserted": "before == nil"},
			[]string{"sku"}, "", upsert(row()),
			map[string]any{"sku": "A-1", "op": "u", "table": "public.inventory", "db": "wh", "lsn": int64(1234),
				"tx": int64(77), "ts": int64(1714557600000), "snap": "false", "where": "public.inventory", "inserted": true}},
		{"identity", nil, stockKey, "", upsert(row("tags", nil)),
			map[string]any{"sku": "A-1", "warehouse": "north", "qty": int32(10), "reserved": int32(3), "price": "19.99",
				"active": true, "name": " Widget ", "description": "long text", "added": time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC),
				"updated_at": updated, "tags": nil, "unit price": "0.125"}},
		{"$env", map[string]string{"sku": `$env["after"].sku`, "t": "$env.table", "lsn": "$env.source.lsn", "k": "$env.key.sku"},
			[]string{"sku"}, "", upsert(row()),
			map[string]any{"sku": "A-1", "t": "public.inventory", "lsn": int64(1234), "k": "A-1"}},
		{"composite key", map[string]string{"sku": "after.sku", "warehouse": "upper(after.warehouse)", "qty": "after.qty"},
			stockKey, "", upsert(row()),
			map[string]any{"sku": "A-1", "warehouse": "NORTH", "qty": int32(10)}},

		{"filter true", map[string]string{"sku": "after.sku"}, []string{"sku"}, "after.active && after.qty > 5",
			upsert(row()), map[string]any{"sku": "A-1"}},
		{"filter false", map[string]string{"sku": "after.sku"}, []string{"sku"}, "after.active",
			upsert(row("active", false)), nil},
		{"filter null rejects", map[string]string{"sku": "after.sku"}, []string{"sku"}, "after.active",
			upsert(row("active", nil)), nil},
		{"filter on a column read with ?. that the event lacks rejects", map[string]string{"sku": "after.sku"}, []string{"sku"},
			"after?.flag", upsert(row()), nil},
		{"filter on numerics", map[string]string{"sku": "after.sku"}, []string{"sku"}, "after.price > 10 && op in ['c', 'u']",
			upsert(row()), map[string]any{"sku": "A-1"}},

		{"delete maps the key from the old row", map[string]string{"sku": "after.sku", "warehouse": "key.warehouse",
			"available": "after.qty - after.reserved", "label": `after.sku + "@" + after.warehouse`, "gone": `op == "d"`,
			"name": "after.name", "broken": "int(before.missing) + 1"},
			stockKey, "", deleted(keyOnly),
			map[string]any{"sku": "A-1", "warehouse": "north", "label": "A-1@north", "gone": true}},
		{"delete as Avro decodes it: non-key columns nil", map[string]string{"sku": "after.sku", "warehouse": "before.warehouse",
			"name": "before.name", "json": "toJSON(after)"},
			stockKey, "", deleted(change.Row{"sku": "A-1", "warehouse": "north", "name": nil, "qty": nil}),
			map[string]any{"sku": "A-1", "warehouse": "north"}},
		{"delete with the full old row", map[string]string{"sku": "after.sku", "warehouse": "after.warehouse",
			"available": "after.qty - after.reserved", "price": "before.price"},
			stockKey, "", deleted(row()),
			map[string]any{"sku": "A-1", "warehouse": "north", "available": 7, "price": "19.99"}},
		{"delete passes a filter that is null", map[string]string{"sku": "after.sku"}, []string{"sku"}, "after.active",
			deleted(keyOnly), map[string]any{"sku": "A-1"}},
		{"delete passes a filter that fails", map[string]string{"sku": "after.sku"}, []string{"sku"}, "after.qty > 5",
			deleted(keyOnly), map[string]any{"sku": "A-1"}},
		{"delete skipped by an explicit false", map[string]string{"sku": "after.sku"}, []string{"sku"}, `op != "d"`,
			deleted(keyOnly), nil},
		{"delete with identity", nil, stockKey, "", deleted(change.Row{"sku": "A-1", "warehouse": "north", "qty": nil}),
			map[string]any{"sku": "A-1", "warehouse": "north"}},

		{"unchanged TOAST left out", map[string]string{"sku": "after.sku", "description": "after.description",
			"summary": `after.name + ": " + after.description`, "doc": "toJSON(after)", "qty": "after.qty",
			"old": "before.description", "env": `$env.after["description"]`},
			[]string{"sku"}, "", toasted(nil),
			map[string]any{"sku": "A-1", "qty": int32(10), "old": nil}},
		{"unchanged TOAST with identity", nil, stockKey, "", toasted(nil),
			map[string]any{"sku": "A-1", "warehouse": "north", "qty": int32(10), "reserved": int32(3), "price": "19.99",
				"active": true, "name": " Widget ", "added": time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC),
				"updated_at": updated, "tags": []any{"red", nil}, "unit price": "0.125"}},
		{"unchanged TOAST taken from the full old row", map[string]string{"sku": "after.sku", "description": "after.description"},
			[]string{"sku"}, "", toasted(row()),
			map[string]any{"sku": "A-1", "description": "long text"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustCompile(t, Spec{Sink: "s", Path: "sinks[0]", Fields: tt.fields, Key: tt.key, Filter: tt.filter})
			got, keep, err := m.Apply(tt.ev)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if keep != (tt.want != nil) {
				t.Fatalf("keep = %v, want %v (fields %v)", keep, tt.want != nil, got)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("fields:\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

// toasted is an update whose description is an unchanged TOAST value.
func toasted(before change.Row) *change.Event {
	ev := upsert(row("description", nil))
	ev.UnchangedToast = []string{"description"}
	ev.Before = before
	return ev
}

func mustCompile(t testing.TB, s Spec) *Mapping {
	t.Helper()
	m, err := Compile(s)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return m
}

func TestFunctions(t *testing.T) {
	tests := []struct {
		fn   func(...any) (any, error)
		args []any
		want any
		err  string
	}{
		{cents, []any{19.99}, int64(1999), ""},
		{cents, []any{1.005}, int64(101), ""},
		{cents, []any{-1.005}, int64(-101), ""},
		{cents, []any{-0.004}, int64(0), ""},
		{cents, []any{"2.675"}, int64(268), ""},
		{cents, []any{" 7 "}, int64(700), ""},
		{cents, []any{".5"}, int64(50), ""},
		{cents, []any{"1e2"}, int64(10000), ""},
		{cents, []any{"-1.23456789012345678905e3"}, int64(-123457), ""},
		{cents, []any{int32(3)}, int64(300), ""},
		{cents, []any{7}, int64(700), ""},
		{cents, []any{float32(0.5)}, int64(50), ""},
		{cents, []any{nil}, nil, ""},
		{cents, []any{math.NaN()}, nil, `cents: "NaN" is not a finite number`},
		{cents, []any{"abc"}, nil, `cents: "abc" is not a finite number`},
		{cents, []any{true}, nil, "cents: expected a number, got bool"},
		{cents, []any{1e300}, nil, "cents: 1e+300*100 is out of the int64 range"},
		{cents, []any{int64(math.MaxInt64 / 10)}, nil, "cents: 922337203685477580*100 is out of the int64 range"},
		{coalesce, []any{nil, nil, 0, 1}, 0, ""},
		{coalesce, []any{nil}, nil, ""},
		{concat, []any{"a", nil, 1.5, int32(2), 1e21, []byte("b"), time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)},
			"a1.52" + "1000000000000000000000" + "b2024-05-01T00:00:00Z", ""},
	}
	for _, tt := range tests {
		got, err := tt.fn(tt.args...)
		if (err != nil || tt.err != "") && (err == nil || err.Error() != tt.err) {
			t.Errorf("%v: error %v, want %q", tt.args, err, tt.err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%v = %#v, want %#v", tt.args, got, tt.want)
		}
	}
}

func TestApplyTruncate(t *testing.T) {
	ev := &change.Event{Op: change.OpTruncate, Table: inventory}
	for _, tt := range []struct {
		filter string
		keep   bool
	}{{"", true}, {"after.active", true}, {`op != "t"`, false}} {
		m := mustCompile(t, Spec{Sink: "s", Fields: map[string]string{"sku": "after.sku"}, Key: []string{"sku"}, Filter: tt.filter})
		fields, keep, err := m.Apply(ev)
		if err != nil || keep != tt.keep || fields != nil {
			t.Errorf("filter %q: Apply = %v, %v, %v; want nil, %v, nil", tt.filter, fields, keep, err, tt.keep)
		}
	}
}

func TestKeyFromNonKey(t *testing.T) {
	keyless := &change.Table{Schema: "public", Name: "t", Columns: []change.Column{{Name: "email", Kind: change.KindString}}}
	tests := []struct {
		name       string
		fields     map[string]string
		key        []string
		table      *change.Table
		field, col string
	}{
		{"the source key, computed", map[string]string{"code": "after.sku", "site": "upper(after.warehouse)", "name": "after.name"},
			[]string{"code", "site"}, inventory, "", ""},
		{"the event key", map[string]string{"code": "key.sku", "site": "key.warehouse"}, []string{"code", "site"}, inventory, "", ""},
		{"a non-key column", map[string]string{"code": "after.sku", "email": "lower(after.name)"},
			[]string{"code", "email"}, inventory, "email", "name"},
		{"identity, a non-key column", nil, []string{"sku", "name"}, inventory, "name", "name"},
		{"identity, the source key", nil, stockKey, inventory, "", ""},
		{"a table without key", map[string]string{"email": "after.email"}, []string{"email"}, keyless, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustCompile(t, Spec{Sink: "s", Fields: tt.fields, Key: tt.key})
			field, col, ok := m.KeyFromNonKey(tt.table)
			if field != tt.field || col != tt.col || ok != (tt.field != "") {
				t.Errorf("KeyFromNonKey = %q, %q, %v; want %q, %q", field, col, ok, tt.field, tt.col)
			}
		})
	}
}

func TestFilterSelectsRows(t *testing.T) {
	for filter, want := range map[string]bool{
		"":                                 false,
		"after.active":                     true,
		`after.qty > 0 && key.sku != "x"`:  true,
		`table == "public.inventory"`:      true,
		`op != "r"`:                        false,
		"after.qty != before?.qty":         false,
		`source.snapshot != "true"`:        false,
		`$env.after.active`:                false,
		`after.active && op in ["c", "u"]`: false,
	} {
		m := mustCompile(t, Spec{Sink: "s", Fields: map[string]string{"sku": "after.sku"}, Key: []string{"sku"}, Filter: filter})
		if got := m.FilterSelectsRows(); got != want {
			t.Errorf("filter %q: FilterSelectsRows = %v, want %v", filter, got, want)
		}
	}
}

// TestRemoval maps updates the filter rejects as removals of their rows: the filter is not run,
// key fields must evaluate, and other fields are left out when they fail.
func TestRemoval(t *testing.T) {
	tests := []struct {
		name   string
		fields map[string]string
		key    []string
		ev     *change.Event
		want   map[string]any
		err    string
	}{
		{"key and the fields that evaluate", map[string]string{"code": "after.sku", "site": "upper(after.warehouse)",
			"available": "after.qty - after.reserved", "broken": "int(after.description) + 1"},
			[]string{"code", "site"}, upsert(row("active", false)),
			map[string]any{"code": "A-1", "site": "NORTH", "available": 7}, ""},
		{"identity", nil, stockKey, upsert(row("active", false, "tags", nil)),
			map[string]any{"sku": "A-1", "warehouse": "north", "qty": int32(10), "reserved": int32(3), "price": "19.99",
				"active": false, "name": " Widget ", "description": "long text", "added": time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC),
				"updated_at": time.Date(2024, 5, 1, 10, 0, 0, 1000, time.UTC), "tags": nil, "unit price": "0.125"}, ""},
		{"unchanged TOAST left out", map[string]string{"sku": "after.sku", "description": "after.description"},
			[]string{"sku"}, toasted(nil), map[string]any{"sku": "A-1"}, ""},
		{"a null key fails", map[string]string{"sku": "after.name"}, []string{"sku"}, upsert(row("name", nil)),
			nil, "key field evaluated to null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustCompile(t, Spec{Sink: "s", Path: "sinks[0]", Fields: tt.fields, Key: tt.key, Filter: "after.active"})
			got, err := m.Removal(tt.ev)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Removal = %v, %v; want an error containing %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Removal: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("fields:\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	tests := []struct {
		name   string
		fields map[string]string
		key    []string
		filter string
		ev     *change.Event
		want   string
	}{
		{"nil arithmetic", map[string]string{"sku": "after.sku", "price_cents": "int(after.price * 100)"}, []string{"sku"}, "",
			upsert(row("price", nil)), "map.price_cents (sink storefront-stock): invalid operation: <nil> * int (1:17)"},
		{"division by zero", map[string]string{"sku": "after.sku", "ratio": "after.qty % (after.reserved - 3)"},
			[]string{"sku"}, "", upsert(row()), "map.ratio (sink storefront-stock): runtime error: integer divide by zero (1:11)"},
		{"type mismatch", map[string]string{"sku": "after.sku", "label": "after.name + after.qty"}, []string{"sku"}, "",
			upsert(row()), "map.label (sink storefront-stock): invalid operation: string + int32 (1:12)"},
		{"int of nil", map[string]string{"sku": "after.sku", "n": "int(after.name)"}, []string{"sku"}, "",
			upsert(row("name", nil)), "map.n (sink storefront-stock): invalid operation on <nil> (a NULL or missing column) (1:1)"},
		{"cents of text", map[string]string{"sku": "after.sku", "c": "cents(after.name)"}, []string{"sku"}, "",
			upsert(row()), `map.c (sink storefront-stock): cents: "Widget" is not a finite number (1:1)`},
		{"null key", map[string]string{"sku": "after.name"}, []string{"sku"}, "", upsert(row("name", nil)),
			"map.sku (sink storefront-stock): key field evaluated to null"},
		{"key fails on delete", map[string]string{"sku": "after.sku", "warehouse": "upper(after.name)"}, stockKey, "",
			deleted(keyOnly), `map.warehouse (sink storefront-stock): key field reads column "name", whose value the event does not carry`},
		{"identity key not a column", nil, []string{"code"}, "", upsert(row()),
			`key (sink storefront-stock): key field "code" is not a column of public.inventory or is null`},
		{"filter fails", map[string]string{"sku": "after.sku"}, []string{"sku"}, "after.qty > after.reserved", upsert(row("reserved", nil)),
			"filter (sink storefront-stock): invalid operation: int32 > <nil> (1:11)"},
		{"filter not a bool", map[string]string{"sku": "after.sku"}, []string{"sku"}, "after.name", upsert(row()),
			"filter (sink storefront-stock): expected a bool, got string ( Widget )"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustCompile(t, Spec{Sink: "storefront-stock", Path: "sinks[0]", Fields: tt.fields, Key: tt.key, Filter: tt.filter})
			fields, keep, err := m.Apply(tt.ev)
			if err == nil {
				t.Fatalf("Apply = %v, %v; want error %q", fields, keep, tt.want)
			}
			if err.Error() != tt.want || keep || fields != nil {
				t.Errorf("Apply error:\n got %q\nwant %q", err, tt.want)
			}
			var ee *ExprError
			if !errors.As(err, &ee) || ee.Sink != "storefront-stock" {
				t.Errorf("error %T is not an *ExprError of the sink", err)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want []string
	}{
		{"all at once", Spec{Sink: "storefront-stock", Path: "sinks[0]",
			Fields: map[string]string{
				"sku":         "after.sku",
				"available":   "afterr.qty - after.reserved",
				"price_cents": "int(after.price * )",
				"unit cost":   "",
				"label":       "upper(after.name, 1)",
				"stamp":       "source.tsms",
				"n":           `op + 1`,
			},
			Key: []string{"sku", "warehouse", "sku"}, Filter: `"yes"`},
			[]string{
				"sinks[0].map.available (sink storefront-stock): unknown name afterr (1:1)",
				`sinks[0].map.label (sink storefront-stock): too many arguments to call upper (1:1)`,
				"sinks[0].map.n (sink storefront-stock): invalid operation: + (mismatched types string and int) (1:4)",
				"sinks[0].map.price_cents (sink storefront-stock): unexpected token Bracket(\")\") (1:19)",
				"sinks[0].map.stamp (sink storefront-stock): type mapping.source has no field tsms (1:8)",
				`sinks[0].map["unit cost"] (sink storefront-stock): expected an expression`,
				"sinks[0].filter (sink storefront-stock): expected bool, but got string",
				`sinks[0].key[1] (sink storefront-stock): key field "warehouse" is not mapped; expected one of the map fields (available, label, n, price_cents, sku, stamp, unit cost)`,
				`sinks[0].key[2] (sink storefront-stock): key field "sku" is listed twice`,
			}},
		{"non-bool filter", Spec{Sink: "s", Path: "sinks[2]", Filter: "after.qty + 1 > 0 ? 'a' : 'b'"},
			[]string{"sinks[2].filter (sink s): expected bool, but got string"}},
		{"unknown name in filter", Spec{Sink: "s", Path: "sinks[1]", Filter: "after.active and\n  beforee.active"},
			[]string{"sinks[1].filter (sink s): unknown name beforee (2:3)"}},
		{"builtins keep their checks", Spec{Sink: "s", Fields: map[string]string{"a": `round("x")`, "b": "int(after.qty, 2)"}},
			[]string{"map.a (sink s): invalid argument for round (type string) (1:1)",
				"map.b (sink s): invalid number of arguments (expected 1, got 2) (1:1)"}},
		{"extra functions check arity", Spec{Sink: "s", Fields: map[string]string{"a": "cents(1, 2)", "b": "coalesce()"}},
			[]string{"map.a (sink s): too many arguments to call cents (1:1)", "map.b (sink s): not enough arguments to call coalesce (1:1)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Compile(tt.spec)
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("Compile = %v, %v; want a *CompileError", m, err)
			}
			got := strings.Split(err.Error(), "\n")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tt.want)
			}
			if len(ce.Errors) != len(tt.want) {
				t.Errorf("%d *ExprError, want %d", len(ce.Errors), len(tt.want))
			}
		})
	}
}

func TestCompileErrorPosition(t *testing.T) {
	_, err := Compile(Spec{Sink: "s", Path: "sinks[0]", Fields: map[string]string{"a": "after.x +\n  nope"}})
	var ee *ExprError
	if !errors.As(err, &ee) || ee.Line != 2 || ee.Column != 3 || ee.Path != "sinks[0].map.a" {
		t.Fatalf("got %#v, want line 2 column 3 at sinks[0].map.a", ee)
	}
}

func TestFieldsAndOrder(t *testing.T) {
	m := mustCompile(t, Spec{Sink: "s", Fields: map[string]string{
		"zeta": "1", "warehouse": "after.warehouse", "alpha": "2", "sku": "after.sku", "mid": "3",
	}, Key: []string{"warehouse", "sku"}})
	want := []string{"warehouse", "sku", "alpha", "mid", "zeta"}
	if got := m.Fields(); !reflect.DeepEqual(got, want) {
		t.Errorf("Fields() = %v, want %v", got, want)
	}
	if got := m.Key(); !reflect.DeepEqual(got, []string{"warehouse", "sku"}) {
		t.Errorf("Key() = %v", got)
	}
	fields, _, _ := m.Apply(upsert(row()))
	if got := m.Order(fields); !reflect.DeepEqual(got, want) {
		t.Errorf("Order() = %v, want %v", got, want)
	}
	if m.Identity() {
		t.Error("Identity() = true for a map")
	}

	id := mustCompile(t, Spec{Sink: "s", Key: []string{"warehouse", "sku"}})
	fields, _, _ = id.Apply(upsert(change.Row{"sku": "A", "warehouse": "n", "qty": int32(1), "active": true}))
	if got, want := id.Order(fields), []string{"warehouse", "sku", "active", "qty"}; !reflect.DeepEqual(got, want) || id.Fields() != nil || !id.Identity() {
		t.Errorf("identity: Order() = %v, want %v; Fields() = %v", got, want, id.Fields())
	}
}

// TestConcurrentApply runs one mapping from many goroutines (run with -race).
func TestConcurrentApply(t *testing.T) {
	m := mustCompile(t, benchSpec)
	done := make(chan error)
	for range 8 {
		go func() {
			var err error
			for range 200 {
				if _, _, e := m.Apply(upsert(row())); e != nil {
					err = e
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// benchSpec is a 10-field mapping of the kind DESIGN.md shows.
var benchSpec = Spec{Sink: "storefront-stock", Path: "sinks[0]", Key: stockKey, Filter: "after.active", Fields: map[string]string{
	"sku":         "after.sku",
	"warehouse":   "after.warehouse",
	"available":   "after.qty - after.reserved",
	"price":       "after.price",
	"price_cents": "cents(after.price)",
	"name":        "upper(trim(after.name))",
	"label":       `concat(after.sku, "@", after.warehouse)`,
	"in_stock":    "after.qty > after.reserved",
	"updated":     "after.updated_at",
	"source_lsn":  "source.lsn",
}}

func BenchmarkApply(b *testing.B) {
	m := mustCompile(b, benchSpec)
	ev := upsert(row())
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := m.Apply(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// TestProjection checks which mappings are projections of the after image, and that for those
// Apply on a created row returns exactly the columns Projection names.
func TestProjection(t *testing.T) {
	all := make([]string, len(inventory.Columns))
	for i, c := range inventory.Columns {
		all[i] = c.Name
	}
	some := make([]string, len(inventory.Columns))
	copy(some, []string{"sku", "warehouse", "qty"})
	tests := []struct {
		name string
		spec Spec
		want []string // nil: not a projection
	}{
		{"identity", Spec{Key: stockKey}, all},
		{"picked columns", Spec{Key: stockKey, Fields: map[string]string{"sku": "after.sku", "warehouse": "after.warehouse", "qty": "after.qty"}}, some},
		{"renamed column", Spec{Key: stockKey, Fields: map[string]string{"sku": "after.sku", "warehouse": "after.warehouse", "amount": "after.qty"}}, nil},
		{"expression", Spec{Key: stockKey, Fields: map[string]string{"sku": "after.sku", "warehouse": "after.warehouse", "qty": "after.qty + 1"}}, nil},
		{"filter", Spec{Key: stockKey, Filter: "after.active"}, nil},
		{"field not a column", Spec{Key: stockKey, Fields: map[string]string{"sku": "after.sku", "warehouse": "after.warehouse", "gone": "after.gone"}}, nil},
		{"key not a column", Spec{Key: []string{"id"}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mustCompile(t, tc.spec)
			got, ok := m.Projection(inventory)
			if ok != (tc.want != nil) || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Projection = %q, %v; want %q", got, ok, tc.want)
			}
			if !ok {
				return
			}
			ev := upsert(row())
			ev.Op = change.OpCreate
			fields, keep, err := m.Apply(ev)
			if err != nil || !keep {
				t.Fatalf("Apply: %v (keep %v)", err, keep)
			}
			var names []string
			for _, n := range got {
				if n != "" {
					names = append(names, n)
				}
			}
			if len(fields) != len(names) {
				t.Fatalf("Apply gave %d fields, Projection names %d: %v", len(fields), len(names), fields)
			}
			for _, n := range names {
				if _, ok := fields[n]; !ok {
					t.Fatalf("Apply's result lacks %q", n)
				}
			}
		})
	}
}
