package capture

import (
	"bytes"
	"encoding/hex"
	"errors"
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

// decodeArray decodes a one-dimensional array. A multi-dimensional one is an error, so that its
// row is dead-lettered with its text: the column's schema is an array of its element type, and
// flattening {{1,2},{3,4}} into [1,2,3,4] would write a different value into targets, silently.
func (d *decoder) decodeArray(col change.Column, text []byte) (any, error) {
	var arr pgtype.Array[*string]
	// Parsing a text-format array only needs the element text, so every array parses as text[]
	// and each element then goes through the scalar decoder of its real kind.
	if err := d.types.Scan(pgtype.TextArrayOID, pgtype.TextFormatCode, text, &arr); err != nil {
		return nil, fmt.Errorf("array %q: %w", text, err)
	}
	if len(arr.Dims) > 1 {
		return nil, fmt.Errorf("array %.64q has %d dimensions: an event holds one-dimensional arrays only", text, len(arr.Dims))
	}
	elems := arr.Elements
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
	if kind == change.KindBytes {
		return decodeBytea(text)
	}
	return decodeScalarString(kind, string(text))
}

// decodeScalarString is decodeScalar of text already a string (not bytea): the snapshot reader
// makes one string of a row's columns and decodes slices of it.
func decodeScalarString(kind change.Kind, s string) (any, error) {
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
		return decodeBytea([]byte(s))
	case change.KindDate:
		return decodeDate(s)
	case change.KindTime:
		return decodeTime(s)
	case change.KindTimestamp:
		return decodeTimestamp(s)
	case change.KindTimestampTZ:
		return decodeTimestampTZ(s)
	default: // textIsForm
		return s, nil
	}
}

// textIsForm reports whether PostgreSQL's text of a value of kind k is the value as an event
// holds it (see package change): numeric, the text kinds, uuid, json, interval (iso_8601), enum.
func textIsForm(k change.Kind) bool {
	switch k {
	case change.KindString, change.KindNumeric, change.KindInterval, change.KindUUID, change.KindJSON, change.KindEnum:
		return true
	}
	return false
}

func decodeBytea(text []byte) ([]byte, error) {
	if !bytes.HasPrefix(text, []byte(`\x`)) {
		return nil, fmt.Errorf("bytea %q: expected hex output", truncate(text))
	}
	out := make([]byte, hex.DecodedLen(len(text)-2))
	_, err := hex.Decode(out, text[2:])
	return out, err
}

// Dates and timestamps are computed from their text directly rather than through time.Parse:
// PostgreSQL's range (4713 BC to 5874897 AD for dates, to 294276 AD for timestamps) is wider
// than Go's four-digit layouts, and a value capture cannot parse would stop it for good.
// The forms are Debezium's: days since the epoch, microseconds since the epoch, and ISO 8601
// text in UTC for timestamptz; the proleptic Gregorian calendar, as PostgreSQL uses.

// Infinite dates and timestamps map to the extremes of their form, as Debezium does; an
// infinite timestamptz keeps PostgreSQL's text.
func decodeDate(s string) (int32, error) {
	switch s {
	case "infinity":
		return math.MaxInt32, nil
	case "-infinity":
		return math.MinInt32, nil
	}
	p, err := parseDateTime(s, false, false)
	if err != nil {
		return 0, fmt.Errorf("date %q: %w", s, err)
	}
	if p.days < math.MinInt32+1 || p.days > math.MaxInt32-1 {
		return 0, fmt.Errorf("date %q: out of range", s)
	}
	return int32(p.days), nil
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
	p, err := parseDateTime(s, true, false)
	if err != nil {
		return 0, fmt.Errorf("timestamp %q: %w", s, err)
	}
	us, ok := p.micros()
	if !ok {
		return 0, fmt.Errorf("timestamp %q: out of range", s)
	}
	return us, nil
}

