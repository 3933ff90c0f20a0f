package salesforce

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// CSVNull is the Bulk API 2.0 cell value that sets a field to null; an empty cell leaves it as is.
const CSVNull = "#N/A"

// dateTimeLayout is Salesforce's ISO 8601 dateTime form, in UTC with milliseconds.
const dateTimeLayout = "2006-01-02T15:04:05.000Z"

// prepared is one record ready to send: an upsert (names/values) or a delete.
type prepared struct {
	index  int             // in Batch.Records
	extID  string          // the external id, as text
	extRaw json.RawMessage // the external id as a JSON value (a string or an integer)
	names  []string        // fields to write, in the mapping's order; absent fields are not here
	values []any
	json   []json.RawMessage // values encoded for sObject Collections
}

// plan sorts a batch into upserts and deletes and rejects what cannot be sent.
type plan struct {
	upserts []prepared
	deletes []prepared
	failed  []sink.RecordError
}

// planBatch prepares every record of b. A later record with the same external id supersedes an
// earlier one (Salesforce refuses one external id twice in a request).
func (c *connector) planBatch(b *sink.Batch) *plan {
	p := &plan{}
	last := map[string]int{}
	for i := range b.Records {
		r := &b.Records[i]
		pr, err := c.prepare(i, r)
		if err != nil {
			p.failed = append(p.failed, sink.RecordError{Index: i, Reason: err.Error()})
			continue
		}
		last[pr.extID] = i
		if r.Op == sink.OpDelete {
			p.deletes = append(p.deletes, pr)
		} else {
			p.upserts = append(p.upserts, pr)
		}
	}
	superseded := func(pr prepared) bool { return last[pr.extID] != pr.index }
	p.upserts = deleteFunc(p.upserts, superseded)
	p.deletes = deleteFunc(p.deletes, superseded)
	return p
}

// deleteFunc removes the elements for which drop is true, keeping order.
func deleteFunc(s []prepared, drop func(prepared) bool) []prepared {
	out := s[:0]
	for _, v := range s {
		if !drop(v) {
			out = append(out, v)
		}
	}
	return out
}

// prepare checks one record and encodes its fields.
func (c *connector) prepare(i int, r *sink.Record) (prepared, error) {
	if r.Op == sink.OpTruncate {
		return prepared{}, fmt.Errorf("salesforce: truncate is not supported: the connector never deletes records it has " +
			"no key for; remove them in Salesforce (e.g. a Bulk API hardDelete job) if that is intended")
	}
	ext, err := externalID(r.Key[c.cfg.keyField])
	if err != nil {
		return prepared{}, fmt.Errorf("salesforce: key %s: %w", c.cfg.keyField, err)
	}
	extRaw, err := json.Marshal(r.Key[c.cfg.keyField])
	if err != nil {
		return prepared{}, fmt.Errorf("salesforce: key %s: %w", c.cfg.keyField, err)
	}
	pr := prepared{index: i, extID: ext, extRaw: extRaw}
	if r.Op == sink.OpDelete {
		return pr, nil
	}
	for _, name := range fieldNames(r) {
		if name == c.cfg.keyField || name == c.cfg.externalID || name == "attributes" {
			continue // the external id is written from the key
		}
		v := r.Fields[name]
		raw, err := jsonValue(v)
		if err != nil {
			return prepared{}, fmt.Errorf("salesforce: field %s: %w", name, err)
		}
		pr.names, pr.values, pr.json = append(pr.names, name), append(pr.values, v), append(pr.json, raw)
	}
	return pr, nil
}

// fieldNames lists the fields present in r.Fields, in the mapping's order when it has one.
func fieldNames(r *sink.Record) []string {
	names := make([]string, 0, len(r.Fields))
	seen := make(map[string]bool, len(r.Fields))
	for _, n := range r.FieldOrder {
		if _, ok := r.Fields[n]; ok && !seen[n] {
			names, seen[n] = append(names, n), true
		}
	}
	var rest []string
	for n := range r.Fields {
		if !seen[n] {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	return append(names, rest...)
}

// externalID renders a key value as the external id text.
func externalID(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", fmt.Errorf("no value; the external id is required")
	case string:
		if x == "" {
			return "", fmt.Errorf("empty; the external id is required")
		}
		return x, nil
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x), nil
	}
	return "", fmt.Errorf("a %T cannot be an external id; map it to text or an integer", v)
}

// jsonValue encodes a field value for sObject Collections: nil is null (clears the field),
// time.Time an ISO 8601 dateTime in UTC, arrays a multi-select picklist text "a;b", maps their
// JSON text, []byte base64 (for base64 fields).
func jsonValue(v any) (json.RawMessage, error) {
	switch x := v.(type) {
	case time.Time, []any, map[string]any:
		if err := finite(x); err != nil {
			return nil, err
		}
		return json.Marshal(textValue(x))
	case float32:
		return floatJSON(float64(x))
	case float64:
		return floatJSON(x)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("cannot encode a %T: %w", v, err)
	}
	return raw, nil
}

// finite refuses PostgreSQL's infinite dates and timestamps, alone or in a list: a Salesforce
// date or dateTime has no infinity, and spelled out as a date it would be year 5881580.
func finite(v any) error {
	switch x := v.(type) {
	case time.Time:
		if inf, ok := sink.Infinity(x); ok {
			return fmt.Errorf("%s (PostgreSQL's infinite date or timestamp) cannot be sent to Salesforce", inf)
		}
	case []any:
		for _, e := range x {
			if err := finite(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func floatJSON(f float64) (json.RawMessage, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%v cannot be sent to Salesforce", f)
	}
	return json.Marshal(f)
}

// csvValue renders a field value as a Bulk API 2.0 cell. nil and "" become #N/A, which sets the
// field to null (an empty cell would leave it unchanged).
func csvValue(v any) string {
	if v == nil {
		return CSVNull
	}
	s := textValue(v)
	if s == "" {
		return CSVNull
	}
	return s
}

// textValue renders a non-null value as text, the way Salesforce reads it in CSV.
func textValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case time.Time:
		return x.UTC().Format(dateTimeLayout)
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = textValue(e)
		}
		return strings.Join(parts, ";")
	case map[string]any:
		raw, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(raw)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}
