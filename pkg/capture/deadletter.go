package capture

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/change"
)

// Headers of capture's dead-letter records.
const (
	HeaderReason = "backflow.reason" // "<reason code>: <what happened>"
	HeaderTable  = "backflow.table"  // schema.table
	HeaderTopic  = "backflow.topic"  // the topic the record was meant for
	HeaderLSN    = "backflow.lsn"    // the change's LSN (its transaction's, or the WAL record's)
	HeaderOp     = "backflow.op"     // c, u, d, r, t; "tombstone"; "relation"
	HeaderKey    = "backflow.key"    // the encoded key, when there is one
	// HeaderValueBytes is set when the value was left out for being too large: its size.
	HeaderValueBytes = "backflow.value_bytes"
)

// Reason codes of dead letters: the reason label of backflow_capture_dead_letters_total and the
// start of the reason header.
const (
	reasonNullKey     = "null_key"    // a key column is NULL
	reasonUnhandled   = "unhandled"   // a WAL record failed capture three runs in a row
	reasonUndecodable = "undecodable" // a snapshot's row capture cannot decode or encode
	reasonUnusableRel = "unusable_relation"
)

// deadLetter is a record capture could not publish where it belongs.
type deadLetter struct {
	ev         *change.Event // the change, when it was decoded
	key, value []byte        // its encoded record, when it was encoded
	tombstone  bool
	table      string        // schema.table when ev is nil
	lsn        pglogrepl.LSN // the WAL position when ev is nil
	op         string        // when ev is nil
	reason     string        // a reason code
	detail     string
}

// refusedForGood reports whether Kafka refused a record in a way that sending it again cannot
// change: too large, or invalid for the topic.
func refusedForGood(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) ||
		errors.Is(err, kerr.InvalidRecord)
}

// kafkaReason is the reason code of a refusal: Kafka's error name in lower case.
func kafkaReason(err error) string {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return lower(ke.Message)
	}
	return "refused"
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// nullKey returns the first key column that is NULL in the row an event is keyed by.
func nullKey(ev *change.Event) (string, bool) {
	row := ev.After
	switch ev.Op {
	case change.OpTruncate:
		return "", false
	case change.OpDelete:
		row = ev.Before
	}
	for _, c := range ev.Table.Columns {
		if c.Key && row[c.Name] == nil {
			return c.Name, true
		}
	}
	return "", false
}

// deadLetterNow writes a dead letter in the place of a change, from the replication loop: it
// takes a tracker seq like any record, so the slot moves past the change only once the dead
// letter is in Kafka.
func (e *emitter) deadLetterNow(ctx context.Context, dl deadLetter) error {
	if err := e.ensureTopicName(ctx, e.dlq, "delete"); err != nil {
		return err
	}
	seq, err := e.reserve(ctx)
	if err != nil {
		return err
	}
	e.writeDeadLetter(ctx, seq, dl)
	return nil
}

// deadLetterAfter writes the dead letter of a record Kafka refused, whose seq is held until then.
func (e *emitter) deadLetterAfter(seq uint64, dl deadLetter) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.ensureTopicName(ctx, e.dlq, "delete"); err != nil {
		e.tr.ack(seq, fmt.Errorf("dead-letter a record refused by Kafka (%s): %w", dl.detail, err))
		return
	}
	e.writeDeadLetter(ctx, seq, dl)
}

