package capture

// The replay of a committed streamed transaction. Its spill file is read back on a goroutine of
// its own (readSpill), which also prepares the changes encoded while the transaction streamed:
// their records parsed and the commit's fields filled in (codec.Encoder.Fill). The goroutine
// receiving the stream takes the messages in the order they were spilled and only produces the
// prepared records, or handles a message the protocol 1 way. A large transaction's commit is
// what capture is measured by (RESULT bigtx); with one goroutine reading, filling and producing,
// the producing waited on the rest.
//
// Memory stays bounded: the reader is at most replayAhead batches of replayBatchSize messages
// ahead.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
)

const (
	replayBatchSize = 256
	replayAhead     = 4
	// replayArena is the size of the buffers read messages are copied into, a batch's together.
	replayArena = 64 << 10
)

// replayItem is one spilled message, read back.
type replayItem struct {
	at  pglogrepl.LSN
	msg []byte // type byte, then body; its own copy
	// An encoded change (msg[0] == spillEncoded): its relation and table index, its message in
	// the protocol 1 form, and its records, ready to produce; err when it is damaged.
	relID, idx uint32
	raw        []byte
	recs       []replayRec
	err        error
}

// replayRec is a record of an encoded change, its commit fields filled in.
type replayRec struct {
	op         change.Op
	key, value []byte
}

// replayBatch is messages read back together; err ends the replay after them.
type replayBatch struct {
	items []replayItem
	err   error
}

var errReplayStopped = errors.New("replay stopped")

// replaySpill hands each message of committed transaction xid, in order, to the receive
// goroutine: handle for one spilled as PostgreSQL sent it, emitPrepared for an encoded change.
// The file is removed at the end.
func (s *stream) replaySpill(ctx context.Context, xid uint32, commit codec.Commit, tables []spillTable,
	handle func(at pglogrepl.LSN, msg []byte) error) (n, encoded int, err error) {
	defer s.spill.end(xid)
	batches, stop := make(chan replayBatch, replayAhead), make(chan struct{})
	go s.readSpill(xid, commit, batches, stop)
	defer func() {
		close(stop)
		for range batches { // the reader has ended once it closes batches: the file is ours again
		}
	}()
	events := map[replayKey]*change.Event{}
	for b := range batches {
		now := time.Now()
		for i := range b.items {
			it := &b.items[i]
			n++
			if it.msg[0] == spillEncoded {
				encoded++
				err = s.emitPrepared(ctx, it, tables, events, now)
			} else {
				err = handle(it.at, it.msg)
			}
			if err != nil {
				return n, encoded, err
			}
		}
		if b.err != nil {
			return n, encoded, b.err
		}
		if err := s.statusIfDue(ctx); err != nil {
			return n, encoded, err
		}
	}
	return n, encoded, nil
}

// readSpill reads transaction xid's file into batches, preparing its encoded changes with the
// commit's fields, until it is read or stop is closed; then closes out. Its time of production
// (the envelope's ts_ms) is taken once per batch.
func (s *stream) readSpill(xid uint32, commit codec.Commit, out chan<- replayBatch, stop <-chan struct{}) {
	defer close(out)
	var b replayBatch
	send := func() bool {
		select {
		case out <- b:
			b = replayBatch{items: make([]replayItem, 0, replayBatchSize)}
			return true
		case <-stop:
			return false
		}
	}
	var arena []byte
	commit.TsMs = time.Now().UnixMilli()
	err := s.spill.read(xid, func(at pglogrepl.LSN, data []byte) error {
		if len(arena)+len(data) > cap(arena) {
			arena = make([]byte, 0, max(replayArena, len(data)))
		}
		arena = append(arena, data...)
		it := replayItem{at: at, msg: arena[len(arena)-len(data) : len(arena) : len(arena)]}
		if data[0] == spillEncoded {
			s.prepareEncoded(&it, commit)
		}
		b.items = append(b.items, it)
		if len(b.items) == replayBatchSize {
			if !send() {
				return errReplayStopped
			}
			commit.TsMs = time.Now().UnixMilli()
		}
		return nil
	})
	if errors.Is(err, errReplayStopped) {
		return
	}
	b.err = err
	if len(b.items) > 0 || err != nil {
		send()
	}
}

