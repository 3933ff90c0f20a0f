package mapping

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/vm/runtime"
	// shopspring/decimal rather than cockroachdb/apd: its values are immutable (safe to share
	// between records and goroutines without copying), it has the few operations expressions
	// need (exact +, -, *, %, division to a chosen scale, rounding half away from zero like expr's
	// round and like cents), no dependencies, and a stable API since v1.
	"github.com/shopspring/decimal"
)

// numeric is a NUMERIC column's value as expressions see it: an exact decimal. Arithmetic and
// comparisons on it are exact (see exactOps); it leaves the expression as a float64 (see
// fromEnv), the type expressions computed with before, while a field that is just the column
// passes its decimal text through.
type numeric struct {
	d    decimal.Decimal
	text string // a column's decimal text, parsed only when used; "" for computed values
}

// dec returns the decimal.
func (n numeric) dec() decimal.Decimal {
	if n.text != "" {
		return decimal.RequireFromString(n.text) // numericValue checked the text
	}
	return n.d
}

// String is the plain decimal text without trailing zeros ("19.9" for a NUMERIC(10,2) 19.90), as
// string(), concat and toJSON print it and as they printed numerics when those were float64.
func (n numeric) String() string {
	if n.text != "" {
		if !strings.Contains(n.text, ".") {
			return n.text
		}
		return strings.TrimSuffix(strings.TrimRight(n.text, "0"), ".")
	}
	return n.d.String()
}

// MarshalJSON writes a JSON number, as toJSON(after) wrote numerics before.
func (n numeric) MarshalJSON() ([]byte, error) { return []byte(n.String()), nil }

// divScale is the least number of decimal places a quotient of numerics keeps.
const divScale = 16

// numericValue converts a numeric's decimal text to a numeric; "NaN" and "±Infinity", which
// decimals cannot hold, become float64 as before; anything else is returned unchanged.
func numericValue(v any) any {
	s, ok := v.(string)
	if !ok || s == "" {
		return v
	}
	if !plainDecimal(s) { // NaN, ±Infinity, or not a numeric's text at all
		return numericFloat(v)
	}
	return numeric{text: s} // parsed when an operator or function uses it
}

// plainDecimal reports whether s is a decimal as PostgreSQL prints a numeric: an optional minus,
// digits, and optionally a point and more digits ("-12.340").
func plainDecimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	whole, frac, _ := strings.Cut(s, ".")
	return whole != "" && digits([]byte(whole)) && digits([]byte(frac))
}

// toDecimal reads a numeric, an integer or a finite float (as its shortest decimal text, so 1.2
// is 1.2) as a decimal.
func toDecimal(v any) (decimal.Decimal, bool) {
	switch x := v.(type) {
	case numeric:
		return x.dec(), true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return decimal.Decimal{}, false
		}
		return decimal.NewFromFloat(x), true
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return decimal.Decimal{}, false
		}
		return decimal.NewFromFloat32(x), true
	case uint64:
		return decimal.NewFromUint64(x), true
	case uint:
		return decimal.NewFromUint64(uint64(x)), true
	case uint8:
		return decimal.NewFromInt(int64(x)), true
	case uint16:
		return decimal.NewFromInt(int64(x)), true
	case int8:
		return decimal.NewFromInt(int64(x)), true
	}
	if n, ok := toInt64(v); ok {
		return decimal.NewFromInt(n), true
	}
	return decimal.Decimal{}, false
}

// floatOf returns a numeric as float64 and any other value unchanged: what expr's own operators
// and builtins get when a numeric meets a value that is not a number.
func floatOf(v any) any {
	if n, ok := v.(numeric); ok {
		return n.dec().InexactFloat64()
	}
	return v
}

// decimals reads two operands as decimals when one is a numeric and both are numbers.
func decimals(a, b any) (x, y decimal.Decimal, ok bool) {
	_, an := a.(numeric)
	_, bn := b.(numeric)
	if !an && !bn {
		return x, y, false
	}
	x, okx := toDecimal(a)
	y, oky := toDecimal(b)
	return x, y, okx && oky
}

