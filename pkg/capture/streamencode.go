package capture

// The changes of a streamed transaction encoded as they stream (see streamtxn.go), and their
// replay at the commit.

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/jackc/pglogrepl"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
)

// spillEncoded is the type byte of a spilled encoded change; pgoutput's message types are letters.
const spillEncoded = 0

// noKey is the length written for a record without a key (a table without key columns), which
// is not the same as an empty one.
const noKey = ^uint32(0)

// An encoded change is spilled after its type byte as
//
//	relation id, table index (into the transaction's tables), message length   uint32 each
//	the message, in its protocol 1 form
//	number of records                                                          1 byte
//	per record: op (1 byte), key length (noKey for none), key, value length, value,
//	            the value's three commit field offsets (uint32 each)
//
// big-endian, one message's records (two for an update that changes the key) in the order
// protocol 1 produces them.

// noteShape remembers the relation message capture has just decoded into s.rels, so that a
// streamed transaction describing the relation alike can have its changes encoded as it streams.
func (s *stream) noteShape(m *pglogrepl.RelationMessage) {
	if s.spill == nil {
		return
	}
	if t, ok := s.rels[m.RelationID]; ok {
		s.spill.shapes[m.RelationID] = relShape{key: relShapeKey(m), t: t}
	}
}

// relShapeKey is everything a relation message says about a table.
func relShapeKey(m *pglogrepl.RelationMessage) string {
	b := make([]byte, 0, 64+16*len(m.Columns))
	b = strconv.AppendQuote(b, m.Namespace)
	b = strconv.AppendQuote(b, m.RelationName)
	b = append(b, m.ReplicaIdentity)
	for _, c := range m.Columns {
		b = append(b, c.Flags)
		b = strconv.AppendQuote(b, c.Name)
		b = binary.BigEndian.AppendUint32(b, c.DataType)
		b = binary.BigEndian.AppendUint32(b, uint32(c.TypeModifier))
	}
	return string(b)
}

// streamRelation chooses how the streamed transaction's next changes of the relation raw (a
// relation message in its protocol 1 form) describes are spilled: encoded with the table capture
// decoded from an identical description, or as PostgreSQL sends them when it has none (a new
// shape needs the catalog, which shows the shape of the transaction only once it committed).
// The table is a guess checked at the commit (replayEncoded); the message itself is spilled
// and decoded at the commit, as in protocol 1.
func (s *stream) streamRelation(raw []byte) {
	msg, err := parseWAL(raw)
	if err != nil {
		return // the commit reports it, in its place
	}
	m := msg.(*pglogrepl.RelationMessage)
	shape, ok := s.spill.shapes[m.RelationID]
	if !ok || shape.key != relShapeKey(m) || shape.t.QualifiedName() == s.signal {
		s.spill.use(s.streamXid, m.RelationID, nil)
		return
	}
	s.spill.use(s.streamXid, m.RelationID, shape.t)
}

// encodeStreamed decodes and encodes a streamed insert, update or delete (raw, in its protocol 1
// form) at WAL position at, and returns the record to spill, or false to spill the message as it
// is: its relation's table unknown, its key with a NULL column (a dead letter, at the commit), or
// anything that fails (which the commit then meets again in its place, as protocol 1 would).
// Encoding may register or publish a schema for a transaction that then rolls back: harmless, a
// schema no record uses.
func (s *stream) encodeStreamed(at pglogrepl.LSN, raw []byte) ([]byte, bool) {
	if len(raw) < 5 {
		return nil, false
	}
	relID := binary.BigEndian.Uint32(raw[1:5]) // insert, update and delete start with it
	idx, t, ok := s.spill.using(s.streamXid, relID)
	if !ok {
		return nil, false
	}
	msg, err := parseWAL(raw)
	if err != nil {
		return nil, false
	}
	evs, err := s.changeEvents(t, msg)
	if err != nil || len(evs) == 0 {
		return nil, false
	}
	ctx := context.Background() // a schema's first use may publish it; the commit does it again if that fails
	rec := s.spill.rec[:0]
	rec = binary.BigEndian.AppendUint32(rec, relID)
	rec = binary.BigEndian.AppendUint32(rec, uint32(idx))
	rec = binary.BigEndian.AppendUint32(rec, uint32(len(raw)))
	rec = append(rec, raw...)
	rec = append(rec, byte(len(evs)))
	topic := s.em.topic(t)
	for _, ev := range evs {
		if _, null := nullKey(ev); null {
			return nil, false
		}
		key, tmpl, err := s.em.enc.EncodeTemplate(ctx, topic, ev)
		if err != nil {
			return nil, false
		}
		rec = append(rec, ev.Op[0])
		if key == nil {
			rec = binary.BigEndian.AppendUint32(rec, noKey)
		} else {
			rec = binary.BigEndian.AppendUint32(rec, uint32(len(key)))
			rec = append(rec, key...)
		}
		rec = binary.BigEndian.AppendUint32(rec, uint32(len(tmpl.Value)))
		rec = append(rec, tmpl.Value...)
		for _, c := range tmpl.Cuts {
			rec = binary.BigEndian.AppendUint32(rec, uint32(c))
		}
	}
	s.spill.rec = rec
	return rec, true
}

