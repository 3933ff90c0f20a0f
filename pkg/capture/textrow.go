package capture

import (
	"fmt"

	"github.com/hamba/avro/v2"

	"github.com/backflow-dev/backflow/pkg/change"
)

// textRow is a row as a chunk read receives it, each column's text (nil for NULL), as the
// codec.RowSource a snapshot encodes: most columns go from PostgreSQL's text to their Avro form
// without a Go value in between, which is most of what a snapshot's reader spends per row.
// Integers are parsed straight into the writer, text whose form is the text itself is copied,
// a timestamptz in UTC is rewritten; anything else, or any text these shortcuts do not take
// as it is, is decoded as a stream's column is (Value), errors and all. The columns binary
// marks came in binary instead (binvalues.go), and are decoded from it.
type textRow struct {
	cols   []change.Column
	binary []bool // nil when every column is text
	raw    [][]byte
	dec    *decoder
	buf    []byte // a rewritten timestamptz
}

func (r *textRow) Null(i int) bool { return r.raw[i] == nil }

func (r *textRow) WriteColumn(w *avro.Writer, i int) (bool, error) {
	if r.binary != nil && r.binary[i] {
		return true, r.writeBinary(w, i)
	}
	text := r.raw[i]
	switch k := r.cols[i].Kind; {
	case k == change.KindInt16 || k == change.KindInt32:
		n, ok := parseDecimal(text, 32)
		if !ok {
			return false, nil
		}
		w.WriteInt(int32(n))
	case k == change.KindInt64:
		n, ok := parseDecimal(text, 64)
		if !ok {
			return false, nil
		}
		w.WriteLong(n)
	case k == change.KindTimestampTZ:
		var ok bool
		if r.buf, ok = appendUTC(r.buf[:0], text); !ok {
			return false, nil
		}
		w.WriteBytes(r.buf) // Avro writes bytes and strings alike
	case textIsForm(k):
		w.WriteBytes(text)
	default:
		return false, nil
	}
	return true, nil
}

// writeBinary writes column i, sent in binary.
func (r *textRow) writeBinary(w *avro.Writer, i int) error {
	var err error
	switch k := r.cols[i].Kind; k {
	case change.KindInt16, change.KindInt32, change.KindDate:
		var n int32
		if n, err = binaryInt32(k, r.raw[i]); err == nil {
			w.WriteInt(n)
		}
	case change.KindInt64, change.KindTimestamp:
		var n int64
		if n, err = binaryInt64(k, r.raw[i]); err == nil {
			w.WriteLong(n)
		}
	default: // change.KindTimestampTZ
		if r.buf, err = appendBinaryTimestampTZ(r.buf[:0], r.raw[i]); err == nil {
			w.WriteBytes(r.buf)
		}
	}
	if err != nil {
		return undecodableError{fmt.Errorf("column %q: %w", r.cols[i].Name, err)}
	}
	return nil
}

func (r *textRow) Value(i int) (any, error) {
	var v any
	var err error
	if r.binary != nil && r.binary[i] {
		v, err = decodeBinary(r.cols[i].Kind, r.raw[i])
	} else {
		v, err = r.dec.decode(r.cols[i], r.raw[i])
	}
	if err != nil {
		return nil, undecodableError{fmt.Errorf("column %q: %w", r.cols[i].Name, err)}
	}
	return v, nil
}

// parseDecimal parses an integer of bits bits written in decimal, as PostgreSQL writes them
// (an optional minus sign, digits): strconv's parsers take a string, which would cost an
// allocation per column. Anything else, or out of range, is not ok.
func parseDecimal(b []byte, bits uint) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0') // 19 digits fit in a uint64
	}
	limit := uint64(1) << (bits - 1) // the magnitude of the most negative value
	if n > limit || (!neg && n == limit) {
		return 0, false
	}
	if neg {
		return -int64(n), true
	}
	return int64(n), true
}