var errDivZero = errors.New("division by zero")

// arith applies an arithmetic operator: exactly when one operand is a numeric and the other a
// number, as expr does otherwise.
func arith(op string, a, b any) (any, error) {
	if x, y, ok := decimals(a, b); ok {
		switch op {
		case "+":
			return numeric{d: x.Add(y)}, nil
		case "-":
			return numeric{d: x.Sub(y)}, nil
		case "*":
			return numeric{d: x.Mul(y)}, nil
		case "/":
			if y.IsZero() {
				return nil, errDivZero
			}
			scale := max(divScale, -x.Exponent(), -y.Exponent())
			return numeric{d: x.DivRound(y, scale)}, nil
		case "%":
			if y.IsZero() {
				return nil, errDivZero
			}
			return numeric{d: x.Mod(y)}, nil
		}
	}
	a, b = floatOf(a), floatOf(b)
	switch op {
	case "+":
		return runtime.Add(a, b), nil
	case "-":
		return runtime.Subtract(a, b), nil
	case "*":
		return runtime.Multiply(a, b), nil
	case "/":
		return runtime.Divide(a, b), nil
	case "%":
		return runtime.Modulo(a, b), nil
	}
	return runtime.Exponent(a, b), nil // ** and ^
}

// compare applies a comparison operator, exactly when one operand is a numeric and the other a
// number.
func compare(op string, a, b any) bool {
	if x, y, ok := decimals(a, b); ok {
		c := x.Cmp(y)
		switch op {
		case "==":
			return c == 0
		case "!=":
			return c != 0
		case "<":
			return c < 0
		case "<=":
			return c <= 0
		case ">":
			return c > 0
		}
		return c >= 0
	}
	a, b = floatOf(a), floatOf(b)
	switch op {
	case "==":
		return runtime.Equal(a, b)
	case "!=":
		return !runtime.Equal(a, b)
	case "<":
		return runtime.Less(a, b)
	case "<=":
		return runtime.LessOrEqual(a, b)
	case ">":
		return runtime.More(a, b)
	}
	return runtime.MoreOrEqual(a, b)
}

// in is expr's `in` with exact equality for numerics in arrays.
func in(needle, haystack any) bool {
	if _, ok := needle.(numeric); ok {
		if arr, ok := haystack.([]any); ok {
			for _, e := range arr {
				if compare("==", needle, e) {
					return true
				}
			}
			return false
		}
	}
	if arr, ok := haystack.([]any); ok && containsNumeric(arr) {
		for _, e := range arr {
			if compare("==", needle, e) {
				return true
			}
		}
		return false
	}
	return runtime.In(floatOf(needle), haystack)
}

func containsNumeric(arr []any) bool {
	for _, e := range arr {
		if _, ok := e.(numeric); ok {
			return true
		}
	}
	return false
}

// The names patched expressions call; a leading underscore keeps them apart from the documented
// functions.
var binaryCalls = map[string]string{
	"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "%": "_mod", "**": "_pow", "^": "_pow",
	"==": "_eq", "!=": "_ne", "<": "_lt", "<=": "_le", ">": "_gt", ">=": "_ge", "in": "_in",
}

// exactBuiltins are the builtins that exactOps replaces by "_<name>" when an argument's type is
// known only at run time; with arguments of known types they stay expr's own, checked at compile
// time.
var exactBuiltins = map[string]bool{
	"int": true, "float": true, "round": true, "ceil": true, "floor": true, "abs": true,
	"max": true, "min": true, "mean": true, "median": true,
}

// exactOps is an expr patch: operators with an operand whose type is known only at run time
// (a column: `after.price * 100`) become calls of the functions above, which compute exactly on
// numerics and leave every other value to expr's own operator; so do the exactBuiltins. sum()
// over such values becomes a reduce() with the exact +. Operators and builtins on values of
// known types (`source.ts_ms / 1000`, `round(1.5)`) stay as they are.
type exactOps struct{}

