package codec

import (
	"encoding/base64"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/backflow-dev/backflow/pkg/change"
)

// conv turns a decoded base value (int32, int64, float32, float64, bool, string, []byte or, for
// structs, map[string]any) into the form of a kind. It is never called with nil.
type conv func(v any) (any, error)

// semantic maps a Kafka Connect schema type (int8, int16, int32, int64, float or float32, double
// or float64, boolean, string, bytes, struct) and semantic name, as Debezium writes them, to a kind and the
// conversion of its values; conv is nil when the base value already has the kind's form.
//
// Debezium's temporal types in milliseconds or nanoseconds become microseconds, its decimals
// (org.apache.kafka.connect.data.Decimal, io.debezium.data.VariableScaleDecimal) become numeric
// strings, and its MicroDuration/NanoDuration intervals become ISO 8601 durations in seconds.
func semantic(ctype, name string, params map[string]any) (change.Kind, conv, error) {
	switch name {
	case semDate, "org.apache.kafka.connect.data.Date":
		return change.KindDate, toInt32Conv, nil
	case "io.debezium.time.Time", "org.apache.kafka.connect.data.Time":
		return change.KindTime, scaleConv(1000, 1), nil
	case semMicroTime:
		return change.KindTime, scaleConv(1, 1), nil
	case "io.debezium.time.NanoTime":
		return change.KindTime, scaleConv(1, 1000), nil
	case "io.debezium.time.Timestamp", "org.apache.kafka.connect.data.Timestamp":
		return change.KindTimestamp, scaleConv(1000, 1), nil
	case semMicroTimestamp:
		return change.KindTimestamp, scaleConv(1, 1), nil
	case "io.debezium.time.NanoTimestamp":
		return change.KindTimestamp, scaleConv(1, 1000), nil
	case semZonedTimestamp:
		return change.KindTimestampTZ, stringConv, nil
	case "io.debezium.time.ZonedTime": // timetz: "10:15:30.123456Z"; backflow has no kind of its own
		return change.KindString, stringConv, nil
	case "io.debezium.time.Year": // MySQL YEAR
		return change.KindInt32, toInt32Conv, nil
	case "io.debezium.data.EnumSet": // MySQL SET: "a,b"
		return change.KindString, stringConv, nil
	case semInterval:
		return change.KindInterval, stringConv, nil
	case "io.debezium.time.MicroDuration":
		return change.KindInterval, durationConv(1), nil
	case "io.debezium.time.NanoDuration":
		return change.KindInterval, durationConv(1000), nil
	case semUUID:
		return change.KindUUID, stringConv, nil
	case semJSON:
		return change.KindJSON, stringConv, nil
	case semEnum:
		return change.KindEnum, stringConv, nil
	case semNumeric:
		return change.KindNumeric, stringConv, nil
	case "io.debezium.data.Bits":
		return change.KindBytes, nil, nil
	case "org.apache.kafka.connect.data.Decimal":
		scale, err := paramInt(params, "scale")
		if err == nil {
			err = checkDecimal(nil, int64(scale))
		}
		if err != nil {
			return 0, nil, fmt.Errorf("%s: %w", name, err)
		}
		return change.KindNumeric, func(v any) (any, error) {
			b, ok := v.([]byte)
			if !ok {
				return nil, fmt.Errorf("%s: want bytes, got %T", name, v)
			}
			if err := checkDecimal(b, int64(scale)); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			return decimalString(b, scale), nil
		}, nil
	case "io.debezium.data.VariableScaleDecimal":
		return change.KindNumeric, variableScaleDecimal, nil
	}
	switch ctype {
	case "int8", "int16":
		return change.KindInt16, toInt32Conv, nil
	case "int32":
		return change.KindInt32, toInt32Conv, nil
	case "int64":
		return change.KindInt64, scaleConv(1, 1), nil
	case "float", "float32":
		return change.KindFloat32, nil, nil
	case "double", "float64":
		return change.KindFloat64, nil, nil
	case "boolean":
		return change.KindBool, nil, nil
	case "string":
		return change.KindString, stringConv, nil
	case "bytes":
		return change.KindBytes, nil, nil
	}
	return 0, nil, fmt.Errorf("unsupported type %q (semantic name %q)", ctype, name)
}

func paramInt(params map[string]any, key string) (int, error) {
	switch v := params[key].(type) {
	case string:
		return strconv.Atoi(v)
	case float64:
		if v != math.Trunc(v) || v < math.MinInt32 || v > math.MaxInt32 {
			return 0, fmt.Errorf("parameter %q: %v is not a 32-bit integer", key, v)
		}
		return int(v), nil
	case nil:
		return 0, fmt.Errorf("parameter %q missing", key)
	default:
		return 0, fmt.Errorf("parameter %q: unexpected %T", key, v)
	}
}

