package redis

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// timeLayout is RFC 3339 with microseconds, the envelope's form of timestamps.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// formatValue renders a non-nil record value as the text of a hash field or key part: strings and
// []byte as they are, numbers in their shortest exact decimal form, booleans as "true"/"false",
// time.Time as RFC 3339 UTC with microseconds, anything else (arrays, maps) as JSON.
func formatValue(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int8, int16, int32, int64:
		return fmt.Sprint(x), nil
	case uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x), nil
	case float32:
		return formatFloat(float64(x), 32), nil
	case float64:
		return formatFloat(x, 64), nil
	case json.Number:
		return x.String(), nil
	case time.Time:
		return timeText(x), nil
	}
	b, err := json.Marshal(jsonable(v))
	if err != nil {
		return "", fmt.Errorf("encode %T as JSON: %w", v, err)
	}
	return string(b), nil
}

// formatFloat writes floats as encoding/json does, and non-finite values as PostgreSQL does.
func formatFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		return strconv.FormatFloat(f, 'e', -1, bits)
	}
	return strconv.FormatFloat(f, 'f', -1, bits)
}

// timeText is t as RFC 3339 UTC with microseconds, or PostgreSQL's infinity spelled as it does.
func timeText(t time.Time) string {
	if inf, ok := sink.Infinity(t); ok {
		return inf
	}
	return t.UTC().Format(timeLayout)
}

// jsonValue encodes a record value for json mode; times use the same form as hash mode.
func jsonValue(v any) (json.RawMessage, error) {
	b, err := json.Marshal(jsonable(v))
	if err != nil {
		return nil, fmt.Errorf("encode %T as JSON: %w", v, err)
	}
	return b, nil
}

// jsonable replaces time.Time values, at the top level or inside arrays, by their RFC 3339
// microsecond text so that both modes store timestamps alike.
func jsonable(v any) any {
	switch x := v.(type) {
	case time.Time:
		return timeText(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonable(e)
		}
		return out
	}
	return v
}
