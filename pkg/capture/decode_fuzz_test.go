package capture

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/backflow-dev/backflow/pkg/change"
)

// fuzzKinds are the kinds the decoder treats apart; the rest are text.
var fuzzKinds = []change.Kind{
	change.KindInt16, change.KindInt32, change.KindInt64, change.KindFloat32, change.KindFloat64,
	change.KindBool, change.KindBytes, change.KindDate, change.KindTime, change.KindTimestamp,
	change.KindTimestampTZ, change.KindNumeric, change.KindString, change.KindUUID, change.KindJSON,
	change.KindInterval, change.KindEnum, change.KindArray,
}

// pgForms are values as PostgreSQL's output functions print them under capture's session
// settings, by kind.
var pgForms = map[change.Kind][]string{
	change.KindInt16:       {"-32768", "32767", "0"},
	change.KindInt32:       {"-2147483648", "2147483647", "42"},
	change.KindInt64:       {"-9223372036854775808", "9223372036854775807"},
	change.KindFloat32:     {"1.5", "3.4028235e+38", "NaN", "-Infinity", "1e-45"},
	change.KindFloat64:     {"3.141592653589793", "-0", "Infinity", "1e-320", "NaN"},
	change.KindBool:        {"t", "f"},
	change.KindBytes:       {`\x`, `\x00ff10`, `\xdeadbeef`},
	change.KindDate:        {"2024-02-29", "10000-01-01", "5874897-12-31", "4714-11-24 BC", "0001-01-01 BC", "infinity", "-infinity"},
	change.KindTime:        {"13:45:06.123456", "00:00:00", "24:00:00", "23:59:59.999999"},
	change.KindTimestamp:   {"2024-02-29 13:45:06.123456", "12345-06-07 08:09:10.5", "0044-03-15 12:00:00 BC", "infinity", "-infinity", "294276-12-31 23:59:59.999999"},
	change.KindTimestampTZ: {"2024-02-29 13:45:06.123456+00", "2000-01-01 00:00:00+05:30", "1900-01-01 00:00:00+00:19:32", "10000-01-01 00:00:00+00", "0044-03-15 12:00:00+00 BC", "infinity"},
	change.KindNumeric:     {"12345678901234.123456", "NaN", "-0.000001", "Infinity"},
	change.KindString:      {`héllo, "world"`, ""},
	change.KindUUID:        {"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	change.KindJSON:        {`{"a": [1, 2]}`},
	change.KindInterval:    {"P1Y2M3DT4H5M6.5S", "PT0S"},
	change.KindEnum:        {"happy"},
	change.KindArray:       {"{1,NULL,3}", `{"x y","{z}",NULL}`, "{}", "{{1,2},{3,4}}"},
}

var isoUTC = regexp.MustCompile(`^([+-]\d{5,}|-?\d{4})-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

// FuzzDecodeScalar decodes any text as every kind: no panic, and a value that decodes prints back
// (in PostgreSQL's form) to text that decodes to the same value.
func FuzzDecodeScalar(f *testing.F) {
	for i, k := range fuzzKinds {
		for _, s := range pgForms[k] {
			f.Add(uint8(i), s)
		}
	}
	d := newDecoder()
	f.Fuzz(func(t *testing.T, ki uint8, text string) {
		kind := fuzzKinds[int(ki)%len(fuzzKinds)]
		col := change.Column{Name: "c", Kind: kind}
		if kind == change.KindArray {
			col.Elem = change.KindInt32
		}
		v, err := d.decode(col, []byte(text))
		if err != nil {
			return
		}
		if kind == change.KindTimestampTZ {
			if s := v.(string); s != "infinity" && s != "-infinity" && !isoUTC.MatchString(s) {
				t.Fatalf("timestamptz %q decoded as %q, not ISO 8601 in UTC", text, s)
			}
			return
		}
		back, ok := pgText(kind, v)
		if !ok {
			return
		}
		v2, err := d.decode(col, []byte(back))
		if err != nil {
			t.Fatalf("%s %q decoded as %#v, printed back as %q, which does not decode: %v", kind, text, v, back, err)
		}
		if !sameValue(v, v2) {
			t.Fatalf("%s %q decoded as %#v, printed back as %q, decoded again as %#v", kind, text, v, back, v2)
		}
	})
}

// FuzzTuple parses pgoutput messages (parseWAL, as the stream does) and decodes their tuples against a relation with a column
// of every kind: no panic, whatever the bytes.
func FuzzTuple(f *testing.F) {
	for i := range fuzzKinds {
		var cols [][]byte
		for j, k := range fuzzKinds {
			forms := pgForms[k]
			cols = append(cols, []byte(forms[(i+j)%len(forms)]))
		}
		f.Add(insertMessage(cols, i%3 == 0))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := parseWAL(data)
		if err != nil {
			return
		}
		s := &stream{dec: newDecoder()}
		var tds []*pglogrepl.TupleData
		switch m := msg.(type) {
		case *pglogrepl.InsertMessage:
			tds = append(tds, m.Tuple)
		case *pglogrepl.UpdateMessage:
			tds = append(tds, m.OldTuple, m.NewTuple)
		case *pglogrepl.DeleteMessage:
			tds = append(tds, m.OldTuple)
		}
		for _, td := range tds {
			if td == nil {
				continue
			}
			tb := &change.Table{Schema: "public", Name: "fuzz"}
			for i := range td.Columns {
				k := fuzzKinds[i%len(fuzzKinds)]
				tb.Columns = append(tb.Columns, change.Column{Name: fmt.Sprint("c", i), Kind: k, Elem: change.KindString})
			}
			row, _, err := s.tuple(tb, td, nil)
			if err == nil && len(row) != len(tb.Columns) {
				t.Fatalf("%d columns decoded into a row of %d", len(tb.Columns), len(row))
			}
		}
	})
}

// insertMessage is a pgoutput Insert of text columns ('n' for nil, a 'u' first when toast).
func insertMessage(cols [][]byte, toast bool) []byte {
	b := []byte{'I', 0, 0, 0x40, 0, 'N'}
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for i, c := range cols {
		switch {
		case toast && i == 0:
			b = append(b, 'u')
		case c == nil:
			b = append(b, 'n')
		default:
			b = append(b, 't')
			b = binary.BigEndian.AppendUint32(b, uint32(len(c)))
			b = append(b, c...)
		}
	}
	return b
}

// pgText prints a decoded value the way PostgreSQL prints its type; false where the kind's
// value is its text already, or has no single printed form.
func pgText(kind change.Kind, v any) (string, bool) {
	switch x := v.(type) {
	case int32:
		if kind == change.KindDate {
			return pgDate(int64(x)), true
		}
		return strconv.FormatInt(int64(x), 10), true
	case int64:
		switch kind {
		case change.KindTimestamp:
			return pgTimestamp(x), true
		case change.KindTime:
			return fmt.Sprintf("%02d:%02d:%02d.%06d", x/3600e6, x/60e6%60, x/1e6%60, x%1e6), x < 24*3600e6
		}
		return strconv.FormatInt(x, 10), true
	case float32:
		return pgFloat(float64(x), 32), true
	case float64:
		return pgFloat(x, 64), true
	case bool:
		return map[bool]string{true: "t", false: "f"}[x], true
	case []byte:
		return `\x` + hex.EncodeToString(x), true
	}
	return "", false
}

func pgFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(f, 'g', -1, bits)
}

func pgDate(days int64) string {
	switch days {
	case math.MaxInt32:
		return "infinity"
	case math.MinInt32:
		return "-infinity"
	}
	y, m, d := civilFromDays(days)
	return pgYear(y, fmt.Sprintf("-%02d-%02d", m, d), "")
}

func pgTimestamp(us int64) string {
	switch us {
	case math.MaxInt64:
		return "infinity"
	case math.MinInt64:
		return "-infinity"
	}
	days, rem := us/86400e6, us%86400e6
	if rem < 0 {
		days, rem = days-1, rem+86400e6
	}
	y, m, d := civilFromDays(days)
	sec := rem / 1e6
	return pgYear(y, fmt.Sprintf("-%02d-%02d", m, d), fmt.Sprintf(" %02d:%02d:%02d.%06d", sec/3600, sec/60%60, sec%60, rem%1e6))
}

// pgYear writes an astronomical year as PostgreSQL does: 0 is 1 BC.
func pgYear(y int64, monthDay, clock string) string {
	if y <= 0 {
		return fmt.Sprintf("%04d%s%s BC", 1-y, monthDay, clock)
	}
	return fmt.Sprintf("%04d%s%s", y, monthDay, clock)
}

func sameValue(a, b any) bool {
	if fa, ok := a.(float64); ok && math.IsNaN(fa) {
		fb, ok := b.(float64)
		return ok && math.IsNaN(fb)
	}
	if fa, ok := a.(float32); ok && math.IsNaN(float64(fa)) {
		fb, ok := b.(float32)
		return ok && math.IsNaN(float64(fb))
	}
	if ba, ok := a.([]byte); ok {
		bb, ok := b.([]byte)
		return ok && bytes.Equal(ba, bb)
	}
	return reflect.DeepEqual(a, b)
}
