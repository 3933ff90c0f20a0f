package capture

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/backflow-dev/backflow/pkg/change"
)

// binaryCases are values of each type a snapshot reads in binary, as SQL literals: the ranges'
// ends, the infinities, the epochs and years that take another form.
var binaryCases = map[string][]string{
	"int2": {"-32768", "32767", "0", "-1"},
	"int4": {"-2147483648", "2147483647", "0", "42"},
	"int8": {"-9223372036854775808", "9223372036854775807", "0", "-7"},
	"date": {"2024-02-29", "1970-01-01", "1969-12-31", "2000-01-01", "1999-12-31", "0001-01-01", "0001-12-31 BC",
		"4714-11-24 BC", "9999-12-31", "10000-01-01", "5874897-12-31", "infinity", "-infinity"},
	// Fractions with zeros, which PostgreSQL's text leaves out at the end.
	"timestamp": {"2024-02-29 13:45:06.123456", "2024-02-29 13:45:06.5", "2024-02-29 13:45:06.000010",
		"1970-01-01 00:00:00", "1969-12-31 23:59:59.999999", "2000-01-01 00:00:00", "1999-12-31 23:59:59.999999", "0044-03-15 12:00:00 BC", "4714-11-24 00:00:00 BC", "10000-01-01 00:00:00",
		"294247-01-10 04:00:54.775806", "294247-01-10 04:00:54.775807", "294276-12-31 23:59:59.999999", "infinity", "-infinity"},
	"timestamptz": {"2024-02-29 13:45:06.123456+00", "2024-02-29 13:45:06+05:30", "1970-01-01 00:00:00+00",
		"1969-12-31 23:59:59.999999+00", "2000-01-01 00:00:00+00", "0001-01-01 00:00:00+00", "0001-01-01 00:00:00+00 BC",
		"9999-12-31 23:59:59.999999+00", "10000-01-01 00:00:00+00", "294247-01-10 04:00:54.775806+00",
		"294276-12-31 23:59:59.999999+00", "infinity", "-infinity"},
}

// TestBinaryMatchesText: every value of the types a snapshot reads in binary gives, from
// PostgreSQL's binary form, the event value and the Avro bytes its text form gives, the text a
// stream decodes (or fails both ways: a timestamp past what an int64 since 1970 holds); and a
// dead letter shows it as that text.
func TestBinaryMatchesText(t *testing.T) {
	ctx := context.Background()
	conn := catalogConn(t)
	for k, v := range sessionParams {
		if _, err := conn.Exec(ctx, "SELECT set_config($1, $2, false)", k, v); err != nil {
			t.Fatal(err)
		}
	}
	fetch := func(sql string, format int16) []byte {
		rows, err := conn.Query(ctx, sql, pgx.QueryResultFormats{format})
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		if !rows.Next() {
			t.Fatalf("%s: no row: %v", sql, rows.Err())
		}
		return bytes.Clone(rows.RawValues()[0])
	}
	for typ, literals := range binaryCases {
		var oid uint32
		if err := conn.QueryRow(ctx, "SELECT $1::regtype::oid", typ).Scan(&oid); err != nil {
			t.Fatal(err)
		}
		kind := binaryKinds[oid]
		c := newTextRowCase(t, kind)
		c.t.Columns[1].TypeOID = oid
		formats, isBinary := snapshotFormats(c.t.Columns)
		if want := (pgx.QueryResultFormats{pgx.TextFormatCode, pgx.BinaryFormatCode}); !reflect.DeepEqual(formats, want) {
			t.Fatalf("%s: formats %v, want %v (the key in text)", typ, formats, want)
		}
		for _, lit := range literals {
			sql := "SELECT " + quoteLiteral(lit) + "::" + typ
			text, bin := fetch(sql, pgx.TextFormatCode), fetch(sql, pgx.BinaryFormatCode)
			if got := binaryText(kind, bin); got != string(text) {
				t.Errorf("%s %s: binary %x written as %q, PostgreSQL's text %q", typ, lit, bin, got, text)
			}
			want, wantErr := decodeScalar(kind, text)
			got, err := decodeBinary(kind, bin)
			if (err == nil) != (wantErr == nil) || err == nil && got != want {
				t.Errorf("%s %s: binary %x gives %#v, %v; its text %q %#v, %v", typ, lit, bin, got, err, text, want, wantErr)
				continue
			}
			raw := [][]byte{[]byte("1"), bin}
			gotKey, gotValue, err := c.enc.EncodeFrom(ctx, &textRow{cols: c.t.Columns, binary: isBinary, raw: raw, dec: c.dec})
			gotKey, gotValue = bytes.Clone(gotKey), bytes.Clone(gotValue)
			wantKey, wantValue, wantErr := c.enc.EncodeFrom(ctx, &textRow{cols: c.t.Columns, raw: [][]byte{[]byte("1"), text}, dec: c.dec})
			if (err == nil) != (wantErr == nil) || !bytes.Equal(gotKey, wantKey) || !bytes.Equal(gotValue, wantValue) {
				t.Errorf("%s %s: encoded from binary %x, %v; from text %x, %v", typ, lit, gotValue, err, wantValue, wantErr)
			}
		}
	}
}

