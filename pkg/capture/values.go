package capture

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/backflow-dev/backflow/pkg/change"
)

// sessionParams make PostgreSQL print values in one fixed text form, whatever the server's own
// settings: pgoutput sends text produced by the walsender's output functions, and snapshots read
// the same text through ::text casts, so both paths share one decoder.
var sessionParams = map[string]string{
	"DateStyle":          "ISO, YMD",
	"IntervalStyle":      "iso_8601",
	"TimeZone":           "UTC",
	"extra_float_digits": "3",
	"bytea_output":       "hex",
}

// decoder turns PostgreSQL's text output into the value forms of package change.
type decoder struct {
	types *pgtype.Map
}

func newDecoder() *decoder {
	return &decoder{types: pgtype.NewMap()}
}

// decode converts one column's text to its change form.
func (d *decoder) decode(col change.Column, text []byte) (any, error) {
	if col.Kind == change.KindArray {
		return d.decodeArray(col, text)
	}
	return decodeScalar(col.Kind, text)
}

func (d *decoder) decodeArray(col change.Column, text []byte) (any, error) {
	var elems []*string
	// Parsing a text-format array only needs the element text, so every array parses as text[]
	// and each element then goes through the scalar decoder of its real kind.
	if err := d.types.Scan(pgtype.TextArrayOID, pgtype.TextFormatCode, text, &elems); err != nil {
		return nil, fmt.Errorf("array %q: %w", text, err)
	}
	out := make([]any, len(elems))
	for i, e := range elems {
		if e == nil {
			continue
		}
		v, err := decodeScalar(col.Elem, []byte(*e))
		if err != nil {
			return nil, fmt.Errorf("array element %d: %w", i, err)
		}
		out[i] = v
	}
	return out, nil
}

func decodeScalar(kind change.Kind, text []byte) (any, error) {
	s := string(text)
	switch kind {
	case change.KindInt16, change.KindInt32:
		n, err := strconv.ParseInt(s, 10, 32)
		return int32(n), err
	case change.KindInt64:
		return strconv.ParseInt(s, 10, 64)
	case change.KindFloat32:
		f, err := strconv.ParseFloat(s, 32)
		return float32(f), err
	case change.KindFloat64:
		return strconv.ParseFloat(s, 64)
	case change.KindBool:
		return s == "t" || s == "true", nil
	case change.KindBytes:
		return decodeBytea(text)
	case change.KindDate:
		return decodeDate(s)
	case change.KindTime:
		return decodeTime(s)
	case change.KindTimestamp:
		return decodeTimestamp(s)
	case change.KindTimestampTZ:
		return decodeTimestampTZ(s)
	default: // numeric, text kinds, uuid, json, interval (iso_8601), enum: the text is the form
		return s, nil
	}
}

func decodeBytea(text []byte) ([]byte, error) {
	if !bytes.HasPrefix(text, []byte(`\x`)) {
		return nil, fmt.Errorf("bytea %q: expected hex output", truncate(text))
	}
	out := make([]byte, hex.DecodedLen(len(text)-2))
	_, err := hex.Decode(out, text[2:])
	return out, err
}

const (
	dateLayout = "2006-01-02"
	tsLayout   = "2006-01-02 15:04:05.999999"
	tstzLayout = "2006-01-02 15:04:05.999999-07"
)

// Infinite dates and timestamps map to the extremes of their Go form, as Debezium does.
func decodeDate(s string) (int32, error) {
	switch s {
	case "infinity":
		return math.MaxInt32, nil
	case "-infinity":
		return math.MinInt32, nil
	}
	t, err := parseBC(dateLayout, s)
	if err != nil {
		return 0, fmt.Errorf("date %q: %w", s, err)
	}
	return int32(t.Unix() / 86400), nil
}

func decodeTime(s string) (int64, error) {
	if s == "24:00:00" {
		return 24 * int64(time.Hour/time.Microsecond), nil
	}
	t, err := time.Parse("15:04:05.999999", s)
	if err != nil {
		return 0, fmt.Errorf("time %q: %w", s, err)
	}
	return int64(t.Hour())*3600e6 + int64(t.Minute())*60e6 + int64(t.Second())*1e6 + int64(t.Nanosecond()/1000), nil
}

func decodeTimestamp(s string) (int64, error) {
	switch s {
	case "infinity":
		return math.MaxInt64, nil
	case "-infinity":
		return math.MinInt64, nil
	}
	t, err := parseBC(tsLayout, s)
	if err != nil {
		return 0, fmt.Errorf("timestamp %q: %w", s, err)
	}
	return t.UnixMicro(), nil
}

func decodeTimestampTZ(s string) (string, error) {
	if s == "infinity" || s == "-infinity" {
		return s, nil
	}
	if out, ok := fastUTC(s); ok {
		return out, nil
	}
	layout := tstzLayout
	if strings.Count(s[min(len(s), 19):], ":") > 0 { // zone with minutes, e.g. +05:30
		layout += ":00"
	}
	t, err := parseBC(layout, s)
	if err != nil {
		return "", fmt.Errorf("timestamptz %q: %w", s, err)
	}
	return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), nil
}

// fastUTC rewrites the common "2006-01-02 15:04:05[.ffffff]+00" (TimeZone is UTC) without
// parsing: timestamptz decoding is on capture's hot path.
func fastUTC(s string) (string, bool) {
	n := len(s)
	if n < 22 || n > 29 || s[4] != '-' || s[10] != ' ' || s[13] != ':' || s[n-3:] != "+00" {
		return "", false
	}
	clock, frac := s[11:19], s[19:n-3]
	if frac != "" && frac[0] != '.' {
		return "", false
	}
	if frac == "" {
		frac = "."
	}
	var b strings.Builder
	b.Grow(27)
	b.WriteString(s[:10])
	b.WriteByte('T')
	b.WriteString(clock)
	b.WriteString(frac)
	b.WriteString("000000"[:7-len(frac)])
	b.WriteByte('Z')
	return b.String(), true
}

// parseBC parses PostgreSQL's ISO output including its " BC" suffix for years before 1 AD.
func parseBC(layout, s string) (time.Time, error) {
	bc := strings.HasSuffix(s, " BC")
	s = strings.TrimSuffix(s, " BC")
	t, err := time.Parse(layout, s)
	if err != nil || !bc {
		return t, err
	}
	// 1 BC is year 0 in the proleptic Gregorian calendar Go uses.
	return t.AddDate(-2*t.Year()+1, 0, 0), nil
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
