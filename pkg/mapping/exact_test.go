package mapping

import (
	"errors"
	"math"
	"math/big"
	"reflect"
	"strings"
	"testing"

	"github.com/backflow-dev/backflow/pkg/change"
)

// prices has numeric columns.
var prices = &change.Table{Schema: "public", Name: "prices", Columns: []change.Column{
	{Name: "id", Kind: change.KindInt32, Key: true},
	{Name: "price", Kind: change.KindNumeric},
	{Name: "a", Kind: change.KindNumeric},
	{Name: "b", Kind: change.KindNumeric},
	{Name: "one", Kind: change.KindNumeric},
	{Name: "two", Kind: change.KindNumeric},
	{Name: "half", Kind: change.KindNumeric},
	{Name: "big", Kind: change.KindNumeric},
	{Name: "qty", Kind: change.KindInt32},
	{Name: "odd", Kind: change.KindNumeric},
	{Name: "amounts", Kind: change.KindArray, Elem: change.KindNumeric},
}}

func pricesRow() change.Row {
	return change.Row{"id": int32(1), "price": "19.99", "a": "0.1", "b": "0.2", "one": "1", "two": "2.000",
		"half": "2.5", "big": "123456789012345678901234567890.123456789", "qty": int32(10), "odd": "NaN",
		"amounts": []any{"0.1", "0.2", "0.3", nil}}
}

// TestExactNumerics checks that arithmetic, comparisons, sums and rounding of numeric columns
// are exact decimal arithmetic, and what leaves an expression.
func TestExactNumerics(t *testing.T) {
	tests := []struct {
		expr string
		want any
	}{
		{"int(after.price * 100)", 1999},
		{"after.price * 100", 1999.0},
		{"string(after.price * 100)", "1999"},
		{"after.price", "19.99"}, // passed through as its text
		{"after.a + after.b", 0.3},
		{"after.a + after.b == 0.3", true},
		{"0.3 == after.a + after.b", true},
		{"after.a + after.b != 0.3", false},
		{"after.b - after.a == after.a", true},
		{"after.price * 1.2", 23.988},
		{"round(after.price * 1.2 * 100) / 100", 23.99},
		{"after.qty * after.price", 199.9},
		{"after.price - 20", -0.01},
		{"-after.price", -19.99},
		{"-after.qty", int32(-10)},
		{"after.price % 1", 0.99},
		{"after.price > 19.98 && after.price < 20 && after.price >= 19.99 && after.price <= 19.99", true},
		{"after.price == 19.99 && after.two == 2 && after.two == after.one * 2", true},
		{"after.price in [19.99, 5]", true},
		{"19.99 in [after.price]", true},
		{"after.big + 1", 1.2345678901234568e29},
		{"string(after.big + 1)", "123456789012345678901234567891.123456789"},
		{"string(after.big * 10 - after.big * 9 - after.big)", "0"},
		// Division keeps 16 decimal places (more if an operand has more), halves away from zero.
		{"string(after.one / 3)", "0.3333333333333333"},
		{"string(after.two / 3)", "0.6666666666666667"},
		{"string(-after.two / 3)", "-0.6666666666666667"},
		{"string(after.big / 7)", "17636684144620811271604938270.0176366841428571"},
		{"after.two / 4", 0.5},
		{"round(after.half)", 3.0},
		{"round(-after.half)", -3.0},
		{"ceil(after.price)", 20.0},
		{"floor(-after.price)", -20.0},
		{"abs(-after.price)", 19.99},
		{"int(after.price)", 19},
		{"int(-after.price)", -19},
		{"float(after.price)", 19.99},
		{"max(after.price, 20)", 20},
		{"max(after.price, 10)", 19.99},
		{"min(after.a, after.b, 1)", 0.1},
		{"mean([after.one, after.two])", 1.5},
		{"sum(filter(after.amounts, # != nil))", 0.6},
		{"sum(filter(after.amounts, # != nil)) == 0.6", true},
		{"sum(filter(after.amounts, # != nil), # * 10)", 6.0},
		{"sum([1, 2])", 3},
		{"map(filter(after.amounts, # != nil), # * 3)", []any{0.3, 0.6, 0.9}},
		{"cents(after.price * 3)", int64(5997)},
		{"concat(after.price * 2)", "39.98"},
		{"toJSON(after.price * 2)", "39.98"},
		{"after.price + 1 > 20.98 ? 'high' : 'low'", "high"},
		{"string(after.two)", "2"},
		{"concat(after.two, '/', after.price)", "2/19.99"},
		{"toJSON([after.two, after.a])", "[\n  2,\n  0.1\n]"},
		{"after.odd", "NaN"},
		{"after.odd > 1", false},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			m := mustCompile(t, Spec{Sink: "s", Key: []string{"id"}, Fields: map[string]string{"id": "after.id", "v": tt.expr}})
			got, _, err := m.Apply(&change.Event{Op: change.OpUpdate, Table: prices, After: pricesRow()})
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if !reflect.DeepEqual(got["v"], tt.want) {
				t.Errorf("%s = %#v, want %#v", tt.expr, got["v"], tt.want)
			}
		})
	}
}

