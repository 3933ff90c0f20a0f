package capture

// changeMsg reads pgoutput's insert, update and delete messages (protocol 1 form) without
// allocating: the columns' data are slices of the message, and the column slices are reused from
// one message to the next. It is the parser of the hot path that encodes the changes of a
// streamed transaction while it streams (streamencode.go), where pglogrepl.Parse's allocations
// (the message, its tuples, a copy of every column) were a quarter of capture's work. A message
// it refuses is spilled as it came and parsed by pglogrepl at the commit, which reports what is
// wrong with it; FuzzChangeMsg holds the two parsers to the same reading.

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// changeMsg is one parsed insert, update or delete. Its tuples are valid until the next parse
// and while the message's bytes are.
type changeMsg struct {
	typ      byte // 'I', 'U' or 'D'
	relID    uint32
	old, new pglogrepl.TupleData
	hasOld   bool // an update's or delete's old tuple ('K' or 'O')
	hasNew   bool // an insert's or update's new tuple ('N')
}

var errNotChange = errors.New("not an insert, update or delete message")

// parse reads data, an insert, update or delete message, into m.
func (m *changeMsg) parse(data []byte) error {
	if len(data) < 5 {
		return errNotChange
	}
	m.typ, m.relID, m.hasOld, m.hasNew = data[0], binary.BigEndian.Uint32(data[1:5]), false, false
	p := 5
	var err error
	switch m.typ {
	case 'I':
		if len(data) < 9 { // as pglogrepl reads it: a tuple of no column is refused there too
			return fmt.Errorf("malformed pgoutput I message of %d bytes", len(data))
		}
		p, err = m.tuple(data, p, 'N')
	case 'U':
		if p < len(data) && (data[p] == 'K' || data[p] == 'O') {
			if p, err = m.tuple(data, p, data[p]); err != nil {
				return err
			}
		}
		p, err = m.tuple(data, p, 'N')
	case 'D':
		if p < len(data) && data[p] != 'K' && data[p] != 'O' {
			return fmt.Errorf("malformed pgoutput D message: tuple marker %q", data[p])
		}
		p, err = m.tuple(data, p, 'K')
	default:
		return errNotChange
	}
	if err != nil {
		return err
	}
	if p != len(data) {
		return fmt.Errorf("malformed pgoutput %c message: %d bytes after its tuples", m.typ, len(data)-p)
	}
	return nil
}

// tuple reads the tuple marked want at data[p:] ('K' stands for 'K' or 'O'), and returns the
// position after it.
func (m *changeMsg) tuple(data []byte, p int, want byte) (int, error) {
	if p >= len(data) {
		return p, fmt.Errorf("malformed pgoutput %c message: no tuple", m.typ)
	}
	td := &m.new
	switch marker := data[p]; {
	case want == 'N' && marker == 'N':
		m.hasNew = true
	case want != 'N' && (marker == 'K' || marker == 'O'):
		td, m.hasOld = &m.old, true
	default:
		return p, fmt.Errorf("malformed pgoutput %c message: tuple marker %q at %d", m.typ, marker, p)
	}
	p++
	if p+2 > len(data) {
		return p, fmt.Errorf("malformed pgoutput %c message: cut short at %d", m.typ, p)
	}
	n := int(binary.BigEndian.Uint16(data[p:]))
	p += 2
	td.ColumnNum = uint16(n)
	td.Columns = td.Columns[:0]
	for range n {
		if p >= len(data) {
			return p, fmt.Errorf("malformed pgoutput %c message: cut short at %d", m.typ, p)
		}
		col := nextColumn(td)
		col.DataType, col.Length, col.Data = data[p], 0, nil
		p++
		switch col.DataType {
		case pglogrepl.TupleDataTypeNull, pglogrepl.TupleDataTypeToast:
		case pglogrepl.TupleDataTypeText, pglogrepl.TupleDataTypeBinary:
			if p+4 > len(data) {
				return p, fmt.Errorf("malformed pgoutput %c message: cut short at %d", m.typ, p)
			}
			l := binary.BigEndian.Uint32(data[p:])
			if p += 4; uint64(l) > uint64(len(data)-p) {
				return p, fmt.Errorf("malformed pgoutput %c message: a column of %d bytes in %d", m.typ, l, len(data)-p)
			}
			col.Length, col.Data = l, data[p:p+int(l):p+int(l)]
			p += int(l)
		default:
			return p, fmt.Errorf("malformed pgoutput %c message: column kind %q at %d", m.typ, col.DataType, p-1)
		}
	}
	return p, nil
}

// nextColumn appends a column to td, reusing what an earlier message left.
func nextColumn(td *pglogrepl.TupleData) *pglogrepl.TupleDataColumn {
	i := len(td.Columns)
	if i < cap(td.Columns) && td.Columns[:i+1][i] != nil {
		td.Columns = td.Columns[:i+1]
		return td.Columns[i]
	}
	col := new(pglogrepl.TupleDataColumn)
	td.Columns = append(td.Columns[:i], col)
	return col
}