// changeEvents decodes an insert, update or delete of t into the events protocol 1 publishes for
// it (insert, update and delete in stream.go): an update that changes the key is a delete and a
// create.
func (s *stream) changeEvents(t *change.Table, msg pglogrepl.Message) ([]*change.Event, error) {
	var err error
	switch m := msg.(type) {
	case *pglogrepl.InsertMessage:
		ev := s.event(change.OpCreate, t)
		ev.After, ev.UnchangedToast, err = s.tuple(t, m.Tuple, nil)
		return []*change.Event{ev}, err
	case *pglogrepl.UpdateMessage:
		ev := s.event(change.OpUpdate, t)
		if m.OldTuple != nil {
			if ev.Before, _, err = s.tuple(t, m.OldTuple, nil); err != nil {
				return nil, err
			}
		}
		if ev.After, ev.UnchangedToast, err = s.tuple(t, m.NewTuple, ev.Before); err != nil {
			return nil, err
		}
		if ev.Before != nil && keyChanged(t, ev.Before, ev.After) {
			del, ins := splitKeyChange(ev)
			return []*change.Event{del, ins}, nil
		}
		return []*change.Event{ev}, nil
	case *pglogrepl.DeleteMessage:
		ev := s.event(change.OpDelete, t)
		ev.Before, _, err = s.tuple(t, m.OldTuple, nil)
		return []*change.Event{ev}, err
	}
	return nil, nil
}

// replayEncoded publishes, at the commit, a change encoded as it streamed (rec, the spilled
// record after its type byte), at WAL position at. The records go as encoded, with the commit's
// fields filled in, when the table they were encoded with is the one protocol 1 decodes the
// change with at this point of the transaction (relation messages of the transaction, spilled
// as they came, have just been decoded again at the commit, against the catalog after the
// commit). Otherwise, and when a re-snapshot of the table needs the change's rows, the message
// goes the protocol 1 way.
func (s *stream) replayEncoded(ctx context.Context, at pglogrepl.LSN, rec []byte, tables []spillTable) error {
	r := spillReader{b: rec}
	relID, idx, raw := r.u32(), r.u32(), r.bytes(r.u32())
	n := r.byte()
	if r.bad || int(idx) >= len(tables) || tables[idx].relID != relID || n == 0 {
		return fmt.Errorf("spilled change at %s is damaged", at)
	}
	t := tables[idx].t
	if cur := s.rels[relID]; cur == nil || (cur != t && !sameShape(cur, t)) || relID == s.sigRel || s.inc.watching(t) {
		msg, err := parseWAL(raw)
		if err != nil {
			return fmt.Errorf("parse spilled pgoutput message at %s: %w", at, err)
		}
		return s.apply(ctx, at, msg)
	}
	topic := s.em.topic(t)
	for range n {
		op := change.Op([]byte{r.byte()})
		key := r.key()
		var tmpl codec.Template
		tmpl.Value = r.bytes(r.u32())
		for i := range tmpl.Cuts {
			tmpl.Cuts[i] = int(r.u32())
		}
		if r.bad {
			return fmt.Errorf("spilled change at %s is damaged", at)
		}
		ev := s.event(op, t)
		value, err := s.em.enc.Fill(tmpl, codec.CommitOf(ev))
		if err != nil {
			return fmt.Errorf("spilled change at %s: %w", at, err)
		}
		if err := s.em.emitEncoded(ctx, encodedEvent{ev: ev, topic: topic, key: key, value: value}); err != nil {
			return err
		}
	}
	return nil
}

// watching reports whether a re-snapshot of t is running: its de-duplication needs the rows of
// t's changes (observe).
func (in *incremental) watching(t *change.Table) bool {
	return in != nil && in.reader != nil && in.reader.t.QualifiedName() == t.QualifiedName()
}

// spillReader reads a spilled record; bad notes a record shorter than its fields say.
type spillReader struct {
	b   []byte
	bad bool
}

func (r *spillReader) bytes(n uint32) []byte {
	if r.bad || uint64(n) > uint64(len(r.b)) {
		r.bad = true
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *spillReader) u32() uint32 {
	b := r.bytes(4)
	if r.bad {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (r *spillReader) byte() byte {
	b := r.bytes(1)
	if r.bad {
		return 0
	}
	return b[0]
}

// key reads a record key into a slice of its own: the producer keeps it until Kafka has it,
// and the replay reuses its buffer for the next message.
func (r *spillReader) key() []byte {
	n := r.u32()
	if n == noKey || r.bad {
		return nil
	}
	b := r.bytes(n)
	if r.bad {
		return nil
	}
	out := make([]byte, n)
	copy(out, b)
	return out
}