func toInt32Conv(v any) (any, error) {
	if i, ok := v.(int32); ok {
		return i, nil
	}
	i, ok := toInt64(v)
	if !ok || i < -1<<31 || i > 1<<31-1 {
		return nil, fmt.Errorf("want a 32-bit integer, got %T %v", v, v)
	}
	return int32(i), nil
}

func stringConv(v any) (any, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	return nil, fmt.Errorf("want a string, got %T", v)
}

// scaleConv converts an integer to int64 times mul divided by div (truncating toward zero). A
// value whose product overflows is an error, not a silently wrapped time.
func scaleConv(mul, div int64) conv {
	return func(v any) (any, error) {
		i, ok := toInt64(v)
		if !ok {
			return nil, fmt.Errorf("want an integer, got %T", v)
		}
		if i > math.MaxInt64/mul || i < math.MinInt64/mul {
			return nil, fmt.Errorf("%d is out of range in microseconds", i)
		}
		return i * mul / div, nil
	}
}

// durationConv converts a duration in microseconds*div to an ISO 8601 duration in seconds.
func durationConv(div int64) conv {
	return func(v any) (any, error) {
		i, ok := toInt64(v)
		if !ok {
			return nil, fmt.Errorf("want an integer duration, got %T", v)
		}
		return microsISO(i / div), nil
	}
}

// microsISO spells a duration in microseconds as "PT<seconds>S", e.g. "PT90061.5S".
func microsISO(us int64) string {
	neg := us < 0
	u := uint64(us)
	if neg {
		u = uint64(-us)
	}
	s := strconv.FormatUint(u/1e6, 10)
	if frac := u % 1e6; frac != 0 {
		f := strconv.FormatUint(frac+1e6, 10)[1:] // six digits, leading zeros
		s += "." + strings.TrimRight(f, "0")
	}
	if neg {
		s = "-" + s
	}
	return "PT" + s + "S"
}

// Bounds of the decimals read: sizes come from the message, and decimalString's work and output
// grow with them. PostgreSQL's numeric has at most 131072 digits before the point and 16383 after
// it (NUMERIC_DSCALE_MAX), so no column of any source holds more; without the bounds a scale of
// 2^31 in a 10-byte message would be a 2 GiB string of zeros.
const (
	maxDecimalScale = 16383
	maxDecimalBytes = 64 << 10 // 157826 decimal digits
)

// checkDecimal checks that an unscaled value b (nil: not known yet) and a scale are within the
// bounds of any real decimal.
func checkDecimal(b []byte, scale int64) error {
	if scale < -maxDecimalScale || scale > maxDecimalScale {
		return fmt.Errorf("scale %d is out of range [-%d, %d]", scale, maxDecimalScale, maxDecimalScale)
	}
	if len(b) > maxDecimalBytes {
		return fmt.Errorf("unscaled value of %d bytes is longer than the %d of any decimal", len(b), maxDecimalBytes)
	}
	return nil
}

// decimalString spells the big-endian two's-complement unscaled value b with scale digits after
// the point, as PostgreSQL's numeric output does ("-12.340").
func decimalString(b []byte, scale int) string {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(b))*8))
	}
	s := n.String()
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	switch {
	case scale > 0:
		if len(s) <= scale {
			s = strings.Repeat("0", scale-len(s)+1) + s
		}
		s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	case scale < 0:
		s += strings.Repeat("0", -scale)
	}
	if neg {
		s = "-" + s
	}
	return s
}

// variableScaleDecimal converts Debezium's {"scale": int32, "value": bytes} struct.
func variableScaleDecimal(v any) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("VariableScaleDecimal: want a struct, got %T", v)
	}
	scale, ok := toInt64(m["scale"])
	if !ok {
		return nil, fmt.Errorf("VariableScaleDecimal: scale is %T", m["scale"])
	}
	var b []byte
	switch x := m["value"].(type) {
	case []byte:
		b = x
	case string: // JSON: base64
		var err error
		if b, err = base64.StdEncoding.DecodeString(x); err != nil {
			return nil, fmt.Errorf("VariableScaleDecimal: value: %w", err)
		}
	default:
		return nil, fmt.Errorf("VariableScaleDecimal: value is %T", m["value"])
	}
	if err := checkDecimal(b, scale); err != nil {
		return nil, fmt.Errorf("VariableScaleDecimal: %w", err)
	}
	return decimalString(b, int(scale)), nil
}
