package codec

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/backflow-dev/backflow/pkg/change"
)

// A value is encoded in two steps: a Template, the whole value but for the fields known only
// when the event's transaction commits, then Fill, which writes those fields into their places.
// Encode does both at once; a caller that has an event before its commit (a transaction streamed
// while in progress) encodes the template then and fills it at the commit. Both go through the
// same writers, so the two cannot differ.
//
// Every format writes the commit fields in the same order, in three places:
//
//	cutSourceTs  source.ts_ms
//	cutTxLSN     source.txId and source.lsn (JSON: with the "lsn" member name between them)
//	cutTsMs      ts_ms of the envelope (when backflow produced the event)
//
// In Avro the envelope's fields and the source record's are written in schema order, so the
// places are byte offsets between whole fields; in JSON they follow a member's name.
const (
	cutSourceTs = iota
	cutTxLSN
	cutTsMs
	numCuts
)

// Commit holds the fields of a value that are known when the event's transaction commits.
type Commit struct {
	SourceTsMs int64 // source.ts_ms: the commit time, ms since the epoch
	TxID       int64 // source.txId, 0 for none
	LSN        int64 // source.lsn, 0 for none
	TsMs       int64 // ts_ms: when backflow produced the event, 0 for none
}

// CommitOf returns the commit fields of ev.
func CommitOf(ev *change.Event) Commit {
	return Commit{SourceTsMs: ev.Source.TsMs, TxID: ev.Source.TxID, LSN: ev.Source.LSN, TsMs: ev.TsMs}
}

// Template is an encoded value without its commit fields: Value holds the bytes around them and
// Cuts the offsets in Value where they go, in order.
type Template struct {
	Value []byte
	Cuts  [numCuts]int
}

// maxCommitFields bounds the bytes Fill adds: three JSON int64s, the "lsn" member name and a
// fourth int64 (Avro takes less: four varints and three union indexes).
const maxCommitFields = 4*20 + len(`,"lsn":`)

// Fill returns the value t stands for with c's fields, in a new slice of its exact size. It
// fails on a template whose offsets do not fit it (one read back from a damaged file).
func (e *Encoder) Fill(t Template, c Commit) ([]byte, error) {
	prev := 0
	for _, at := range t.Cuts {
		if at < prev || at > len(t.Value) {
			return nil, fmt.Errorf("codec: value template of %d bytes with offsets %v", len(t.Value), t.Cuts)
		}
		prev = at
	}
	var fb [maxCommitFields]byte
	f := fb[:0]
	var ends [numCuts]int
	if e.isAvro() {
		f = binary.AppendVarint(f, c.SourceTsMs) // an Avro long is a zigzag varint, as Go's
		ends[cutSourceTs] = len(f)
		f = appendAvroOptLong(appendAvroOptLong(f, c.TxID), c.LSN)
		ends[cutTxLSN] = len(f)
		f = appendAvroOptLong(f, c.TsMs)
	} else {
		f = strconv.AppendInt(f, c.SourceTsMs, 10)
		ends[cutSourceTs] = len(f)
		f = appendJSONOptLong(f, c.TxID)
		f = append(f, `,"lsn":`...)
		f = appendJSONOptLong(f, c.LSN)
		ends[cutTxLSN] = len(f)
		f = appendJSONOptLong(f, c.TsMs)
	}
	ends[cutTsMs] = len(f)
	out := make([]byte, 0, len(t.Value)+len(f))
	from, fFrom := 0, 0
	for i, at := range t.Cuts {
		out = append(out, t.Value[from:at]...)
		out = append(out, f[fFrom:ends[i]]...)
		from, fFrom = at, ends[i]
	}
	return append(out, t.Value[from:]...), nil
}

// appendAvroOptLong appends ["null","long"]: null for 0.
func appendAvroOptLong(b []byte, v int64) []byte {
	if v == 0 {
		return append(b, 0) // union index 0
	}
	return binary.AppendVarint(append(b, 2), v) // union index 1, zigzag
}
