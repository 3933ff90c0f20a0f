package connector

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Helpers for connectors reading their `with` block: the value forms YAML and JSON decoders
// produce, and errors that name the setting as `with.<key>`.

// CheckSettings reports every key of a `with` block that is not among known, in name order, as
// "with.<key>: unknown setting; expected one of …": a typo must not go unnoticed.
func CheckSettings(with map[string]any, known []string) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(with)) {
		if !slices.Contains(known, name) {
			errs = append(errs, fmt.Errorf("with.%s: unknown setting; expected one of %s", name, strings.Join(known, ", ")))
		}
	}
	return errors.Join(errs...)
}

// IntValue accepts the integer forms decoders produce: int, int64, uint64, a whole float64, or a
// numeric string.
func IntValue(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), n >= math.MinInt32 && n <= math.MaxInt32
	case uint64:
		return int(n), n <= math.MaxInt32
	case float64:
		return int(n), n == math.Trunc(n) && math.Abs(n) <= math.MaxInt32
	case string:
		i, err := strconv.Atoi(n)
		return i, err == nil
	}
	return 0, false
}

// DurationSetting reads with.<key>: a Go duration such as "10s" (or a time.Duration), def when
// absent. It must be positive.
func DurationSetting(key string, v any, def time.Duration) (time.Duration, error) {
	if v == nil {
		return def, nil
	}
	d, ok := v.(time.Duration)
	if !ok {
		s, isString := v.(string)
		if !isString {
			return 0, fmt.Errorf(`with.%s: %v is not a duration; expected text such as "10s"`, key, v)
		}
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf(`with.%s: expected a duration such as "10s": %w`, key, err)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("with.%s: %s must be positive", key, d)
	}
	return d, nil
}
