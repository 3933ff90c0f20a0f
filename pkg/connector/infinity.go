package connector

import (
	"maps"
	"math"
	"time"
)

// PostgreSQL's infinite dates and timestamps travel as the extremes of their integer forms
// (Debezium's, and capture's: days or microseconds since 1970), which package mapping reads as
// these instants: later (earlier) than any other, so that comparisons hold.
var (
	dateInfinity      = time.Unix(math.MaxInt32*secsPerDay, 0)
	dateMinusInfinity = time.Unix(math.MinInt32*secsPerDay, 0)
	tsInfinity        = time.UnixMicro(math.MaxInt64)
	tsMinusInfinity   = time.UnixMicro(math.MinInt64)
)

const secsPerDay = 24 * 60 * 60

// Infinity reports whether t stands for an infinite date or timestamp, and spells it as
// PostgreSQL does ("infinity", "-infinity"; to_json gives the same). Connectors write that text
// where a target takes text (a hash field, JSON) and refuse the value where a target's date type
// cannot hold it: spelled out as a date, it would be a year no reader expects (5881580).
func Infinity(t time.Time) (string, bool) {
	switch {
	case t.Equal(dateInfinity) || t.Equal(tsInfinity):
		return "infinity", true
	case t.Equal(dateMinusInfinity) || t.Equal(tsMinusInfinity):
		return "-infinity", true
	}
	return "", false
}

// JSONTimes returns fields with every time that encoding/json cannot print (it prints years 0 to
// 9999 only), at the top level or in arrays, replaced by text: an infinite date or timestamp by
// its Infinity text, any other (a BC date) by its RFC 3339 form, as encoding/json prints the
// rest. It is for targets that encode fields with encoding/json, and returns fields itself when
// there is no such time.
func JSONTimes(fields map[string]any) map[string]any {
	var out map[string]any
	for k, v := range fields {
		if s, ok := spelled(v); ok {
			if out == nil {
				out = maps.Clone(fields)
			}
			out[k] = s
		}
	}
	if out == nil {
		return fields
	}
	return out
}

// spelled returns v with its times that encoding/json cannot print spelled, and whether it had
// any.
func spelled(v any) (any, bool) {
	switch x := v.(type) {
	case time.Time:
		if inf, ok := Infinity(x); ok {
			return inf, true
		}
		if y := x.Year(); y < 0 || y > 9999 {
			return x.Format(time.RFC3339Nano), true
		}
		return nil, false
	case []any:
		var out []any
		for i, e := range x {
			s, ok := spelled(e)
			if !ok {
				continue
			}
			if out == nil {
				out = append([]any(nil), x...)
			}
			out[i] = s
		}
		return out, out != nil
	}
	return nil, false
}