// Visit patches one node; ast.Walk visits the operands first.
func (exactOps) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.BinaryNode:
		name, ok := binaryCalls[n.Operator]
		if !ok || !dynamic(n.Left) && !dynamic(n.Right) && (n.Operator != "in" || !dynamicElems(n.Right)) {
			return
		}
		ast.Patch(node, &ast.CallNode{Callee: &ast.IdentifierNode{Value: name}, Arguments: []ast.Node{n.Left, n.Right}})
	case *ast.UnaryNode:
		if n.Operator == "-" && dynamic(n.Node) {
			ast.Patch(node, &ast.CallNode{Callee: &ast.IdentifierNode{Value: "_neg"}, Arguments: []ast.Node{n.Node}})
		}
	case *ast.BuiltinNode:
		if exactBuiltins[n.Name] && slices.ContainsFunc(n.Arguments, dynamicElems) && validBuiltin(n) {
			ast.Patch(node, &ast.CallNode{Callee: &ast.IdentifierNode{Value: "_" + n.Name}, Arguments: n.Arguments})
			return
		}
		if n.Name != "sum" || len(n.Arguments) == 0 || !dynamicElems(n.Arguments[0]) {
			return
		}
		var elem ast.Node = &ast.PointerNode{}
		if len(n.Arguments) == 2 {
			p, ok := n.Arguments[1].(*ast.PredicateNode)
			if !ok {
				return
			}
			elem = p.Node
		}
		add := &ast.CallNode{Callee: &ast.IdentifierNode{Value: "_add"}, Arguments: []ast.Node{&ast.PointerNode{Name: "acc"}, elem}}
		ast.Patch(node, &ast.BuiltinNode{Name: "reduce", Arguments: []ast.Node{n.Arguments[0], &ast.PredicateNode{Node: add}, &ast.IntegerNode{Value: 0}}})
	}
}

// validBuiltin reports whether expr's own checks accept a builtin's arguments; when they do not,
// the builtin stays so that Compile reports its error.
func validBuiltin(n *ast.BuiltinNode) bool {
	f := builtin.Builtins[builtin.Index[n.Name]]
	if f.Validate == nil {
		return true
	}
	types := make([]reflect.Type, len(n.Arguments))
	for i, a := range n.Arguments {
		types[i] = a.Type()
	}
	_, err := f.Validate(types)
	return err == nil
}

// dynamic reports whether a node's type is known only at run time.
func dynamic(n ast.Node) bool {
	t := n.Type()
	return t == nil || t.Kind() == reflect.Interface
}

