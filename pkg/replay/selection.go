package replay

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// Selection picks the dead letters a re-drive takes. The zero Selection takes them all; each set
// part narrows it.
type Selection struct {
	// Keys are source key columns with their values as text (--key id=7); a dead letter whose
	// decoded Kafka key matches any of them is taken.
	Keys []map[string]string
	// Reason is matched against the dead letter's backflow.reason header.
	Reason *regexp.Regexp
	// Since and Until bound when the record was dead-lettered (its backflow.time header, or the
	// dead letter's timestamp without one): at or after Since, before Until.
	Since, Until time.Time
}

// KeyDecoder decodes Kafka record keys; *sink.Sink is one (once prepared).
type KeyDecoder interface {
	DecodeKey(ctx context.Context, topic string, key []byte) (change.Row, error)
}

// ParseKey parses a --key: col=value[,col=value…], the source key columns of one key.
func ParseKey(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		col, val, ok := strings.Cut(part, "=")
		col = strings.TrimSpace(col)
		if !ok || col == "" {
			return nil, fmt.Errorf("--key %q: %q is not column=value", s, part)
		}
		if _, dup := out[col]; dup {
			return nil, fmt.Errorf("--key %q: column %s is given twice", s, col)
		}
		out[col] = val
	}
	return out, nil
}

// Match reports whether the selection takes dead letter d. A key that cannot be decoded matches
// no --key.
func (sel Selection) Match(ctx context.Context, dec KeyDecoder, d *kgo.Record) bool {
	if sel.Reason != nil && !sel.Reason.MatchString(header(d, sink.HeaderReason)) {
		return false
	}
	if !sel.Since.IsZero() || !sel.Until.IsZero() {
		at := deadLetteredAt(d)
		if !sel.Since.IsZero() && at.Before(sel.Since) || !sel.Until.IsZero() && !at.Before(sel.Until) {
			return false
		}
	}
	if len(sel.Keys) == 0 {
		return true
	}
	row, err := dec.DecodeKey(ctx, header(d, sink.HeaderTopic), d.Key)
	if err != nil || row == nil {
		return false
	}
	for _, want := range sel.Keys {
		if keyMatches(row, want) {
			return true
		}
	}
	return false
}

// keyMatches compares key values as text, the way they were given on the command line.
func keyMatches(row change.Row, want map[string]string) bool {
	for col, val := range want {
		got, ok := row[col]
		if !ok || fmt.Sprint(got) != val {
			return false
		}
	}
	return true
}

// deadLetteredAt is when d was dead-lettered: its backflow.time header, else its timestamp.
func deadLetteredAt(d *kgo.Record) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, header(d, sink.HeaderTime)); err == nil {
		return t
	}
	return d.Timestamp
}
