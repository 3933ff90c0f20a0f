package capture

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/jackc/pglogrepl"
)

// FuzzStreamedMessage feeds any bytes to the protocol 2 stream handling as a message received
// inside and outside a stream block: no panic, stream control messages parse or fail with an
// error, and what a block spills is read back exactly, its xid taken off, unless its
// subtransaction was rolled back.
func FuzzStreamedMessage(f *testing.F) {
	xid := binary.BigEndian.AppendUint32(nil, 700)
	sub := binary.BigEndian.AppendUint32(nil, 701)
	f.Add(append([]byte{'S'}, append(xid, 1)...))
	f.Add(append(append([]byte{'A'}, xid...), sub...))
	f.Add(append([]byte{'c'}, make([]byte, 29)...))
	f.Add(append(append([]byte{'I'}, xid...), 0, 0, 64, 1, 'N', 0, 1, 't', 0, 0, 0, 1, '7'))
	f.Add(append(append([]byte{'I'}, sub...), 0, 0, 64, 1, 'N', 0, 1, 'n'))
	f.Add(append(append([]byte{'T'}, xid...), 0, 0, 0, 1, 0, 0, 0, 64, 1))
	f.Add([]byte{'E'})
	f.Add([]byte{'c', 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		for _, typ := range []byte{'S', 'c', 'A'} {
			msg := pglogrepl.XLogData{WALData: append([]byte{typ}, data[1:]...)}
			_, _ = parseStreamMessage[*pglogrepl.StreamStartMessageV2](msg)
			_, _ = parseStreamMessage[*pglogrepl.StreamCommitMessageV2](msg)
			_, _ = parseStreamMessage[*pglogrepl.StreamAbortMessageV2](msg)
		}

		sp, err := openSpills(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer sp.close()
		if err := sp.start(700, true); err != nil {
			t.Fatal(err)
		}
		sp.abort(700, 701)
		s := &stream{spill: sp, streamXid: 700}
		if err := s.inBlock(context.Background(), pglogrepl.XLogData{WALStart: 42, WALData: data}); err != nil {
			return
		}
		var got [][]byte
		err = replayed(sp, 700, func(at pglogrepl.LSN, msg []byte) error {
			if at != 42 {
				t.Errorf("replayed at %s, spilled at 0/2A", at)
			}
			got = append(got, bytes.Clone(msg))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		spilled := len(data) >= 5 && bytes.IndexByte([]byte("RIUDT"), data[0]) >= 0
		rolledBack := spilled && binary.BigEndian.Uint32(data[1:5]) == 701
		switch {
		case !spilled || rolledBack:
			if len(got) != 0 {
				t.Errorf("replayed %q of a message not spilled or rolled back", got)
			}
		case len(got) != 1 || got[0][0] != data[0] || !bytes.Equal(got[0][1:], data[5:]):
			t.Errorf("replayed %q, spilled %q", got, data)
		}
		if s.streamXid == 0 != (data[0] == 'E') {
			t.Errorf("after %q the stream block is open: %v", data[0], s.streamXid != 0)
		}
	})
}