// TestSnapshotFormats: key columns, domains and other types stay text; a table without a
// column to read in binary asks for text throughout.
func TestSnapshotFormats(t *testing.T) {
	cols := []change.Column{
		{Name: "id", Kind: change.KindInt64, TypeOID: 20, Key: true},
		{Name: "qty", Kind: change.KindInt32, TypeOID: 23},
		{Name: "price", Kind: change.KindNumeric, TypeOID: 1700},
		{Name: "dom", Kind: change.KindInt32, TypeOID: 16385}, // a domain over int4
		{Name: "at", Kind: change.KindTimestampTZ, TypeOID: 1184},
		{Name: "odd", Kind: change.KindString, TypeOID: 1184}, // a kind the type does not give
	}
	formats, isBinary := snapshotFormats(cols)
	T, B := int16(pgx.TextFormatCode), int16(pgx.BinaryFormatCode)
	if want := (pgx.QueryResultFormats{T, B, T, T, B, T}); !reflect.DeepEqual(formats, want) {
		t.Errorf("formats %v, want %v", formats, want)
	}
	if want := []bool{false, true, false, false, true, false}; !reflect.DeepEqual(isBinary, want) {
		t.Errorf("binary %v, want %v", isBinary, want)
	}
	formats, isBinary = snapshotFormats(cols[:1])
	if !reflect.DeepEqual(formats, textResults) || isBinary != nil {
		t.Errorf("keys only: formats %v, binary %v; want text throughout", formats, isBinary)
	}
}

// TestBinaryText: a column whose bytes are not a value of its kind shows in a dead letter in
// hex (TestBinaryMatchesText covers the values).
func TestBinaryText(t *testing.T) {
	for _, tc := range []struct {
		kind change.Kind
		raw  []byte
		want string
	}{
		{change.KindInt16, []byte{1, 2, 3}, `\x010203`},
		{change.KindDate, []byte{1, 2}, `\x0102`},
		{change.KindTimestampTZ, []byte{}, `\x`},
	} {
		if got := binaryText(tc.kind, tc.raw); got != tc.want {
			t.Errorf("%s %x: %q, want %q", tc.kind, tc.raw, got, tc.want)
		}
	}
}

// FuzzBinaryValues: any bytes as a column read in binary write what decoding them first writes,
// or fail both ways; a timestamptz is formatUTC's form.
func FuzzBinaryValues(f *testing.F) {
	kinds := []change.Kind{change.KindInt16, change.KindInt32, change.KindInt64, change.KindDate, change.KindTimestamp, change.KindTimestampTZ}
	f.Add(uint8(5), binary.BigEndian.AppendUint64(nil, 0))
	f.Add(uint8(5), binary.BigEndian.AppendUint64(nil, math.MaxInt64))
	f.Add(uint8(4), binary.BigEndian.AppendUint64(nil, math.MaxInt64-pgEpochMicros+1))
	f.Add(uint8(3), binary.BigEndian.AppendUint32(nil, math.MaxInt32-pgEpochDays))
	f.Add(uint8(0), []byte{0xff, 0xfe})
	cases := make([]textRowCase, len(kinds))
	for i, k := range kinds {
		cases[i] = newTextRowCase(f, k)
	}
	f.Fuzz(func(t *testing.T, ki uint8, raw []byte) {
		c := cases[int(ki)%len(cases)]
		k := c.t.Columns[1].Kind
		ctx := context.Background()
		row := &textRow{cols: c.t.Columns, binary: []bool{false, true}, raw: [][]byte{[]byte("1"), raw}, dec: c.dec}
		gotKey, gotValue, err := c.enc.EncodeFrom(ctx, row)
		gotKey, gotValue = bytes.Clone(gotKey), bytes.Clone(gotValue)
		v, decErr := decodeBinary(k, raw)
		if (err == nil) != (decErr == nil) {
			t.Fatalf("%s %x: encoded with error %v, decoded with error %v", k, raw, err, decErr)
		}
		if err != nil {
			return
		}
		wantKey, wantValue, err := c.enc.Encode(ctx, []any{int64(1), v})
		if err != nil || !bytes.Equal(gotKey, wantKey) || !bytes.Equal(gotValue, wantValue) {
			t.Fatalf("%s %x: written %x, decoded first %x (%v)", k, raw, gotValue, wantValue, err)
		}
		if s, ok := v.(string); ok && s != "infinity" && s != "-infinity" {
			if us, _ := pgMicros(k, int64(binary.BigEndian.Uint64(raw))); s != formatUTC(us) {
				t.Fatalf("%x: %q, formatUTC %q", raw, s, formatUTC(us))
			}
		}
	})
}