// writeDeadLetter produces the dead letter and acknowledges seq once Kafka has it. The value (the
// encoded change) is kept when the dead-letter topic takes it, and left out otherwise.
func (e *emitter) writeDeadLetter(ctx context.Context, seq uint64, dl deadLetter) {
	table, lsn, op := dl.table, dl.lsn, dl.op
	if dl.ev != nil {
		table, lsn, op = dl.ev.Table.QualifiedName(), pglogrepl.LSN(dl.ev.Source.LSN), string(dl.ev.Op)
		if dl.tombstone {
			op = "tombstone"
		}
	}
	topic := ""
	if dl.ev != nil {
		topic = e.topic(dl.ev.Table)
	}
	rec := &kgo.Record{Topic: e.dlq, Key: dl.key, Value: dl.value, Headers: []kgo.RecordHeader{
		{Key: HeaderReason, Value: []byte(dl.reason + ": " + dl.detail)},
		{Key: HeaderTable, Value: []byte(table)},
		{Key: HeaderTopic, Value: []byte(topic)},
		{Key: HeaderLSN, Value: []byte(lsn.String())},
		{Key: HeaderOp, Value: []byte(op)},
	}}
	if dl.key != nil {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: HeaderKey, Value: dl.key})
	}
	limit := e.limits.get(e.dlq)
	if size := recordSize(rec.Key, rec.Value) + headersSize(rec.Headers); size > limit {
		rec.Value = nil
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: HeaderValueBytes, Value: []byte(strconv.Itoa(len(dl.value)))})
		if recordSize(rec.Key, nil)+headersSize(rec.Headers) > limit {
			rec.Key = nil // a key this large is in no topic; the headers still name the row's table and LSN
			rec.Headers = rec.Headers[:5]
		}
	}
	e.log.Error("a change capture cannot publish goes to the capture dead-letter topic; capture moves on",
		zap.String("table", table), zap.String("lsn", lsn.String()), zap.String("op", op),
		zap.String("reason", dl.reason), zap.String("detail", dl.detail), zap.String("dlq", e.dlq))
	e.client.Produce(context.WithoutCancel(ctx), rec, func(_ *kgo.Record, err error) {
		if err != nil {
			e.tr.ack(seq, fmt.Errorf("write dead letter of %s at %s to %s: %w", table, lsn, e.dlq, err))
			return
		}
		e.metrics.CaptureDeadLetter(table, dl.reason)
		e.tr.ack(seq, nil)
	})
}

func headersSize(hs []kgo.RecordHeader) int {
	n := 0
	for _, h := range hs {
		n += len(h.Key) + len(h.Value) + 10
	}
	return n
}

// aloneSpan is a stretch of changes to send one record at a time: stream changes up to lsn, and
// the next snapshot rows (the chunk that was in flight).
type aloneSpan struct {
	lsn      int64
	snapshot uint64
}

// covers reports whether ev goes alone, counting down the snapshot rows.
func (a *aloneSpan) covers(ev *change.Event) bool {
	if ev.Source.Snapshot == "false" {
		return ev.Source.LSN <= a.lsn
	}
	if a.snapshot > 0 {
		a.snapshot--
		return true
	}
	return false
}

// guard is what capture remembers from one run to the next so that no record can stall it:
// where the last runs failed, the relations found unusable, and the span to send record by
// record after Kafka refused one in a batch.
type guard struct {
	mu       sync.Mutex
	at       pglogrepl.LSN // WAL position of the last record-level failure
	failures int           // consecutive runs that failed there
	unusable map[uint32]string
	alone    aloneSpan
}

// undecodableError is a column value capture cannot decode (a timestamp past 64-bit
// microseconds, a multi-dimensional array). It fails the same way on every run, so its change is
// parked at once, reason undecodable, instead of after parkAfter runs: a table full of such rows
// would otherwise cost three runs of capture each.
type undecodableError struct{ err error }

func (e undecodableError) Error() string { return e.err.Error() }
func (e undecodableError) Unwrap() error { return e.err }

// parkAfter is how many runs in a row may fail at one WAL record before the next parks it.
const parkAfter = 3

// failed notes a run's failure; it returns the position and count when it was at a WAL record.
func (g *guard) failed(err error) (pglogrepl.LSN, int, bool) {
	var we walError
	if !errors.As(err, &we) {
		return 0, 0, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if we.at == g.at {
		g.failures++
	} else {
		g.at, g.failures = we.at, 1
	}
	return g.at, g.failures, true
}

func (g *guard) parks(at pglogrepl.LSN) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failures >= parkAfter && at == g.at
}

