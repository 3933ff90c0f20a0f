package model

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/backflow-dev/backflow/pkg/change"
)

// keyEnc says how each key column is encoded in a state key, one byte per column in the
// model's key order:
//
//	'i'  integer columns (int2, int4, int8, oid and domains over them): 8 bytes, big-endian,
//	     sign bit flipped, so that byte order is numeric order; a key of integers only is read
//	     in that order, which PostgreSQL does fast and often from an index, and its state is
//	     kept in byte order.
//	't'  every other type: the column's text and a 0x00 (text never holds one). A key with
//	     such a column is read unordered, and its state kept in hash order (see state.go):
//	     sorting text costs PostgreSQL more than reading it.
//
// The bytes of a key thus sort as an integer key's ORDER BY sorts its rows, which lets the run
// merge that result with the state as both stream.
type keyEnc string

func keyEncOf(t *change.Table, keys []int) keyEnc {
	b := make([]byte, len(keys))
	for n, i := range keys {
		switch t.Columns[i].Kind {
		case change.KindInt16, change.KindInt32, change.KindInt64:
			b[n] = 'i'
		default:
			b[n] = 't'
		}
	}
	return keyEnc(b)
}

// allText is the encoding that takes any key of n columns.
func allText(n int) keyEnc { return keyEnc(bytes.Repeat([]byte{'t'}, n)) }

// appendPart appends the encoding of one key column's text.
func (e keyEnc) appendPart(dst []byte, n int, text []byte) ([]byte, error) {
	if e[n] == 't' {
		return append(append(dst, text...), 0), nil
	}
	v, err := strconv.ParseInt(string(text), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("key part %q is not an integer", text)
	}
	return binary.BigEndian.AppendUint64(dst, uint64(v)^(1<<63)), nil
}

// encode builds a key from the text of its columns.
func (e keyEnc) encode(dst []byte, parts [][]byte) ([]byte, error) {
	if len(parts) != len(e) {
		return nil, fmt.Errorf("key of %d column(s) where %d are expected", len(parts), len(e))
	}
	dst = dst[:0]
	for n, p := range parts {
		var err error
		if dst, err = e.appendPart(dst, n, p); err != nil {
			return nil, err
		}
	}
	return dst, nil
}

// parts returns the text of each column of a key.
func (e keyEnc) parts(key []byte) ([][]byte, error) {
	out := make([][]byte, 0, len(e))
	for n := range len(e) {
		switch e[n] {
		case 'i':
			if len(key) < 8 {
				return nil, fmt.Errorf("truncated key %q", key)
			}
			v := int64(binary.BigEndian.Uint64(key) ^ (1 << 63))
			out, key = append(out, strconv.AppendInt(nil, v, 10)), key[8:]
		case 't':
			end := bytes.IndexByte(key, 0)
			if end < 0 {
				return nil, fmt.Errorf("truncated key %q", key)
			}
			out, key = append(out, key[:end:end]), key[end+1:]
		default:
			return nil, fmt.Errorf("unknown key encoding %q", string(e))
		}
	}
	if len(key) > 0 {
		return nil, fmt.Errorf("key with %d bytes after its %d column(s)", len(key), len(e))
	}
	return out, nil
}

// convert re-encodes a key of encoding from in encoding e.
func (e keyEnc) convert(key []byte, from keyEnc) ([]byte, error) {
	if from == e {
		return key, nil
	}
	parts, err := from.parts(key)
	if err != nil {
		return nil, err
	}
	return e.encode(nil, parts)
}
