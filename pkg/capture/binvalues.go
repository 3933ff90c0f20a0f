package capture

// Columns a snapshot reads in binary. A snapshot chunk asks PostgreSQL for the columns of a few
// types in their binary form: integers, dates and timestamps, whose binary form is a
// fixed-width integer. The server then skips their text output, which for a timestamptz costs
// about a quarter of what COPY of a table with one such column costs (the snapshot's reference,
// RESULT snapshot), and capture skips parsing it. The stream keeps pgoutput's text, so both
// decodings give the same event value (TestBinaryMatchesText, against PostgreSQL's own output).
//
// Only columns of exactly these types qualify, not domains over them (whose text a domain's
// output may differ in nothing, but whose OIDs capture cannot enumerate), and key columns never:
// a key-range chunk's last key is the next chunk's bound, written back as text.

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/backflow-dev/backflow/pkg/change"
)

// binaryKinds maps the types a snapshot reads in binary to the kind capture gives them.
var binaryKinds = map[uint32]change.Kind{
	pgtype.Int2OID:        change.KindInt16,
	pgtype.Int4OID:        change.KindInt32,
	pgtype.Int8OID:        change.KindInt64,
	pgtype.DateOID:        change.KindDate,
	pgtype.TimestampOID:   change.KindTimestamp,
	pgtype.TimestamptzOID: change.KindTimestampTZ,
}

// PostgreSQL counts dates and timestamps from 2000-01-01, events from 1970-01-01.
const (
	pgEpochDays   = 10957
	pgEpochMicros = pgEpochDays * 86400e6
)

// snapshotFormats returns the result formats of a snapshot chunk of cols, one per column, and
// which columns they make binary (nil when none).
func snapshotFormats(cols []change.Column) (pgx.QueryResultFormats, []bool) {
	formats := make(pgx.QueryResultFormats, len(cols))
	isBinary := make([]bool, len(cols))
	some := false
	for i, c := range cols {
		if k, ok := binaryKinds[c.TypeOID]; ok && k == c.Kind && !c.Key {
			formats[i], isBinary[i], some = pgx.BinaryFormatCode, true, true
		}
	}
	if !some {
		return textResults, nil
	}
	return formats, isBinary
}

// decodeBinary returns the event value of a column of kind k sent in binary (see binaryKinds).
func decodeBinary(k change.Kind, b []byte) (any, error) {
	switch k {
	case change.KindInt16, change.KindInt32, change.KindDate:
		return binaryInt32(k, b)
	case change.KindInt64, change.KindTimestamp:
		return binaryInt64(k, b)
	case change.KindTimestampTZ:
		out, err := appendBinaryTimestampTZ(nil, b)
		return string(out), err
	}
	return nil, fmt.Errorf("%s: not read in binary", k)
}

// binaryInt32 decodes an int2, an int4 or a date (days since 1970-01-01; the infinities as the
// text decoding gives them).
func binaryInt32(k change.Kind, b []byte) (int32, error) {
	switch {
	case k == change.KindInt16 && len(b) == 2:
		return int32(int16(binary.BigEndian.Uint16(b))), nil
	case k == change.KindInt32 && len(b) == 4:
		return int32(binary.BigEndian.Uint32(b)), nil
	case k == change.KindDate && len(b) == 4:
		d := int32(binary.BigEndian.Uint32(b))
		if d == math.MaxInt32 || d == math.MinInt32 { // infinity, -infinity
			return d, nil
		}
		if d > math.MaxInt32-1-pgEpochDays {
			return 0, fmt.Errorf("date of day %d after 2000-01-01: out of range", d)
		}
		return d + pgEpochDays, nil
	}
	return 0, fmt.Errorf("%s: %d bytes in binary", k, len(b))
}

// binaryInt64 decodes an int8 or a timestamp (microseconds since 1970-01-01; the infinities as
// the text decoding gives them).
func binaryInt64(k change.Kind, b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%s: %d bytes in binary", k, len(b))
	}
	n := int64(binary.BigEndian.Uint64(b))
	if k == change.KindInt64 {
		return n, nil
	}
	return pgMicros(k, n)
}

// pgMicros turns microseconds since 2000-01-01 into microseconds since 1970-01-01; the
// infinities stay as they are.
func pgMicros(k change.Kind, us int64) (int64, error) {
	if us == math.MaxInt64 || us == math.MinInt64 {
		return us, nil
	}
	if us > math.MaxInt64-pgEpochMicros {
		return 0, fmt.Errorf("%s of %d µs after 2000-01-01: out of range", k, us)
	}
	return us + pgEpochMicros, nil
}

