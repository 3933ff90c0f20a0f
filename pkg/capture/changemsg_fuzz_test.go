package capture

import (
	"bytes"
	"testing"

	"github.com/jackc/pglogrepl"
)

// FuzzChangeMsg holds changeMsg to pglogrepl's reading: whatever changeMsg accepts, pglogrepl
// parses to the same message, column for column; and whatever pglogrepl parses as an insert,
// update or delete that passes checkTuples, changeMsg accepts unless bytes follow its tuples.
func FuzzChangeMsg(f *testing.F) {
	f.Add([]byte{'I', 0, 0, 64, 1, 'N', 0, 2, 't', 0, 0, 0, 1, '7', 'n'})
	f.Add([]byte{'U', 0, 0, 64, 1, 'K', 0, 1, 't', 0, 0, 0, 1, '1', 'N', 0, 2, 't', 0, 0, 0, 1, '2', 'u'})
	f.Add([]byte{'U', 0, 0, 64, 1, 'O', 0, 1, 'n', 'N', 0, 1, 'b', 0, 0, 0, 0})
	f.Add([]byte{'U', 0, 0, 64, 1, 'N', 0, 1, 't', 0, 0, 0, 2, 'h', 'i'})
	f.Add([]byte{'D', 0, 0, 64, 1, 'O', 0, 1, 't', 0, 0, 0, 1, '9'})
	f.Add([]byte{'D', 0, 0, 64, 1, 'N', 0, 1, 'n'})
	f.Add([]byte{'I', 0, 0, 64, 1, 'N', 0, 1, 't', 255, 255, 255, 255})
	f.Add([]byte{'R', 0, 0, 64, 1})
	var m changeMsg // reused, as the hot path does
	f.Fuzz(func(t *testing.T, data []byte) {
		err := m.parse(data)
		if len(data) == 0 || (data[0] != 'I' && data[0] != 'U' && data[0] != 'D') {
			if err == nil {
				t.Fatalf("changeMsg accepted %q, not an insert, update or delete", data)
			}
			return // pglogrepl allocates what other messages' counts say
		}
		msg, perr := parseWAL(data)
		if err != nil {
			if perr == nil && isChange(msg) && bytes.Equal(data, reencode(data, msg)) {
				t.Fatalf("changeMsg refused %q (%v), which pglogrepl reads as %#v", data, err, msg)
			}
			return
		}
		if perr != nil {
			t.Fatalf("changeMsg accepted %q, which pglogrepl refuses: %v", data, perr)
		}
		var old, new *pglogrepl.TupleData
		switch pm := msg.(type) {
		case *pglogrepl.InsertMessage:
			new = pm.Tuple
			if pm.RelationID != m.relID {
				t.Fatalf("relation %d, pglogrepl reads %d", m.relID, pm.RelationID)
			}
		case *pglogrepl.UpdateMessage:
			old, new = pm.OldTuple, pm.NewTuple
			if pm.RelationID != m.relID {
				t.Fatalf("relation %d, pglogrepl reads %d", m.relID, pm.RelationID)
			}
		case *pglogrepl.DeleteMessage:
			old = pm.OldTuple
			if pm.RelationID != m.relID {
				t.Fatalf("relation %d, pglogrepl reads %d", m.relID, pm.RelationID)
			}
		default:
			t.Fatalf("changeMsg accepted %q, which pglogrepl reads as %T", data, msg)
		}
		sameTuple(t, "old", m.hasOld, &m.old, old)
		sameTuple(t, "new", m.hasNew, &m.new, new)
	})
}

func isChange(msg pglogrepl.Message) bool {
	switch msg.(type) {
	case *pglogrepl.InsertMessage, *pglogrepl.UpdateMessage, *pglogrepl.DeleteMessage:
		return true
	}
	return false
}

// reencode writes msg back in pgoutput's form, so that a refusal is checked only for inputs
// pglogrepl read entirely (it ignores bytes after the tuples, and some markers) and whose columns
// are of the four kinds pgoutput sends (pglogrepl reads any other as a column without data,
// changeMsg refuses it); nil otherwise.
func reencode(data []byte, msg pglogrepl.Message) []byte {
	out := append([]byte(nil), data[:5]...)
	odd := false
	tuple := func(marker byte, td *pglogrepl.TupleData) {
		out = append(out, marker, byte(len(td.Columns)>>8), byte(len(td.Columns)))
		for _, c := range td.Columns {
			odd = odd || (c.DataType != 'n' && c.DataType != 'u' && c.DataType != 't' && c.DataType != 'b')
			out = append(out, c.DataType)
			if c.DataType == 't' || c.DataType == 'b' {
				out = append(out, byte(len(c.Data)>>24), byte(len(c.Data)>>16), byte(len(c.Data)>>8), byte(len(c.Data)))
				out = append(out, c.Data...)
			}
		}
	}
	switch pm := msg.(type) {
	case *pglogrepl.InsertMessage:
		tuple('N', pm.Tuple)
	case *pglogrepl.UpdateMessage:
		if pm.OldTuple != nil {
			tuple(pm.OldTupleType, pm.OldTuple)
		}
		tuple('N', pm.NewTuple)
	case *pglogrepl.DeleteMessage:
		tuple(pm.OldTupleType, pm.OldTuple)
	}
	if odd {
		return nil
	}
	return out
}

func sameTuple(t *testing.T, which string, has bool, got, want *pglogrepl.TupleData) {
	t.Helper()
	if !has {
		if want != nil {
			t.Fatalf("%s tuple missing; pglogrepl reads %d columns", which, len(want.Columns))
		}
		return
	}
	if want == nil {
		t.Fatalf("%s tuple of %d columns; pglogrepl reads none", which, len(got.Columns))
	}
	if len(got.Columns) != len(want.Columns) {
		t.Fatalf("%s tuple of %d columns; pglogrepl reads %d", which, len(got.Columns), len(want.Columns))
	}
	for i, c := range got.Columns {
		w := want.Columns[i]
		if c.DataType != w.DataType || !bytes.Equal(c.Data, w.Data) {
			t.Fatalf("%s column %d: %c %q; pglogrepl reads %c %q", which, i, c.DataType, c.Data, w.DataType, w.Data)
		}
	}
}
