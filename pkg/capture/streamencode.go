package capture

// The changes of a streamed transaction encoded as they stream (see streamtxn.go), and their
// replay at the commit.

import (
	"context"
	"encoding/binary"
	"runtime"
	"strconv"
	"sync"

	"github.com/jackc/pglogrepl"

	"github.com/backflow-dev/backflow/pkg/change"
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

// streamRelation chooses how the streamed transaction's next changes of the relation data (a
// streamed relation message) describes are spilled: encoded with the table capture decoded from
// an identical description, or as PostgreSQL sends them when it has none (a new shape needs the
// catalog, which shows the shape of the transaction only once it committed). The table is a
// guess checked at the commit (replayEncoded); the message itself is spilled and decoded at the
// commit, as in protocol 1.
func (s *stream) streamRelation(data []byte) {
	b := &s.spill.batch
	b.raw = append(append(b.raw[:0], data[0]), data[5:]...) // its protocol 1 form
	msg, err := parseWAL(b.raw)
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

// streamBatchSize is how many streamed changes are encoded together, on all cores.
const streamBatchSize = 1024

// maxKeptBuffer bounds the buffers a batch keeps from one change to the next.
const maxKeptBuffer = 64 << 10

// streamBatch is the streamed changes waiting to be encoded, in the order they came: capture
// encodes them on every core while PostgreSQL streams, since a transaction's commit waits for
// its last changes to be encoded.
//
// A full batch is encoded and spilled on other goroutines while capture receives the next one
// (startFlush), so that reading the stream and encoding overlap: waiting for each batch kept
// both capture and PostgreSQL's walsender half idle. At most one batch is in the works; anything
// else that writes the spill, or reads what the batch reads, waits for it first (flushStreamed).
type streamBatch struct {
	jobs  []encodeJob
	n     int
	spare []encodeJob     // the jobs of the batch in the works, reused once it is done
	done  chan error      // the batch in the works reports here; nil when none is
	works []*streamWorker // one per encoding goroutine
	raw   []byte          // a relation message in its protocol 1 form
}

// encodeJob is a streamed change to encode.
type encodeJob struct {
	sub uint32
	at  pglogrepl.LSN
	idx int           // its table's index among the transaction's
	t   *change.Table // its table
	raw []byte        // the message in its protocol 1 form
	rec []byte        // the record to spill, when ok
	ok  bool
}

// queueStreamed queues the streamed insert, update or delete data (as received, with its xid)
// of subtransaction sub at WAL position at to be encoded, when its relation's table is known, and
// encodes the queue when it is full. It reports false when the change is not queued.
func (s *stream) queueStreamed(ctx context.Context, sub uint32, at pglogrepl.LSN, data []byte) (bool, error) {
	if len(data) < 9 {
		return false, nil
	}
	idx, t, ok := s.spill.using(s.streamXid, binary.BigEndian.Uint32(data[5:9])) // type, xid, relation id
	if !ok {
		return false, nil
	}
	b := &s.spill.batch
	if b.n == len(b.jobs) {
		b.jobs = append(b.jobs, encodeJob{})
	}
	j := &b.jobs[b.n]
	b.n++
	j.sub, j.at, j.idx, j.t = sub, at, idx, t
	j.raw = append(append(j.raw[:0], data[0]), data[5:]...) // the connection reuses data
	if b.n == streamBatchSize {
		return true, s.startFlush(ctx)
	}
	return true, nil
}

// flushStreamed encodes and spills the queued changes and waits until they are spilled, with
// the batch in the works before them.
func (s *stream) flushStreamed(ctx context.Context) error {
	if err := s.startFlush(ctx); err != nil {
		return err
	}
	return s.spill.batch.wait()
}

// startFlush waits for the batch in the works, then has the queued changes encoded and spilled
// on other goroutines (encodeAndSpill) and returns at once.
func (s *stream) startFlush(ctx context.Context) error {
	b := &s.spill.batch
	if err := b.wait(); err != nil {
		return err
	}
	if b.n == 0 {
		return nil
	}
	jobs := b.jobs[:b.n]
	b.jobs, b.spare, b.n = b.spare, b.jobs, 0
	if len(b.works) == 0 {
		for range max(1, runtime.GOMAXPROCS(0)) {
			b.works = append(b.works, &streamWorker{dec: newDecoder()})
		}
	}
	xid, done := s.streamXid, make(chan error, 1)
	b.done = done
	go func() { done <- s.encodeAndSpill(ctx, xid, jobs, b.works) }()
	return nil
}

// wait waits for the batch in the works, if any, and returns its error.
func (b *streamBatch) wait() error {
	if b.done == nil {
		return nil
	}
	err := <-b.done
	b.done = nil
	return err
}

// streamWorker is what one encoding goroutine keeps for itself: a decoder (whose type map is
// not safe for concurrent use), and the message and rows reused from one change to the next.
type streamWorker struct {
	dec           *decoder
	msg           changeMsg
	before, after change.Row
}

// encodeAndSpill encodes jobs, on one goroutine per worker, and spills them to transaction
// xid's file in the order they came: encoded, or as PostgreSQL sent them when encodeJob could
// not encode them.
func (s *stream) encodeAndSpill(ctx context.Context, xid uint32, jobs []encodeJob, works []*streamWorker) error {
	per := (len(jobs) + len(works) - 1) / len(works)
	var wg sync.WaitGroup
	for i, w := range works {
		part := jobs[min(i*per, len(jobs)):min((i+1)*per, len(jobs))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range part {
				s.encodeJob(ctx, w, &part[i])
			}
		}()
	}
	wg.Wait()
	for i := range jobs {
		j := &jobs[i]
		var err error
		if j.ok {
			err = s.spill.add(xid, j.sub, j.at, spillEncoded, j.rec)
		} else {
			err = s.spill.add(xid, j.sub, j.at, j.raw[0], j.raw[1:])
		}
		if err != nil {
			return err
		}
		if cap(j.raw) > maxKeptBuffer || cap(j.rec) > maxKeptBuffer {
			j.raw, j.rec = nil, nil
		}
	}
	return nil
}

// encodeJob decodes and encodes a streamed insert, update or delete with dec, and sets j.rec to
// the record to spill, or j.ok to false to spill the message as it is: its key with a NULL column
// (a dead letter, at the commit), or anything that fails (which the commit then meets again in
// its place, as protocol 1 would). It runs on several goroutines at once, while the stream waits.
// Encoding may register or publish a schema for a transaction that then rolls back: harmless, a
// schema no record uses.
func (s *stream) encodeJob(ctx context.Context, w *streamWorker, j *encodeJob) {
	j.ok = false
	if err := w.msg.parse(j.raw); err != nil {
		return
	}
	evs, err := s.changeEvents(w, j.t)
	if err != nil || len(evs) == 0 {
		return
	}
	rec := j.rec[:0]
	rec = binary.BigEndian.AppendUint32(rec, binary.BigEndian.Uint32(j.raw[1:5]))
	rec = binary.BigEndian.AppendUint32(rec, uint32(j.idx))
	rec = binary.BigEndian.AppendUint32(rec, uint32(len(j.raw)))
	rec = append(rec, j.raw...)
	rec = append(rec, byte(len(evs)))
	topic := s.em.topic(j.t)
	for _, ev := range evs {
		if _, null := nullKey(ev); null {
			return
		}
		key, tmpl, err := s.em.enc.EncodeTemplate(ctx, topic, ev)
		if err != nil {
			return
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
	j.rec, j.ok = rec, true
}

// changeEvents decodes the insert, update or delete of t that w.msg holds into the events
// protocol 1 publishes for it (insert, update and delete in stream.go): an update that changes
// the key is a delete and a create. The events' rows are w's, valid until its next change.
func (s *stream) changeEvents(w *streamWorker, t *change.Table) ([]*change.Event, error) {
	m := &w.msg
	var before, after change.Row
	var toast []string
	var err error
	if m.hasOld {
		if before, _, err = decodeTupleInto(w.dec, t, &m.old, nil, w.before); err != nil {
			return nil, err
		}
		w.before = before
	}
	if m.hasNew {
		if after, toast, err = decodeTupleInto(w.dec, t, &m.new, before, w.after); err != nil {
			return nil, err
		}
		w.after = after
	}
	switch m.typ {
	case 'I':
		ev := s.bareEvent(change.OpCreate, t)
		ev.After, ev.UnchangedToast = after, toast
		return []*change.Event{ev}, nil
	case 'U':
		ev := s.bareEvent(change.OpUpdate, t)
		ev.Before, ev.After, ev.UnchangedToast = before, after, toast
		if before != nil && keyChanged(t, before, after) {
			del, ins := splitKeyChange(ev)
			return []*change.Event{del, ins}, nil
		}
		return []*change.Event{ev}, nil
	case 'D':
		ev := s.bareEvent(change.OpDelete, t)
		ev.Before = before
		return []*change.Event{ev}, nil
	}
	return nil, nil
}

// replayKey names the event the records of a table and op share in a replay.
type replayKey struct {
	t  *change.Table
	op change.Op
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