func TestExactNumericsInFilters(t *testing.T) {
	for _, tt := range []struct {
		filter string
		keep   bool
	}{
		{"after.a + after.b == 0.3", true},
		{"after.price * 100 == 1999", true},
		{"int(after.price * 100) == 1999", true},
		{"after.price > 19.99", false},
		{"after.price * 3 >= 59.97", true},
		{"sum(filter(after.amounts, # != nil)) > 0.6", false},
		{"after.one / 3 * 3 < 1", true}, // 16 decimal places: 0.9999999999999999
	} {
		m := mustCompile(t, Spec{Sink: "s", Key: []string{"id"}, Filter: tt.filter})
		_, keep, err := m.Apply(&change.Event{Op: change.OpUpdate, Table: prices, After: pricesRow()})
		if err != nil || keep != tt.keep {
			t.Errorf("filter %s: keep %v, %v; want %v", tt.filter, keep, err, tt.keep)
		}
	}
}

func TestExactNumericErrors(t *testing.T) {
	for _, tt := range []struct{ expr, want string }{
		{"after.price / (after.one - 1)", "division by zero"},
		{"after.price % 0", "division by zero"},
		{"int(after.big)", "out of the integer range"},
		{"after.price + 'x'", "invalid operation"},
		{"max(after.price, 'x')", "invalid argument for max"},
	} {
		m := mustCompile(t, Spec{Sink: "s", Key: []string{"id"}, Fields: map[string]string{"id": "after.id", "v": tt.expr}})
		_, _, err := m.Apply(&change.Event{Op: change.OpUpdate, Table: prices, After: pricesRow()})
		var ee *ExprError
		if !errors.As(err, &ee) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want an *ExprError with %q", tt.expr, err, tt.want)
		}
	}
}

// FuzzExactArithmetic checks +, -, *, / and comparisons of numeric columns against math/big.
func FuzzExactArithmetic(f *testing.F) {
	f.Add(int64(1999), uint8(2), int64(100), uint8(0))
	f.Add(int64(1), uint8(1), int64(2), uint8(1))
	f.Add(int64(-5), uint8(3), int64(3), uint8(0))
	f.Add(int64(math.MaxInt64), uint8(9), int64(math.MinInt64), uint8(20))
	tab := &change.Table{Schema: "public", Name: "n", Columns: []change.Column{
		{Name: "id", Kind: change.KindInt32, Key: true}, {Name: "a", Kind: change.KindNumeric}, {Name: "b", Kind: change.KindNumeric}}}
	m := mustCompile(f, Spec{Sink: "s", Key: []string{"id"}, Fields: map[string]string{"id": "after.id",
		"sum": "string(after.a + after.b)", "diff": "string(after.a - after.b)", "prod": "string(after.a * after.b)",
		"quot": "after.b == 0 ? nil : string(after.a / after.b)", "less": "after.a < after.b", "eq": "after.a == after.b"}})
	f.Fuzz(func(t *testing.T, am int64, ae uint8, bm int64, be uint8) {
		a, b := decimalText(am, ae%30), decimalText(bm, be%30)
		ra, _ := new(big.Rat).SetString(a)
		rb, _ := new(big.Rat).SetString(b)
		got, _, err := m.Apply(&change.Event{Op: change.OpCreate, Table: tab, After: change.Row{"id": int32(1), "a": a, "b": b}})
		if err != nil {
			t.Fatalf("a=%s b=%s: %v", a, b, err)
		}
		check := func(field string, want *big.Rat) {
			r, ok := new(big.Rat).SetString(got[field].(string))
			if !ok || r.Cmp(want) != 0 {
				t.Errorf("a=%s b=%s: %s = %v, want %s", a, b, field, got[field], want.FloatString(40))
			}
		}
		check("sum", new(big.Rat).Add(ra, rb))
		check("diff", new(big.Rat).Sub(ra, rb))
		check("prod", new(big.Rat).Mul(ra, rb))
		if rb.Sign() != 0 { // rounded to at least 16 places: within half a unit of the last one
			q, _ := new(big.Rat).SetString(got["quot"].(string))
			diff := new(big.Rat).Sub(q, new(big.Rat).Quo(ra, rb))
			if diff.Abs(diff).Cmp(big.NewRat(1, 2e16)) > 0 {
				t.Errorf("a=%s b=%s: quot = %v, off by %s", a, b, got["quot"], diff.FloatString(40))
			}
		}
		if got["less"] != (ra.Cmp(rb) < 0) || got["eq"] != (ra.Cmp(rb) == 0) {
			t.Errorf("a=%s b=%s: less %v, eq %v", a, b, got["less"], got["eq"])
		}
	})
}

// decimalText writes mantissa × 10^-scale as PostgreSQL prints a numeric, e.g. "-0.05".
func decimalText(mantissa int64, scale uint8) string {
	digits := new(big.Int).Abs(big.NewInt(mantissa)).String()
	sign := ""
	if mantissa < 0 {
		sign = "-"
	}
	if scale == 0 {
		return sign + digits
	}
	if len(digits) <= int(scale) {
		digits = strings.Repeat("0", int(scale)-len(digits)+1) + digits
	}
	return sign + digits[:len(digits)-int(scale)] + "." + digits[len(digits)-int(scale):]
}