func decodeTimestampTZ(s string) (string, error) {
	if s == "infinity" || s == "-infinity" {
		return s, nil
	}
	if out, ok := fastUTC(s); ok {
		return out, nil
	}
	p, err := parseDateTime(s, true, true)
	if err != nil {
		return "", fmt.Errorf("timestamptz %q: %w", s, err)
	}
	us, ok := p.micros()
	if !ok {
		return "", fmt.Errorf("timestamptz %q: out of range", s)
	}
	return formatUTC(us), nil
}

// fastUTC rewrites the common "2006-01-02 15:04:05[.ffffff]+00" (TimeZone is UTC) without
// parsing: timestamptz decoding is on capture's hot path.
func fastUTC(s string) (string, bool) {
	out, ok := appendUTC(make([]byte, 0, len(utcForm)), s)
	return string(out), ok
}

// utcForm is the form appendUTC writes.
const utcForm = "2006-01-02T15:04:05.000000Z"

// appendUTC appends fastUTC's rewrite of s to dst, from the text as it came (a snapshot's
// rows) or as a string.
func appendUTC[T string | []byte](dst []byte, s T) ([]byte, bool) {
	n := len(s)
	if n < 22 || n > 29 || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':' ||
		s[n-3] != '+' || s[n-2] != '0' || s[n-1] != '0' {
		return dst, false
	}
	y, _, ok1 := digits(s[0:4], 4, 4)
	mo, _, ok2 := digits(s[5:7], 2, 2)
	d, _, ok3 := digits(s[8:10], 2, 2)
	h, _, ok4 := digits(s[11:13], 2, 2)
	mi, _, ok5 := digits(s[14:16], 2, 2)
	sec, _, ok6 := digits(s[17:19], 2, 2)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo, false) || h > 23 || mi > 59 || sec > 59 {
		return dst, false // the full parser decides
	}
	clock, frac := s[11:19], s[19:n-3]
	if len(frac) > 0 {
		if _, rest, ok := digits(frac[min(1, len(frac)):], 1, 6); frac[0] != '.' || !ok || len(rest) != 0 {
			return dst, false
		}
	}
	dst = append(dst, s[:10]...)
	dst = append(dst, 'T')
	dst = append(dst, clock...)
	if len(frac) == 0 {
		dst = append(dst, '.')
	} else {
		dst = append(dst, frac...)
	}
	return append(dst, "000000Z"[max(len(frac)-1, 0):]...), true
}

// dateTime is a parsed ISO date or timestamp: days since 1970-01-01, microseconds into the day,
// and the zone's offset east of UTC in seconds.
type dateTime struct {
	days, clock int64
	offset      int64
}

// micros returns the instant in microseconds since the epoch (UTC), false on overflow.
func (p dateTime) micros() (int64, bool) {
	const dayUS int64 = 86400e6
	if p.days > math.MaxInt64/dayUS || p.days < math.MinInt64/dayUS {
		return 0, false
	}
	base := p.days * dayUS
	rest := p.clock - p.offset*1e6
	if (rest > 0 && base > math.MaxInt64-rest) || (rest < 0 && base < math.MinInt64-rest) {
		return 0, false
	}
	return base + rest, true
}