// prepareEncoded parses the encoded change it holds and fills its records' commit fields.
func (s *stream) prepareEncoded(it *replayItem, commit codec.Commit) {
	r := spillReader{b: it.msg[1:]}
	it.relID, it.idx, it.raw = r.u32(), r.u32(), r.bytes(r.u32())
	n := r.byte()
	if r.bad || n == 0 {
		it.err = fmt.Errorf("spilled change at %s is damaged", it.at)
		return
	}
	it.recs = make([]replayRec, n)
	for i := range it.recs {
		rec := &it.recs[i]
		rec.op = change.Op([]byte{r.byte()})
		if k := r.u32(); k != noKey && !r.bad {
			rec.key = r.bytes(k) // in the item's own copy, which the producer may keep
		}
		var tmpl codec.Template
		tmpl.Value = r.bytes(r.u32())
		for i := range tmpl.Cuts {
			tmpl.Cuts[i] = int(r.u32())
		}
		if r.bad {
			it.err = fmt.Errorf("spilled change at %s is damaged", it.at)
			return
		}
		var err error
		if rec.value, err = s.em.enc.Fill(tmpl, commit); err != nil {
			it.err = fmt.Errorf("spilled change at %s: %w", it.at, err)
			return
		}
	}
}

// emitPrepared publishes, at the commit, a change encoded as it streamed, its records prepared
// by readSpill. The records go as encoded when the table they were encoded with is the one
// protocol 1 decodes the change with at this point of the transaction (relation messages of the
// transaction, spilled as they came, have just been decoded again at the commit, against the
// catalog after the commit). Otherwise, and when a re-snapshot of the table needs the change's
// rows, the message goes the protocol 1 way, as it does at a position that failed capture three
// runs in a row (guard), so that it is dead-lettered in the same way.
//
// The records of one table and op share their event: what the emitter reads of it (table, op,
// position) is the same for all the records of a transaction. now is their Kafka timestamp.
func (s *stream) emitPrepared(ctx context.Context, it *replayItem, tables []spillTable, events map[replayKey]*change.Event, now time.Time) error {
	if it.err != nil {
		return it.err
	}
	if int(it.idx) >= len(tables) || tables[it.idx].relID != it.relID {
		return fmt.Errorf("spilled change at %s is damaged", it.at)
	}
	t := tables[it.idx].t
	if cur := s.rels[it.relID]; cur == nil || (cur != t && !sameShape(cur, t)) || it.relID == s.sigRel || s.inc.watching(t) ||
		s.c.guard.parks(it.at) {
		return s.applyRaw(ctx, it)
	}
	topic := s.em.topic(t)
	for _, rec := range it.recs {
		ev, ok := events[replayKey{t, rec.op}]
		if !ok {
			ev = s.event(rec.op, t)
			events[replayKey{t, rec.op}] = ev
		}
		if err := s.em.emitEncoded(ctx, encodedEvent{ev: ev, topic: topic, key: rec.key, value: rec.value, ts: now}); err != nil {
			msg, perr := parseWAL(it.raw)
			if perr != nil {
				return err
			}
			return s.atWAL(ctx, it.at, msg, err) // as protocol 1 handles a change that fails
		}
	}
	return nil
}

// applyRaw handles an encoded change's message the protocol 1 way.
func (s *stream) applyRaw(ctx context.Context, it *replayItem) error {
	msg, err := parseWAL(it.raw)
	if err != nil {
		return fmt.Errorf("parse spilled pgoutput message at %s: %w", it.at, err)
	}
	return s.apply(ctx, it.at, msg)
}
