package postgres

import (
	"context"
	"encoding/binary"
	"math"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// textColumn is one column of a statement's rows: a text[] parameter. It has its own binary
// encoder because pgx's generic array encoder boxes every element, which costs as much as
// PostgreSQL's work on the other side for large batches.
type textColumn []pgtype.Text

// registerTextColumn makes a connection encode textColumn directly; other values of text[]
// parameters keep pgx's encoder.
func registerTextColumn(_ context.Context, conn *pgx.Conn) error {
	m := conn.TypeMap()
	if orig, ok := m.TypeForOID(pgtype.TextArrayOID); ok {
		m.RegisterType(&pgtype.Type{Name: orig.Name, OID: orig.OID, Codec: textArrayCodec{orig.Codec}})
	}
	return nil
}

type textArrayCodec struct{ pgtype.Codec }

func (c textArrayCodec) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if _, ok := value.(textColumn); ok && format == pgtype.BinaryFormatCode {
		return textColumnPlan{}
	}
	return c.Codec.PlanEncode(m, oid, format, value)
}

type textColumnPlan struct{}

// Encode writes PostgreSQL's binary array format: dimensions, null flag, element type, then each
// element as its length (-1 for NULL) and bytes.
func (textColumnPlan) Encode(value any, buf []byte) ([]byte, error) {
	col := value.(textColumn)
	if len(col) == 0 {
		buf = binary.BigEndian.AppendUint32(buf, 0) // no dimensions
		buf = binary.BigEndian.AppendUint32(buf, 0)
		return binary.BigEndian.AppendUint32(buf, pgtype.TextOID), nil
	}
	hasNull, size := uint32(0), 0
	for _, v := range col {
		if !v.Valid {
			hasNull = 1
		} else if len(v.String) > math.MaxInt32 {
			return nil, errTooLong
		}
		size += 4 + len(v.String)
	}
	buf = growBuf(buf, 20+size)
	buf = binary.BigEndian.AppendUint32(buf, 1) // one dimension
	buf = binary.BigEndian.AppendUint32(buf, hasNull)
	buf = binary.BigEndian.AppendUint32(buf, pgtype.TextOID)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(col)))
	buf = binary.BigEndian.AppendUint32(buf, 1) // lower bound
	for _, v := range col {
		if !v.Valid {
			buf = binary.BigEndian.AppendUint32(buf, math.MaxUint32) // -1
			continue
		}
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(v.String)))
		buf = append(buf, v.String...)
	}
	return buf, nil
}

func growBuf(buf []byte, n int) []byte {
	if cap(buf)-len(buf) >= n {
		return buf
	}
	out := make([]byte, len(buf), len(buf)+n)
	copy(out, buf)
	return out
}

type encodeError string

func (e encodeError) Error() string { return string(e) }

const errTooLong = encodeError("text value longer than 2 GiB")