// parseDateTime parses PostgreSQL's ISO output "Y-MM-DD[ HH:MM:SS[.ffffff]][±HH[:MM[:SS]]][ BC]"
// (DateStyle ISO): a year of four or more digits, then a clock when withTime, then a zone when
// withZone. 1 BC is year 0.
func parseDateTime(s string, withTime, withZone bool) (dateTime, error) {
	var p dateTime
	bc := strings.HasSuffix(s, " BC")
	r := strings.TrimSuffix(s, " BC")
	year, r, ok := digits(r, 4, 8)
	if !ok || len(r) < 6 || r[0] != '-' || r[3] != '-' {
		return p, errors.New("expected YYYY-MM-DD")
	}
	month, _, ok1 := digits(r[1:3], 2, 2)
	day, rest, ok2 := digits(r[4:], 2, 2)
	if !ok1 || !ok2 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month, bc) {
		return p, errors.New("no such day")
	}
	if bc {
		if year == 0 {
			return p, errors.New("there is no year 0 BC")
		}
		year = 1 - year
	}
	p.days = daysFromCivil(year, month, day)
	r = rest
	if withTime {
		if len(r) < 9 || r[0] != ' ' || r[3] != ':' || r[6] != ':' {
			return p, errors.New("expected HH:MM:SS after the date")
		}
		h, _, ok1 := digits(r[1:3], 2, 2)
		m, _, ok2 := digits(r[4:6], 2, 2)
		sec, rest, ok3 := digits(r[7:], 2, 2)
		if !ok1 || !ok2 || !ok3 || m > 59 || sec > 60 || h > 24 || (h == 24 && m+sec > 0) {
			return p, errors.New("no such time of day")
		}
		p.clock = (h*3600 + m*60 + sec) * 1e6
		r = rest
		if len(r) > 0 && r[0] == '.' {
			f, rest, ok := digits(r[1:], 1, 6)
			if !ok {
				return p, errors.New("expected up to 6 digits of fraction")
			}
			for n := len(r) - 1 - len(rest); n < 6; n++ {
				f *= 10
			}
			p.clock += f
			r = rest
		}
	}
	if withZone {
		if len(r) < 3 || (r[0] != '+' && r[0] != '-') {
			return p, errors.New("expected a zone offset")
		}
		sign := int64(1)
		if r[0] == '-' {
			sign = -1
		}
		h, rest, ok := digits(r[1:], 2, 2)
		off := h * 3600
		for i := 0; ok && i < 2 && len(rest) > 0; i++ { // :MM, then :SS (historical local mean times)
			var n int64
			if rest[0] != ':' {
				ok = false
				break
			}
			n, rest, ok = digits(rest[1:], 2, 2)
			off += n * []int64{60, 1}[i]
		}
		if !ok {
			return p, errors.New("bad zone offset")
		}
		p.offset, r = sign*off, rest
	}
	if r != "" {
		return p, fmt.Errorf("unexpected %q", r)
	}
	return p, nil
}

// digits reads min to max leading ASCII digits of s.
func digits[T string | []byte](s T, minN, maxN int) (int64, T, bool) {
	var n int64
	i := 0
	for ; i < len(s) && i < maxN && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + int64(s[i]-'0')
	}
	return n, s[i:], i >= minN
}

// daysIn returns the days of a month; year is as written (bc: before Christ, 1 BC a leap year).
func daysIn(year, month int64, bc bool) int64 {
	if bc {
		year = 1 - year
	}
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian date (astronomical
// year: 0 is 1 BC), after Howard Hinnant's days_from_civil.
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y
	if era < 0 {
		era -= 399
	}
	era /= 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// civilFromDays is the inverse of daysFromCivil.
func civilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := z
	if era < 0 {
		era -= 146096
	}
	era /= 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	y = yoe + era*400
	if m <= 2 {
		y++
	}
	return y, m, d
}

// splitDays splits microseconds since an epoch into whole days since it and microseconds into
// the last day (never negative).
func splitDays(us int64) (days, rem int64) {
	days, rem = us/86400e6, us%86400e6
	if rem < 0 {
		days, rem = days-1, rem+86400e6
	}
	return days, rem
}

// formatUTC writes microseconds since the epoch as ISO 8601 in UTC with six fraction digits,
// the form of every timestamptz on the topics. Years outside 0000 to 9999 are written as
// java.time writes them (Debezium's ZonedTimestamp): a sign, then at least four digits.
func formatUTC(us int64) string {
	days, rem := splitDays(us)
	y, m, d := civilFromDays(days)
	var year string
	switch {
	case y > 9999:
		year = "+" + strconv.FormatInt(y, 10)
	case y < 0:
		year = fmt.Sprintf("-%04d", -y)
	default:
		year = fmt.Sprintf("%04d", y)
	}
	sec := rem / 1e6
	return fmt.Sprintf("%s-%02d-%02dT%02d:%02d:%02d.%06dZ", year, m, d, sec/3600, sec/60%60, sec%60, rem%1e6)
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
