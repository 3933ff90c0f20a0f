package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// TopicFor returns the change topic of a captured table: "<topic_prefix>.<schema>.<table>".
// schemaTable is "schema.table". The default prefix is used when none is set.
func (p *Pipeline) TopicFor(schemaTable string) string {
	prefix := p.Kafka.TopicPrefix
	if prefix == "" {
		prefix = DefaultTopicPrefix
	}
	return prefix + "." + schemaTable
}

var errRate = errors.New("expected N/s, N/m or N/h with N > 0, e.g. 500/s")

// ParseRate parses a sink rate limit such as "500/s", "30/m" or "1000/h" and returns it in
// records per second. N may have a fraction ("0.5/s") and must be greater than zero.
func ParseRate(s string) (perSecond float64, err error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, fmt.Errorf("invalid rate %q: %w", s, errRate)
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, fmt.Errorf("invalid rate %q: %w", s, errRate)
	}
	switch strings.TrimSpace(unit) {
	case "s":
		return n, nil
	case "m":
		return n / 60, nil
	case "h":
		return n / 3600, nil
	}
	return 0, fmt.Errorf("invalid rate %q: %w", s, errRate)
}