func (g *guard) unusableReason(relID uint32) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.unusable[relID]
	return r, ok
}

func (g *guard) markUnusable(relID uint32, reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.unusable == nil {
		g.unusable = map[uint32]string{}
	}
	g.unusable[relID] = reason
}

func (g *guard) setAlone(a aloneSpan) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.alone = a
}

// takeAlone returns the span the next run sends record by record, and forgets it.
func (g *guard) takeAlone() aloneSpan {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.alone
	g.alone = aloneSpan{}
	return a
}

// parseWAL is pglogrepl.Parse, which indexes its input unchecked, made to fail instead of
// panicking on a message that is empty or cut short.
func parseWAL(data []byte) (msg pglogrepl.Message, err error) {
	if len(data) == 0 {
		return nil, errors.New("empty pgoutput message")
	}
	if err := checkTuples(data); err != nil {
		return nil, err
	}
	if err := checkTruncate(data); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("malformed pgoutput message %q (%d bytes): %v", truncate(data), len(data), r)
		}
	}()
	return pglogrepl.Parse(data)
}

// checkTruncate checks that the relations a truncate counts fit in the message: pglogrepl
// allocates room for as many as it says (up to 4 GiB of ids) before it reads them.
func checkTruncate(data []byte) error {
	if data[0] != 'T' || len(data) < 6 {
		return nil
	}
	n := int64(binary.BigEndian.Uint32(data[1:]))
	if have := int64(len(data) - 6); n*4 > have {
		return fmt.Errorf("malformed pgoutput T message: %d relations in %d bytes", n, have)
	}
	return nil
}

// checkTuples checks that the tuples of an insert, update or delete fit in the message: pglogrepl
// allocates each column's declared length before looking at what is there.
func checkTuples(data []byte) error {
	if len(data) < 6 || (data[0] != 'I' && data[0] != 'U' && data[0] != 'D') {
		return nil
	}
	p := 5
	for p < len(data) {
		if kind := data[p]; kind != 'N' && kind != 'K' && kind != 'O' {
			return fmt.Errorf("malformed pgoutput %c message: tuple marker %q at %d", data[0], kind, p)
		}
		p++
		if p+2 > len(data) {
			return fmt.Errorf("malformed pgoutput %c message: cut short at %d", data[0], p)
		}
		n := int(binary.BigEndian.Uint16(data[p:]))
		p += 2
		for range n {
			if p >= len(data) {
				return fmt.Errorf("malformed pgoutput %c message: cut short at %d", data[0], p)
			}
			typ := data[p]
			p++
			if typ == 't' || typ == 'b' {
				if p+4 > len(data) {
					return fmt.Errorf("malformed pgoutput %c message: cut short at %d", data[0], p)
				}
				l := int(binary.BigEndian.Uint32(data[p:]))
				if p += 4; l > len(data)-p {
					return fmt.Errorf("malformed pgoutput %c message: a column of %d bytes in %d", data[0], l, len(data)-p)
				}
				p += l
			}
		}
	}
	return nil
}

// walError is a failure to handle one WAL record, with its position: RunWithRetry counts the
// runs that fail at the same record.
type walError struct {
	at  pglogrepl.LSN
	err error
}

func (e walError) Error() string { return fmt.Sprintf("WAL record at %s: %v", e.at, e.err) }
func (e walError) Unwrap() error { return e.err }

// unusableRelation is the error of a change to a relation whose Relation message was parked.
type unusableRelation struct {
	relID  uint32
	reason string
}

func (e unusableRelation) Error() string {
	return fmt.Sprintf("relation %d is unusable: %s", e.relID, e.reason)
}

