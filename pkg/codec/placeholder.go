package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hamba/avro/v2"

	"github.com/backflow-dev/backflow/pkg/change"
)

// DefaultUnavailableValue is Debezium's default unavailable.value.placeholder: the value its
// PostgreSQL connector writes for a TOASTed column an UPDATE left unchanged (and which logical
// decoding therefore did not send). Text columns get the string, bytes columns (bytea, and
// Decimal in precise mode) its bytes, arrays a one-element array of it.
const DefaultUnavailableValue = "__debezium_unavailable_value"

// unavailable marks, inside a decoded row, a value that was the placeholder. It never leaves the
// decoder: resolveUnavailable turns it into an UnchangedToast entry, or back into v, the value
// converted as any other, when it is only one element of an array that holds other values too.
type unavailable struct{ v any }

// placeholder is the configured unavailable.value.placeholder in the forms it takes on the wire.
type placeholder struct {
	raw        []byte // the octets: a string column's text, a bytes column's value
	jsonString []byte // raw as a JSON string, as text columns carry it
	jsonBase64 []byte // base64 of raw as a JSON string, as bytes columns carry it
}

// parsePlaceholder reads a placeholder setting as Debezium does: "hex:<hex digits>" are the octets
// the digits spell, anything else is the octets of the string itself.
func parsePlaceholder(s string) (*placeholder, error) {
	raw := []byte(s)
	if h, ok := strings.CutPrefix(s, "hex:"); ok {
		var err error
		if raw, err = hex.DecodeString(h); err != nil {
			return nil, fmt.Errorf("codec: unavailable value placeholder %q: %w", s, err)
		}
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("codec: unavailable value placeholder %q is empty", s)
	}
	js, err := json.Marshal(string(raw))
	if err != nil {
		return nil, err
	}
	return &placeholder{
		raw:        raw,
		jsonString: js,
		jsonBase64: []byte(`"` + base64.StdEncoding.EncodeToString(raw) + `"`),
	}, nil
}

// is reports whether a decoded base value (before any semantic conversion) is the placeholder.
func (p *placeholder) is(v any) bool {
	switch x := v.(type) {
	case string:
		return x == string(p.raw)
	case []byte:
		return bytes.Equal(x, p.raw)
	}
	return false
}

// isJSON reports whether the raw JSON value of a column of kind k is the placeholder. The base64
// form counts only where bytes are expected (bytes and Decimal columns; any column when the kinds
// were guessed), so that a text column that happens to hold that base64 text is left alone.
func (p *placeholder) isJSON(raw json.RawMessage, k change.Kind, guessed bool) bool {
	if len(raw) == 0 || raw[0] != '"' {
		return false
	}
	if bytes.Equal(raw, p.jsonString) {
		return true
	}
	return (guessed || k == change.KindBytes || k == change.KindNumeric) && bytes.Equal(raw, p.jsonBase64)
}

// isJSONArray reports whether a raw JSON array is Debezium's placeholder for an array column: a
// non-empty array whose every element is the placeholder.
func (p *placeholder) isJSONArray(raw json.RawMessage, elem change.Kind, guessed bool) bool {
	if len(raw) == 0 || raw[0] != '[' {
		return false
	}
	elems, err := splitArray(raw)
	if err != nil || len(elems) == 0 {
		return false
	}
	for _, e := range elems {
		if !p.isJSON(e, elem, guessed) {
			return false
		}
	}
	return true
}

// withPlaceholder is withConv for the string and bytes values of Debezium's schemas: the
// placeholder is recognised on the base value (its octets, before c could read them as a
// number) and read as unavailable{}.
func withPlaceholder(fn readFn, c conv, p *placeholder) readFn {
	return func(r *avro.Reader) any {
		v := fn(r)
		if v == nil || r.Error != nil {
			return nil
		}
		is := p.is(v)
		if c != nil {
			out, err := c(v)
			switch {
			case err != nil && is:
				out = nil // the placeholder needs no conversion
			case err != nil:
				r.ReportError("decode", err.Error())
				return nil
			}
			v = out
		}
		if is {
			return unavailable{v: v}
		}
		return v
	}
}

// resolveValue reports whether a decoded value stands for the placeholder: the marker, or a
// non-empty array of nothing but markers (Debezium's placeholder for an array column). Otherwise
// it returns the value with the markers inside an array (elements that merely equal the
// placeholder) replaced by their values.
func resolveValue(v any) (out any, isPlaceholder bool) {
	switch x := v.(type) {
	case unavailable:
		return nil, true
	case []any:
		marks := 0
		for _, e := range x {
			if _, ok := e.(unavailable); ok {
				marks++
			}
		}
		if marks == 0 {
			return v, false
		}
		if marks == len(x) {
			return nil, true
		}
		for i, e := range x {
			if u, ok := e.(unavailable); ok {
				x[i] = u.v
			}
		}
	}
	return v, false
}

// resolveUnavailable turns placeholder values into what backflow says for unchanged TOAST: the
// column is listed in UnchangedToast and its after value is nil ("keep what the target has"). In
// the before image the old value is simply unknown, so it becomes nil.
func resolveUnavailable(ev *change.Event) {
	for name, v := range ev.Before {
		ev.Before[name], _ = resolveValue(v)
	}
	for _, c := range ev.Table.Columns { // table order, so UnchangedToast is deterministic
		v, ok := ev.After[c.Name]
		if !ok {
			continue
		}
		out, is := resolveValue(v)
		ev.After[c.Name] = out
		if is && !containsString(ev.UnchangedToast, c.Name) {
			ev.UnchangedToast = append(ev.UnchangedToast, c.Name)
		}
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// opMessage is the op of Debezium's logical decoding message events (pg_logical_emit_message),
// which carry no row.
const opMessage change.Op = "m"

// heartbeatTopicPrefix is Debezium's default topic.heartbeat.prefix: heartbeats go to
// "__debezium-heartbeat.<topic.prefix>".
const heartbeatTopicPrefix = "__debezium-heartbeat."

func isHeartbeatTopic(topic string) bool { return strings.HasPrefix(topic, heartbeatTopicPrefix) }

// debeziumControl are the record names of Debezium's values that are no row change: they are
// read and dropped, never applied nor dead-lettered.
var debeziumControl = map[string]bool{
	"io.debezium.connector.common.Heartbeat":                true, // heartbeat value {ts_ms}
	"io.debezium.connector.common.TransactionMetadataValue": true, // BEGIN/END of a transaction
	"io.debezium.connector.postgresql.MessageValue":         true, // op "m"
	"io.debezium.connector.mysql.SchemaChangeValue":         true, // DDL on the <topic.prefix> topic
}

// isDebeziumControl reports whether an Avro writer schema is one of debeziumControl.
func isDebeziumControl(s avro.Schema) bool {
	rec, ok := deref(s).(*avro.RecordSchema)
	return ok && debeziumControl[rec.FullName()]
}
