package mapping

import (
	"bytes"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
)

// functions are the functions added to expr's builtins; see the package doc. The types make
// expr check the number of arguments at compile time.
func functions() []expr.Option {
	return []expr.Option{
		expr.Function("coalesce", coalesce, new(func(any, ...any) any)),
		expr.Function("concat", concat, new(func(any, ...any) string)),
		expr.Function("cents", cents, new(func(any) any)),
	}
}

// coalesce returns the first argument that is not nil.
func coalesce(args ...any) (any, error) {
	for _, a := range args {
		if a != nil {
			return a, nil
		}
	}
	return nil, nil
}

// concat joins the text of the non-nil arguments.
func concat(args ...any) (any, error) {
	var b strings.Builder
	for _, a := range args {
		if a != nil {
			b.WriteString(text(a))
		}
	}
	return b.String(), nil
}

// text formats a value for concat: numbers in plain decimal, times in RFC 3339.
func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case numeric:
		return x.String()
	case []byte:
		return string(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32)
	case time.Time:
		return x.Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}

// cents returns x*100 rounded half away from zero as int64; nil stays nil. It computes in exact
// decimal: a float counts as its shortest decimal text, so cents(1.005) is 101 although the
// float64 nearest to 1.005 is slightly smaller.
func cents(args ...any) (any, error) {
	x := args[0]
	if x == nil {
		return nil, nil
	}
	if c, ok := fastCents(x); ok {
		return c, nil
	}
	r, err := toRat(x)
	if err != nil {
		return nil, err
	}
	r.Mul(r, big.NewRat(100, 1))
	c := roundHalfAway(r)
	if !c.IsInt64() {
		return nil, fmt.Errorf("cents: %v*100 is out of the int64 range", x)
	}
	return c.Int64(), nil
}

// fastCents computes cents without allocating for integers, floats and plain decimal texts; ok is
// false for other forms (exponents, long numbers), which cents leaves to math/big.
func fastCents(x any) (int64, bool) {
	if n, ok := toInt64(x); ok {
		return n * 100, n < math.MaxInt64/100 && n > math.MinInt64/100
	}
	var buf [32]byte
	switch v := x.(type) {
	case numeric:
		return decimalCents([]byte(v.String()))
	case float64:
		return decimalCents(strconv.AppendFloat(buf[:0], v, 'f', -1, 64))
	case string:
		return decimalCents([]byte(strings.TrimSpace(v)))
	}
	return 0, false
}

// decimalCents reads "-12.345" as -1235: the whole part and two decimals, rounded half away from
// zero by the third decimal.
func decimalCents(s []byte) (int64, bool) {
	neg := len(s) > 0 && s[0] == '-'
	if neg {
		s = s[1:]
	}
	whole, frac, _ := bytes.Cut(s, []byte("."))
	if len(whole) == 0 || len(whole) > 15 || !digits(whole) || !digits(frac) {
		return 0, false
	}
	var c int64
	for _, d := range whole {
		c = c*10 + int64(d-'0')
	}
	for i := range 2 {
		c *= 10
		if i < len(frac) {
			c += int64(frac[i] - '0')
		}
	}
	if len(frac) > 2 && frac[2] >= '5' {
		c++
	}
	if neg {
		c = -c
	}
	return c, true
}

func digits(s []byte) bool {
	for _, d := range s {
		if d < '0' || d > '9' {
			return false
		}
	}
	return true
}

// toRat reads an integer, a float or a decimal string as an exact rational.
func toRat(x any) (*big.Rat, error) {
	if n, ok := toInt64(x); ok {
		return new(big.Rat).SetInt64(n), nil
	}
	var s string
	switch v := x.(type) {
	case numeric:
		s = v.String()
	case float64:
		s = strconv.FormatFloat(v, 'f', -1, 64)
	case float32:
		s = strconv.FormatFloat(float64(v), 'f', -1, 32)
	case string:
		s = strings.TrimSpace(v)
	default:
		return nil, fmt.Errorf("cents: expected a number, got %T", x)
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, fmt.Errorf("cents: %q is not a finite number", s)
	}
	return r, nil
}

// roundHalfAway rounds r to an integer, halves away from zero.
func roundHalfAway(r *big.Rat) *big.Int {
	q, m := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	if m.Sign() == 0 {
		return q
	}
	twice := new(big.Int).Abs(m)
	if twice.Lsh(twice, 1).Cmp(r.Denom()) >= 0 {
		q.Add(q, big.NewInt(int64(r.Sign())))
	}
	return q
}