// appendBinaryTimestampTZ appends a timestamptz sent in binary as its event value: ISO 8601 in
// UTC with six fraction digits, as formatUTC writes it, or "infinity" and "-infinity".
func appendBinaryTimestampTZ(dst, b []byte) ([]byte, error) {
	if len(b) != 8 {
		return dst, fmt.Errorf("%s: %d bytes in binary", change.KindTimestampTZ, len(b))
	}
	switch pg := int64(binary.BigEndian.Uint64(b)); pg {
	case math.MaxInt64:
		return append(dst, "infinity"...), nil
	case math.MinInt64:
		return append(dst, "-infinity"...), nil
	default:
		us, err := pgMicros(change.KindTimestampTZ, pg)
		if err != nil {
			return dst, err
		}
		return appendUTCMicros(dst, us), nil
	}
}

// appendUTCMicros appends formatUTC(us) without its allocations for years 0000 to 9999.
func appendUTCMicros(dst []byte, us int64) []byte {
	days, rem := splitDays(us)
	y, m, d := civilFromDays(days)
	if y < 0 || y > 9999 {
		return append(dst, formatUTC(us)...)
	}
	sec, frac := uint64(rem)/1e6, uint64(rem)%1e6
	b := [...]byte{'0', '0', '0', '0', '-', '0', '0', '-', '0', '0', 'T', '0', '0', ':', '0', '0', ':', '0', '0', '.',
		'0', '0', '0', '0', '0', '0', 'Z'}
	putPair(b[0:2], uint64(y)/100)
	putPair(b[2:4], uint64(y)%100)
	putPair(b[5:7], uint64(m))
	putPair(b[8:10], uint64(d))
	putPair(b[11:13], sec/3600)
	putPair(b[14:16], sec/60%60)
	putPair(b[17:19], sec%60)
	putPair(b[20:22], frac/1e4)
	putPair(b[22:24], frac/100%100)
	putPair(b[24:26], frac%100)
	return append(dst, b[:]...)
}

// pairs holds "00" to "99".
const pairs = "00010203040506070809101112131415161718192021222324252627282930313233343536373839" +
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879" +
	"8081828384858687888990919293949596979899"

// putPair writes n (n < 100) in two digits.
func putPair(b []byte, n uint64) {
	b[0], b[1] = pairs[2*n], pairs[2*n+1]
}

// binaryText is a column sent in binary as PostgreSQL writes it in text under capture's session
// settings (sessionParams: ISO dates, UTC), which is how a dead letter shows a row; its bytes in
// hex when they are not a value of kind k.
func binaryText(k change.Kind, b []byte) string {
	switch k {
	case change.KindInt16, change.KindInt32:
		if n, err := binaryInt32(k, b); err == nil {
			return strconv.FormatInt(int64(n), 10)
		}
	case change.KindInt64:
		if n, err := binaryInt64(k, b); err == nil {
			return strconv.FormatInt(n, 10)
		}
	case change.KindDate:
		if len(b) == 4 {
			return dateTimeText(int64(int32(binary.BigEndian.Uint32(b))), math.MaxInt32, math.MinInt32, 0, k)
		}
	case change.KindTimestamp, change.KindTimestampTZ:
		if len(b) == 8 {
			us := int64(binary.BigEndian.Uint64(b))
			days, rem := splitDays(us)
			if us == math.MaxInt64 || us == math.MinInt64 {
				days = us // an infinity
			}
			return dateTimeText(days, math.MaxInt64, math.MinInt64, rem, k)
		}
	}
	return fmt.Sprintf(`\x%x`, b)
}

// dateTimeText writes a date, a timestamp or a timestamptz of days since 2000-01-01 (inf and
// minusInf being the infinities) and rem microseconds into the day as PostgreSQL does with
// DateStyle ISO and TimeZone UTC: the fraction without trailing zeros, BC years counted back
// from 1.
func dateTimeText(days, inf, minusInf, rem int64, k change.Kind) string {
	switch days {
	case inf:
		return "infinity"
	case minusInf:
		return "-infinity"
	}
	y, m, d := civilFromDays(days + pgEpochDays)
	bc := y <= 0
	if bc {
		y = 1 - y
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%04d-%02d-%02d", y, m, d)
	if k != change.KindDate {
		sec := rem / 1e6
		fmt.Fprintf(&sb, " %02d:%02d:%02d", sec/3600, sec/60%60, sec%60)
		if frac := rem % 1e6; frac != 0 {
			sb.WriteString(strings.TrimRight(fmt.Sprintf(".%06d", frac), "0"))
		}
	}
	if k == change.KindTimestampTZ {
		sb.WriteString("+00")
	}
	if bc {
		sb.WriteString(" BC")
	}
	return sb.String()
}
