package mapping

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
)

// TestMissingColumns checks that a column the event lacks is never mapped to NULL: reading it
// by name fails with a *MissingColumnError, while NULL values, unchanged TOAST values and the
// old row of deletes keep their meaning.
func TestMissingColumns(t *testing.T) {
	renamed := func() change.Row { // name renamed at the source to title
		r := row("title", " Widget ")
		delete(r, "name")
		return r
	}
	keyOnlyUpdate := func() *change.Event {
		ev := upsert(row())
		ev.Before = change.Row{"sku": "A-1", "warehouse": "north"}
		return ev
	}
	insert := upsert(renamed())
	insert.Op = change.OpCreate
	tests := []struct {
		name   string
		fields map[string]string
		key    []string
		filter string
		ev     *change.Event
		want   map[string]any // nil when the filter rejects the event
		err    *MissingColumnError
	}{
		{"column of a field", map[string]string{"sku": "after.sku", "name": "after.name"}, []string{"sku"}, "",
			upsert(renamed()), nil, &MissingColumnError{Path: "map.name", Field: "name", Image: "after", Column: "name"}},
		{"column in an expression", map[string]string{"sku": "after.sku", "label": `upper(after.name) + "!"`}, []string{"sku"}, "",
			insert, nil, &MissingColumnError{Path: "map.label", Field: "label", Image: "after", Column: "name"}},
		{"column in coalesce", map[string]string{"sku": "after.sku", "name": `coalesce(after.name, "?")`}, []string{"sku"}, "",
			upsert(renamed()), nil, &MissingColumnError{Path: "map.name", Field: "name", Image: "after", Column: "name"}},
		{"column of a key field", map[string]string{"code": "after.code"}, []string{"code"}, "",
			upsert(row()), nil, &MissingColumnError{Path: "map.code", Field: "code", Image: "after", Column: "code"}},
		{"column of the filter", map[string]string{"sku": "after.sku"}, []string{"sku"}, `after.name != ""`,
			upsert(renamed()), nil, &MissingColumnError{Path: "filter", Image: "after", Column: "name"}},
		{"column of the filter with the identity mapping", nil, stockKey, "after.flag",
			upsert(row()), nil, &MissingColumnError{Path: "filter", Image: "after", Column: "flag"}},
		{"key column that is not one", map[string]string{"sku": "after.sku", "q": "key.qty"}, []string{"sku"}, "",
			upsert(row()), nil, &MissingColumnError{Path: "map.q", Field: "q", Image: "key", Column: "qty"}},
		{"column of the table the old row of an update lacks is nil", map[string]string{"sku": "after.sku", "was": "before.qty",
			"none": "before.name == nil"}, []string{"sku"}, "", keyOnlyUpdate(),
			map[string]any{"sku": "A-1", "was": nil, "none": true}, nil},
		{"column of no table in the old row", map[string]string{"sku": "after.sku", "was": "before.gone"}, []string{"sku"}, "",
			keyOnlyUpdate(), nil, &MissingColumnError{Path: "map.was", Field: "was", Image: "before", Column: "gone"}},
		{"no old row: before is nil", map[string]string{"sku": "after.sku", "was": "before.qty"}, []string{"sku"}, "",
			upsert(row()), map[string]any{"sku": "A-1", "was": nil}, nil},

		{"NULL is written as NULL", map[string]string{"sku": "after.sku", "name": "after.name", "n": "coalesce(after.name, 'none')"},
			[]string{"sku"}, "", upsert(row("name", nil)), map[string]any{"sku": "A-1", "name": nil, "n": "none"}, nil},
		{"NULL in the filter rejects", map[string]string{"sku": "after.sku"}, []string{"sku"}, "after.active",
			upsert(row("active", nil)), nil, nil},
		{"?. reads a column that may be absent", map[string]string{"sku": "after.sku",
			"name": `after?.name ?? after?.title`, "has": `"name" in after`}, []string{"sku"}, "after?.flag ?? true",
			upsert(renamed()), map[string]any{"sku": "A-1", "name": " Widget ", "has": false}, nil},
		{"unchanged TOAST is left out, not missing", map[string]string{"sku": "after.sku", "description": "after.description",
			"d": "upper(after.description)", "qty": "after.qty"}, []string{"sku"}, "after.qty > 5",
			toasted(nil), map[string]any{"sku": "A-1", "qty": int32(10)}, nil},
		{"delete reading key columns", map[string]string{"sku": "before.sku", "warehouse": "key.warehouse",
			"gone": `op == "d"`}, stockKey, "", deleted(keyOnly),
			map[string]any{"sku": "A-1", "warehouse": "north", "gone": true}, nil},
		{"delete leaves out fields of non-key columns, even unknown ones", map[string]string{"sku": "after.sku", "warehouse": "after.warehouse",
			"name": "before.name", "old": "before.gone", "new": "after.gone + 1"}, stockKey, "after.gone > 1", deleted(keyOnly),
			map[string]any{"sku": "A-1", "warehouse": "north"}, nil},
		{"delete with a key field of a missing column", map[string]string{"sku": "after.sku", "warehouse": "after.site"},
			stockKey, "", deleted(keyOnly), nil, &MissingColumnError{Path: "map.warehouse", Field: "warehouse", Image: "after", Column: "site"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustCompile(t, Spec{Sink: "shop", Path: "sinks[0]", Fields: tt.fields, Key: tt.key, Filter: tt.filter})
			got, keep, err := m.Apply(tt.ev)
			if tt.err != nil {
				var me *MissingColumnError
				if !errors.As(err, &me) {
					t.Fatalf("Apply = %v, %v, %v; want a *MissingColumnError", got, keep, err)
				}
				want := *tt.err
				want.Sink, want.Table = "shop", "public.inventory"
				if *me != want || got != nil || keep {
					t.Fatalf("error %#v, want %#v", *me, want)
				}
				for _, s := range []string{"sink shop", tt.err.Path, `"` + tt.err.Column + `"`} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %s", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if keep != (tt.want != nil) || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Apply = %#v, %v; want %#v", got, keep, tt.want)
			}
		})
	}
}