// atWAL handles the failure of the WAL record at: a failure of the record itself becomes a
// walError, or, when the last runs failed there too (or it holds a value capture cannot decode,
// or its relation is unusable), a dead letter in its place, so capture moves on. Failures of the database connection or of Kafka pass
// unchanged: they are not the record's, and retrying is right.
func (s *stream) atWAL(ctx context.Context, at pglogrepl.LSN, msg pglogrepl.Message, err error) error {
	if err == nil || !s.recordLevel(ctx, err) {
		return err
	}
	g := &s.c.guard
	var ur unusableRelation
	var ue undecodableError
	park := g.parks(at) || errors.As(err, &ur) || errors.As(err, &ue)
	rel, isRel := msg.(*pglogrepl.RelationMessage)
	if isRel {
		if _, known := g.unusableReason(rel.RelationID); known {
			park = true // found unusable by an earlier run: PostgreSQL resends it at each new start
		}
	}
	if !park {
		return walError{at: at, err: err}
	}
	dl := deadLetter{lsn: at, reason: reasonUnhandled, detail: err.Error()}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		g.markUnusable(m.RelationID, err.Error())
		delete(s.rels, m.RelationID)
		dl.table, dl.op, dl.reason = m.Namespace+"."+m.RelationName, "relation", reasonUnusableRel
	case *pglogrepl.InsertMessage:
		dl.op, dl.table, dl.value = "c", s.relName(m.RelationID), s.rawTuple(m.RelationID, m.Tuple)
	case *pglogrepl.UpdateMessage:
		dl.op, dl.table, dl.value = "u", s.relName(m.RelationID), s.rawTuple(m.RelationID, m.NewTuple)
	case *pglogrepl.DeleteMessage:
		dl.op, dl.table, dl.value = "d", s.relName(m.RelationID), s.rawTuple(m.RelationID, m.OldTuple)
	case *pglogrepl.TruncateMessage:
		dl.op = "t"
	}
	switch {
	case errors.As(err, &ur):
		dl.reason = reasonUnusableRel
	case errors.As(err, &ue):
		dl.reason = reasonUndecodable
	}
	s.c.log.Error("a WAL record failed capture in several runs in a row, holds a value it cannot decode, or its relation is unusable: parking it in the capture dead-letter topic",
		zap.String("lsn", at.String()), zap.String("table", dl.table), zap.Error(err))
	return s.em.deadLetterNow(ctx, dl)
}

// recordLevel reports whether err is the failure of a record rather than of the connections:
// a closed or broken connection, a timeout, or Kafka's failure leave the record as good as it was.
func (s *stream) recordLevel(ctx context.Context, err error) bool {
	var ne net.Error
	var pe *pgconn.PgError
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		pgconn.Timeout(err) || (s.cat != nil && s.cat.conn.IsClosed()) {
		return false
	}
	if errors.As(err, &pe) && (pe.Code[:2] == "08" || pe.Code[:2] == "57" || pe.Code[:2] == "53") {
		return false // connection exceptions, operator intervention, insufficient resources
	}
	if _, _, terr := s.em.tr.position(); terr != nil {
		return false // Kafka refused or lost something: the tracker stops capture
	}
	var ke *kerr.Error
	return !errors.As(err, &ke)
}

func (s *stream) relName(relID uint32) string {
	if t, ok := s.rels[relID]; ok {
		return t.QualifiedName()
	}
	return ""
}

// rawTuple is a tuple as JSON text by column (values as PostgreSQL printed them), for a dead
// letter of a change that could not be decoded; nil when its relation is unknown.
func (s *stream) rawTuple(relID uint32, td *pglogrepl.TupleData) []byte {
	t, ok := s.rels[relID]
	if !ok || td == nil || len(td.Columns) != len(t.Columns) {
		return nil
	}
	row := make(map[string]any, len(t.Columns))
	for i, col := range td.Columns {
		switch col.DataType {
		case pglogrepl.TupleDataTypeText:
			row[t.Columns[i].Name] = string(col.Data)
		case pglogrepl.TupleDataTypeNull:
			row[t.Columns[i].Name] = nil
		}
	}
	b, _ := json.Marshal(row)
	return b
}