// dynamicElems reports whether an array's elements may be numerics.
func dynamicElems(n ast.Node) bool {
	t := n.Type()
	return t == nil || t.Kind() == reflect.Interface || (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && t.Elem().Kind() == reflect.Interface
}

// exactFunctions are the patch and the functions it calls: the operators, and the exactBuiltins
// made exact on numerics (mean and median take them as float64).
func exactFunctions() []expr.Option {
	opts := []expr.Option{expr.Patch(exactOps{})}
	seen := map[string]bool{}
	for op, name := range binaryCalls {
		if seen[name] {
			continue
		}
		seen[name] = true
		switch name {
		case "_eq", "_ne", "_lt", "_le", "_gt", "_ge":
			opts = append(opts, expr.Function(name, func(args ...any) (any, error) {
				return compare(op, args[0], args[1]), nil
			}, new(func(any, any) bool)))
		case "_in":
			opts = append(opts, expr.Function(name, func(args ...any) (any, error) {
				return in(args[0], args[1]), nil
			}, new(func(any, any) bool)))
		default:
			opts = append(opts, expr.Function(name, func(args ...any) (any, error) {
				return arith(op, args[0], args[1])
			}, new(func(any, any) any)))
		}
	}
	return append(opts,
		expr.Function("_neg", func(args ...any) (any, error) {
			if n, ok := args[0].(numeric); ok {
				return numeric{d: n.dec().Neg()}, nil
			}
			return runtime.Negate(args[0]), nil
		}, new(func(any) any)),
		expr.Function("_int", exactInt, new(func(any) int)),
		expr.Function("_float", unary(func(d decimal.Decimal) any { return d.InexactFloat64() }, builtin.Float), new(func(any) float64)),
		expr.Function("_round", unary(func(d decimal.Decimal) any { return numeric{d: d.Round(0)} }, builtin.Round), new(func(any) any)),
		expr.Function("_ceil", unary(func(d decimal.Decimal) any { return numeric{d: d.Ceil()} }, builtin.Ceil), new(func(any) any)),
		expr.Function("_floor", unary(func(d decimal.Decimal) any { return numeric{d: d.Floor()} }, builtin.Floor), new(func(any) any)),
		expr.Function("_abs", unary(func(d decimal.Decimal) any { return numeric{d: d.Abs()} }, builtin.Abs), new(func(any) any)),
		expr.Function("_max", extreme("max", 1), new(func(any, ...any) any)),
		expr.Function("_min", extreme("min", -1), new(func(any, ...any) any)),
		expr.Function("_mean", asFloats("mean"), new(func(any, ...any) any)),
		expr.Function("_median", asFloats("median"), new(func(any, ...any) any)),
	)
}

// unary makes a one-argument builtin exact on numerics, leaving other values to expr's version.
func unary(exact func(decimal.Decimal) any, other func(any) any) func(args ...any) (any, error) {
	return func(args ...any) (any, error) {
		if n, ok := args[0].(numeric); ok {
			return exact(n.dec()), nil
		}
		return other(args[0]), nil
	}
}

// exactInt is int(): a numeric is truncated toward zero, exactly.
func exactInt(args ...any) (any, error) {
	n, ok := args[0].(numeric)
	if !ok {
		return builtin.Int(args[0]), nil
	}
	t := n.dec().Truncate(0)
	if t.GreaterThan(decimal.NewFromInt(math.MaxInt64)) || t.LessThan(decimal.NewFromInt(math.MinInt64)) {
		return nil, fmt.Errorf("int: %s is out of the integer range", n)
	}
	return int(t.IntPart()), nil
}

// builtinFunc returns expr's own implementation of a builtin taking any arguments.
func builtinFunc(name string) func(args ...any) (any, error) {
	for _, f := range builtin.Builtins {
		if f.Name == name {
			return f.Func
		}
	}
	panic("mapping: expr has no builtin " + name)
}

// flatten lists the arguments of max, min, mean and median, arrays element by element.
func flatten(args []any) []any {
	var out []any
	for _, a := range args {
		if arr, ok := a.([]any); ok {
			out = append(out, flatten(arr)...)
		} else {
			out = append(out, a)
		}
	}
	return out
}

// extreme is max (sign 1) or min (sign -1): exact when numerics take part, expr's otherwise.
func extreme(name string, sign int) func(args ...any) (any, error) {
	other := builtinFunc(name)
	return func(args ...any) (any, error) {
		all := flatten(args)
		if !containsNumeric(all) {
			return other(args...)
		}
		var best any
		var bestD decimal.Decimal
		for _, a := range all {
			d, ok := toDecimal(a)
			if !ok {
				return nil, fmt.Errorf("invalid argument for %s (type %T)", name, a)
			}
			if best == nil || d.Cmp(bestD)*sign > 0 {
				best, bestD = a, d
			}
		}
		return best, nil
	}
}

// asFloats leaves a builtin to expr with numerics as float64 (mean and median are float64
// results anyway).
func asFloats(name string) func(args ...any) (any, error) {
	other := builtinFunc(name)
	return func(args ...any) (any, error) {
		conv := make([]any, len(args))
		for i, a := range args {
			conv[i] = fromEnv(a)
		}
		return other(conv...)
	}
}

// fromEnv turns what an expression computed into the plain values connectors take: a numeric
// becomes float64 as numeric arithmetic gave before (exact up to float64's 15 significant
// digits; string(x) keeps every digit), in arrays and maps too.
func fromEnv(v any) any {
	switch x := v.(type) {
	case numeric:
		return x.dec().InexactFloat64()
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = fromEnv(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = fromEnv(e)
		}
		return out
	}
	return v
}
