package hubspot

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// PropertyValue converts a mapped field value to the string HubSpot stores for a property:
//
//   - nil: "" (HubSpot clears the property)
//   - string: as it is (numerics arrive as their exact decimal text)
//   - bool: "true" or "false"
//   - integers: decimal; floats: shortest decimal without exponent; NaN and ±Inf are refused
//   - time.Time: milliseconds since the Unix epoch, which HubSpot accepts for datetime properties
//     and, at midnight UTC (how dates arrive), for date properties
//   - []byte: standard base64
//   - lists of scalars: the values joined with ";", HubSpot's form for multiple checkboxes
//   - anything else (maps, nested lists): its JSON text
func PropertyValue(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case float32:
		return formatFloat(float64(x), 32)
	case float64:
		return formatFloat(x, 64)
	case time.Time:
		if inf, ok := sink.Infinity(x); ok {
			return "", fmt.Errorf("%s (PostgreSQL's infinite date or timestamp) cannot be stored in a HubSpot property", inf)
		}
		return strconv.FormatInt(x.UnixMilli(), 10), nil
	case []byte:
		return base64.StdEncoding.EncodeToString(x), nil
	case json.Number:
		return x.String(), nil
	case []string:
		return strings.Join(x, ";"), nil
	case []any:
		return listValue(x)
	}
	if s, ok := integerValue(v); ok {
		return s, nil
	}
	return jsonValue(v)
}

// integerValue formats Go's integer types.
func integerValue(v any) (string, bool) {
	switch n := v.(type) {
	case int:
		return strconv.Itoa(n), true
	case int8:
		return strconv.FormatInt(int64(n), 10), true
	case int16:
		return strconv.FormatInt(int64(n), 10), true
	case int32:
		return strconv.FormatInt(int64(n), 10), true
	case int64:
		return strconv.FormatInt(n, 10), true
	case uint:
		return strconv.FormatUint(uint64(n), 10), true
	case uint8:
		return strconv.FormatUint(uint64(n), 10), true
	case uint16:
		return strconv.FormatUint(uint64(n), 10), true
	case uint32:
		return strconv.FormatUint(uint64(n), 10), true
	case uint64:
		return strconv.FormatUint(n, 10), true
	}
	return "", false
}

// formatFloat writes a float without exponent, refusing values HubSpot cannot store.
func formatFloat(f float64, bits int) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", fmt.Errorf("%v is not a number HubSpot can store", f)
	}
	return strconv.FormatFloat(f, 'f', -1, bits), nil
}

// listValue joins a list of scalars with ";"; other lists become JSON text.
func listValue(list []any) (string, error) {
	parts := make([]string, 0, len(list))
	for _, item := range list {
		switch item.(type) {
		case []any, map[string]any, nil:
			return jsonValue(list)
		}
		s, err := PropertyValue(item)
		if err != nil {
			return "", err
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ";"), nil
}

// jsonValue is the JSON text of v.
func jsonValue(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("cannot encode %T as a HubSpot property value: %w", v, err)
	}
	return string(b), nil
}

// errEmptyID rejects records whose key encodes to nothing.
var errEmptyID = errors.New("the key value is empty; HubSpot needs a value of the id property")
