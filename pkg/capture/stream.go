package capture

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/change"
)

// heartbeatPrefix marks the logical messages capture writes through the WAL when idle.
const heartbeatPrefix = "backflow-heartbeat"

// stream is the state of one replication session: the transaction being decoded and the
// relations seen so far.
type stream struct {
	c        *Capture
	conn     *pgconn.PgConn
	em       *emitter
	acks     *ackBook // saves the offsets Kafka acknowledged, for the next start's check
	dec      *decoder
	cat      *catalog
	rels     map[uint32]*change.Table
	unkeyed  map[uint32]string // relations without a key, whose changes are left out (skipUnkeyed)
	inTxn    bool
	txn      change.Source // source fields of the current transaction
	txnSeq   uint64        // the tracker's sequence of the current transaction's first record
	acked    pglogrepl.LSN // last position confirmed to PostgreSQL
	idleLSN  pglogrepl.LSN // keepalive position usable while nothing is in flight
	lastData time.Time
	inc      *incremental   // re-snapshots running beside the stream
	watch    *relationWatch // the identity of the captured tables
	slot     *slotKeeper    // the slot's record in the state topic
	signal   string         // schema.table of the signal table
	tables   [][2]string    // the captured tables, schema and name
	sigRel   uint32         // its relation id once seen
	statusAt time.Time      // when the last status update went
	// spill holds the streamed transactions not ended yet (streamtxn.go); nil with protocol 1.
	spill     *spills
	streamXid uint32 // the transaction of the stream block being received, 0 between blocks

	// touched are the tables the current transaction changed, for the commit hook.
	touched map[string]bool
}

// replicate streams from the slot until ctx ends or something fails. It is the replication loop
// in one place: receive with a deadline (receiver), answer keepalives, decode changes, and send a standby
// status with the tracker's released position at least every status interval.
func (s *stream) replicate(ctx context.Context, slot, publication string) error {
	args := []string{"proto_version '1'", fmt.Sprintf("publication_names '%s'", publication), "messages 'true'"}
	if s.spill != nil {
		args[0] = "proto_version '2'"
		args = append(args, "streaming 'on'")
	}
	// Start at 0: PostgreSQL resumes from the slot's confirmed position, never from anything else.
	if err := pglogrepl.StartReplication(ctx, s.conn, slot, 0, pglogrepl.StartReplicationOptions{PluginArgs: args}); err != nil {
		return fmt.Errorf("start replication from slot %q: %w", slot, err)
	}
	statusEvery := s.c.pg.StatusInterval
	nextStatus := time.Now().Add(statusEvery)
	s.lastData = time.Now()
	rc := newReceiver(ctx, s.conn.Conn())
	defer rc.close()
	rc.until(nextStatus)
	for {
		// pgconn clears the socket's deadline after a call whose context ended (a status update
		// when ctx ends), which may undo rc's interruption: ctx is checked here too.
		select {
		case <-ctx.Done():
			return fmt.Errorf("receive from replication connection: %w", ctx.Err())
		default:
		}
		now := time.Now() // one clock read a message: the loop is hot
		if now.After(nextStatus) {
			if err := s.sendStatus(ctx); err != nil {
				return err
			}
			if err := s.heartbeat(ctx); err != nil {
				return err
			}
			if err := s.inc.step(ctx); err != nil {
				return err
			}
			if err := s.watch.tick(ctx); err != nil {
				return err
			}
			if err := s.em.checkTopics(ctx); err != nil {
				return err
			}
			if err := s.repairLoss(ctx); err != nil {
				return err
			}
			s.acks.saveDue(s.c.loss, func(err error) {
				s.c.log.Warn("cannot save the offsets Kafka acknowledged in capture's state; the next start checks against older ones", zap.Error(err))
			})
			s.slot.tick(ctx, s.acked)
			nextStatus = time.Now().Add(statusEvery)
			rc.until(nextStatus)
		}
		raw, err := s.conn.ReceiveMessage(context.Background()) // rc enforces the deadline and ctx
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("receive from replication connection: %w", ctx.Err())
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("receive from replication connection: %w", err)
		}
		switch m := raw.(type) {
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyData:
			replyNow, err := s.handleCopyData(ctx, now, m.Data)
			if err != nil {
				return err
			}
			if err := s.inc.step(ctx); err != nil {
				return err
			}
			if replyNow {
				nextStatus = time.Time{}
			}
		}
	}
}

// receiver bounds the reads of the replication connection with a deadline on its socket, set
// once a status period, rather than with a context on every ReceiveMessage: pgconn watches a
// cancellable context on each call (a registration with the context and a channel), which a
// stream of millions of messages pays for millions of times. A timed-out read leaves the
// connection usable (pgconn resumes a message cut in the middle); ctx ending sets a deadline
// in the past, which ends a blocked read at once.
type receiver struct {
	ctx  context.Context
	conn net.Conn
	stop func() bool
}

func newReceiver(ctx context.Context, conn net.Conn) *receiver {
	r := &receiver{ctx: ctx, conn: conn}
	r.stop = context.AfterFunc(ctx, r.interrupt)
	return r
}

// until makes reads time out at t. If ctx has ended, reads end at once whatever t: the deadline
// set here must not undo interrupt's.
func (r *receiver) until(t time.Time) {
	_ = r.conn.SetReadDeadline(t) // fails only on a closed connection, which the read reports
	if r.ctx.Err() != nil {
		r.interrupt()
	}
}

func (r *receiver) interrupt() { _ = r.conn.SetReadDeadline(time.Unix(1, 0)) }

// close stops watching ctx and clears the deadline for whoever uses the connection next.
func (r *receiver) close() {
	r.stop()
	_ = r.conn.SetReadDeadline(time.Time{})
}

// handleCopyData handles a message of the replication stream received at now.
func (s *stream) handleCopyData(ctx context.Context, now time.Time, data []byte) (replyNow bool, err error) {
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return false, fmt.Errorf("parse keepalive: %w", err)
		}
		// Outside a transaction with nothing in flight, everything up to the keepalive's position
		// has been decoded and published (or had nothing for us): confirming it lets an idle slot
		// advance so WAL does not pile up. Not while a streamed transaction is open: its changes
		// before that position are on local disk only.
		if !s.inTxn && !s.streaming() && ka.ServerWALEnd > s.idleLSN {
			s.idleLSN = ka.ServerWALEnd
		}
		return ka.ReplyRequested, nil
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return false, fmt.Errorf("parse XLogData: %w", err)
		}
		s.lastData = now
		return false, s.handleWAL(ctx, xld)
	}
	return false, nil
}

// sendStatus confirms the highest position whose records Kafka has all acknowledged.
func (s *stream) sendStatus(ctx context.Context) error {
	lsn, idle, err := s.em.tr.position()
	if err != nil {
		return err
	}
	if idle && !s.inTxn && !s.streaming() && s.idleLSN > lsn {
		lsn = s.idleLSN
	}
	if lsn < s.acked {
		lsn = s.acked
	}
	err = pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: lsn, WALFlushPosition: lsn, WALApplyPosition: lsn,
	})
	if err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	if lsn != s.acked {
		s.c.log.Debug("confirmed", zap.String("lsn", lsn.String()), zap.Int("in_flight", s.em.tr.inFlight()))
	}
	s.acked = lsn
	s.statusAt = time.Now()
	s.recordSlotLag(ctx)
	return nil
}

// recordSlotLag publishes how much WAL the slot holds back, when metrics are on.
func (s *stream) recordSlotLag(ctx context.Context) {
	if s.c.metrics == nil || s.cat == nil {
		return
	}
	var lag int64
	err := s.cat.conn.QueryRow(ctx, `SELECT coalesce(pg_current_wal_lsn() - confirmed_flush_lsn, 0)::int8
		FROM pg_replication_slots WHERE slot_name = $1`, s.c.pg.Slot).Scan(&lag)
	if err == nil {
		s.c.metrics.SlotLag(s.c.pg.Slot, lag)
		s.c.metrics.Progress("capture")
	}
}

// heartbeat writes a non-transactional logical message when no data arrived for a while, so that
// a slot whose tables are idle still moves forward while the rest of the database is busy.
func (s *stream) heartbeat(ctx context.Context) error {
	every := s.c.heartbeat
	if every <= 0 || time.Since(s.lastData) < every || s.cat == nil {
		return nil
	}
	s.lastData = time.Now()
	_, err := s.cat.conn.Exec(ctx, `SELECT pg_logical_emit_message(false, $1, now()::text)`, heartbeatPrefix)
	if err != nil {
		s.c.log.Warn("heartbeat message failed; idle slot advances on keepalives only", zap.Error(err))
		s.c.heartbeat = 0
	}
	return nil
}

func (s *stream) handleWAL(ctx context.Context, xld pglogrepl.XLogData) error {
	if s.spill != nil && len(xld.WALData) > 0 {
		if handled, err := s.streamed(ctx, xld); handled {
			return err
		}
	}
	msg, err := parseWAL(xld.WALData)
	if err != nil {
		return fmt.Errorf("parse pgoutput message at %s: %w", xld.WALStart, err)
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		s.begin(change.Source{TxID: int64(m.Xid), LSN: int64(m.FinalLSN), TsMs: m.CommitTime.UnixMilli()})
	case *pglogrepl.CommitMessage:
		s.commit(m.TransactionEndLSN)
	case *pglogrepl.LogicalDecodingMessage:
		if m.Transactional {
			return nil
		}
		switch m.Prefix {
		case heartbeatPrefix:
			s.em.tr.barrier(m.LSN)
		case watermarkPrefix:
			s.em.tr.barrier(m.LSN)
			return s.inc.watermark(ctx, string(m.Content), m.LSN)
		}
	default:
		return s.apply(ctx, xld.WALStart, msg)
	}
	return nil
}

// begin starts a transaction whose changes carry src's position, time and xid.
func (s *stream) begin(src change.Source) {
	s.inTxn = true
	s.txn = src
	s.txnSeq = s.em.tr.nextSeq()
}

// commit ends the current transaction at end, its commit record's end.
func (s *stream) commit(end pglogrepl.LSN) {
	s.inTxn = false
	// The end, not the commit LSN: PostgreSQL skips on restart the transactions whose commit
	// starts before the confirmed position, so confirming the commit LSN would replay it and
	// confirming any change LSN could skip another transaction.
	s.em.tr.barrier(end)
	s.committed()
	// Everything before this transaction acknowledged means no load: nothing else is coming
	// to share its batches, so they go now instead of lingering. Under load, records of
	// earlier transactions are still in flight and batches linger to fill up.
	if s.em.tr.ackedBelow(s.txnSeq) {
		s.em.sendNow()
	}
}

// apply handles a change or relation message at WAL position at, sent within its transaction
// (protocol 1) or read back from a streamed transaction's spill file.
func (s *stream) apply(ctx context.Context, at pglogrepl.LSN, msg pglogrepl.Message) error {
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		err := s.relation(ctx, m)
		if err == nil {
			s.noteShape(m)
		}
		return s.atWAL(ctx, at, m, err)
	case *pglogrepl.InsertMessage:
		return s.atWAL(ctx, at, m, s.insert(ctx, m))
	case *pglogrepl.UpdateMessage:
		return s.atWAL(ctx, at, m, s.update(ctx, m))
	case *pglogrepl.DeleteMessage:
		return s.atWAL(ctx, at, m, s.delete(ctx, m))
	case *pglogrepl.TruncateMessage:
		return s.atWAL(ctx, at, m, s.truncate(ctx, m, at))
	}
	return nil
}

// streaming reports whether a streamed transaction has begun and not ended yet.
func (s *stream) streaming() bool { return s.spill != nil && s.spill.pending() }

// relation caches a relation's shape. PostgreSQL sends it again before the first change after a
// DDL, so a new shape means a schema change: a new *change.Table, hence a new schema version.
func (s *stream) relation(ctx context.Context, m *pglogrepl.RelationMessage) error {
	keys, err := s.cat.relationKeys(ctx, m)
	if nk := (noKeyError{}); errors.As(err, &nk) {
		s.skipUnkeyed(m.RelationID, nk)
		return nil
	}
	if err != nil {
		return err
	}
	if name, was := s.unkeyed[m.RelationID]; was {
		if err := s.keyedAgain(ctx, name, m); err != nil {
			return err
		}
	}
	t := &change.Table{Schema: m.Namespace, Name: m.RelationName}
	for _, rc := range m.Columns {
		col, err := s.cat.column(ctx, rc.Name, rc.DataType, slices.Contains(keys, rc.Name))
		if err != nil {
			return fmt.Errorf("relation %s.%s: %w", m.Namespace, m.RelationName, err)
		}
		t.Columns = append(t.Columns, col)
	}
	if err := checkKeys(t, keys); err != nil {
		return err
	}
	if old, ok := s.rels[m.RelationID]; ok && sameShape(old, t) {
		return nil
	}
	if prev, ok := s.rels[m.RelationID]; ok {
		s.c.log.Info("table shape changed; new schema version", zap.String("table", t.QualifiedName()),
			zap.Int("columns_before", len(prev.Columns)), zap.Int("columns_after", len(t.Columns)))
		warnKeyChange(s.c.log, prev, t)
	}
	s.rels[m.RelationID] = t
	if t.QualifiedName() == s.signal {
		s.sigRel = m.RelationID
		return nil // signals are instructions for capture, not changes to publish
	}
	return s.em.ensureTopic(ctx, t)
}

// skipUnkeyed leaves out the changes of a relation that has no key, until a relation message
// gives it one (keyedAgain). Mostly a table capture need not follow: a dbt CREATE TABLE AS under
// a temporary name in a captured schema, whose rows arrive by the full refresh once the captured
// name points to it and it has a key. A configured table is reported (metric, status) for as
// long as it stays keyless; the relation watch clears the report of a table that is gone.
func (s *stream) skipUnkeyed(relID uint32, err noKeyError) {
	if _, seen := s.unkeyed[relID]; !seen {
		s.c.log.Warn("changes of a table without a key are left out until it has one", zap.String("table", err.table), zap.Error(err))
	}
	s.unkeyed[relID] = err.table
	delete(s.rels, relID)
	if s.watch.configured(err.table) {
		s.c.metrics.TableUnfollowed(err.table, err.Error())
	}
}

// keyedAgain ends skipUnkeyed for a relation that has a key now (ALTER TABLE … ADD PRIMARY KEY),
// queueing a full refresh of a captured table: the changes left out meanwhile are published no
// other way.
func (s *stream) keyedAgain(ctx context.Context, was string, m *pglogrepl.RelationMessage) error {
	delete(s.unkeyed, m.RelationID)
	s.c.metrics.TableUnfollowed(was, "")
	name := m.Namespace + "." + m.RelationName
	if !s.watch.configured(name) || s.inc == nil {
		return nil
	}
	s.c.log.Info("table without a key has one now; refreshing it in full", zap.String("table", name))
	return s.inc.enqueue(ctx, &SnapshotRequest{Table: name, FullRefresh: true, Reason: ReasonKeyed})
}

// warnKeyChange warns when a table's key columns changed (ALTER TABLE … ADD PRIMARY KEY on other
// columns): records are keyed, and so partitioned, by the key, so a row's records before and
// after the change sit in different partitions, whose order no consumer can know. Sinks that
// follow the topic applied the old ones first; a replay or a new sink reading from before the
// change may apply a row's old record last, and compaction never drops the old keys.
func warnKeyChange(log *zap.Logger, prev, now *change.Table) {
	before, after := keyNames(prev), keyNames(now)
	if slices.Equal(before, after) {
		return
	}
	log.Warn("table's key columns changed: its topic holds its rows under both keys, in different partitions. Sinks following the topic "+
		"stay right, but a replay or a new sink reading from before this point may apply a row's old record after its newer one: "+
		"run `backflow snapshot --table "+now.QualifiedName()+"` and start such reads (replay --from) after it began",
		zap.String("table", now.QualifiedName()), zap.Strings("key_before", before), zap.Strings("key_after", after))
}

func keyNames(t *change.Table) []string {
	var out []string
	for _, c := range t.KeyColumns() {
		out = append(out, c.Name)
	}
	return out
}

func sameShape(a, b *change.Table) bool {
	return a.Schema == b.Schema && a.Name == b.Name && slices.Equal(a.Columns, b.Columns)
}

func (s *stream) table(relID uint32) (*change.Table, error) {
	t, ok := s.rels[relID]
	if !ok {
		if _, unkeyed := s.unkeyed[relID]; unkeyed {
			return nil, errUnkeyed
		}
		if reason, unusable := s.c.guard.unusableReason(relID); unusable {
			return nil, unusableRelation{relID: relID, reason: reason}
		}
		return nil, fmt.Errorf("change for relation %d arrived before its relation message", relID)
	}
	return t, nil
}

// event begins the event of a change of t in the transaction being applied, and notes t as
// changed by it.
func (s *stream) event(op change.Op, t *change.Table) *change.Event {
	s.touch(t)
	ev := s.bareEvent(op, t)
	ev.TsMs = time.Now().UnixMilli()
	return ev
}

// bareEvent is event without its time and without noting t as changed: what the goroutines that
// encode a streamed transaction's changes need (streamencode.go), whose commit fills in the time
// and notes the tables.
func (s *stream) bareEvent(op change.Op, t *change.Table) *change.Event {
	src := s.txn
	src.Connector, src.Name, src.DB = "postgresql", s.c.prefix, s.c.db
	src.Schema, src.Table, src.Snapshot = t.Schema, t.Name, "false"
	return &change.Event{Op: op, Table: t, Source: src}
}

func (s *stream) insert(ctx context.Context, m *pglogrepl.InsertMessage) error {
	t, err := s.table(m.RelationID)
	if err != nil {
		return skipped(err)
	}
	ev := s.event(change.OpCreate, t)
	if ev.After, ev.UnchangedToast, err = s.tuple(t, m.Tuple, nil); err != nil {
		return err
	}
	if m.RelationID == s.sigRel && s.sigRel != 0 {
		return s.inc.signal(ctx, ev.After)
	}
	if err := s.inc.observe(ctx, t, ev.After); err != nil {
		return err
	}
	return s.em.emit(ctx, ev)
}

func (s *stream) update(ctx context.Context, m *pglogrepl.UpdateMessage) error {
	t, err := s.table(m.RelationID)
	if err != nil || m.RelationID == s.sigRel {
		return skipped(err)
	}
	ev := s.event(change.OpUpdate, t)
	if m.OldTuple != nil {
		if ev.Before, _, err = s.tuple(t, m.OldTuple, nil); err != nil {
			return err
		}
	}
	if ev.After, ev.UnchangedToast, err = s.tuple(t, m.NewTuple, ev.Before); err != nil {
		return err
	}
	if err := s.inc.observe(ctx, t, ev.After); err != nil {
		return err
	}
	if ev.Before != nil && keyChanged(t, ev.Before, ev.After) {
		if err := s.inc.observe(ctx, t, ev.Before); err != nil {
			return err
		}
		return s.keyChange(ctx, ev)
	}
	return s.em.emit(ctx, ev)
}

// keyChange publishes an update that moved a row to another key as Debezium does: a delete (and
// tombstone) under the old key, then a create under the new one, so each key's topic partition
// tells its own story.
func (s *stream) keyChange(ctx context.Context, ev *change.Event) error {
	del, ins := splitKeyChange(ev)
	if err := s.em.emit(ctx, del); err != nil {
		return err
	}
	return s.em.emit(ctx, ins)
}

// splitKeyChange turns an update that changed the key into the delete and the create keyChange
// publishes; ev becomes the create.
func splitKeyChange(ev *change.Event) (del, ins *change.Event) {
	d := *ev
	d.Op, d.After, d.UnchangedToast = change.OpDelete, nil, nil
	ev.Op, ev.Before = change.OpCreate, nil
	return &d, ev
}

func keyChanged(t *change.Table, before, after change.Row) bool {
	for _, c := range t.Columns {
		if c.Key && fmt.Sprint(before[c.Name]) != fmt.Sprint(after[c.Name]) {
			return true
		}
	}
	return false
}

func (s *stream) delete(ctx context.Context, m *pglogrepl.DeleteMessage) error {
	t, err := s.table(m.RelationID)
	if err != nil || m.RelationID == s.sigRel {
		return skipped(err)
	}
	ev := s.event(change.OpDelete, t)
	if ev.Before, _, err = s.tuple(t, m.OldTuple, nil); err != nil {
		return err
	}
	if err := s.inc.observe(ctx, t, ev.Before); err != nil {
		return err
	}
	return s.em.emit(ctx, ev)
}

// truncate publishes a truncate of each table the message names, on every partition of the
// table's topic. The message's WAL position identifies it: unique, and the same when a restart
// reads it again.
func (s *stream) truncate(ctx context.Context, m *pglogrepl.TruncateMessage, at pglogrepl.LSN) error {
	for _, id := range m.RelationIDs {
		t, err := s.table(id)
		if errors.Is(err, errUnkeyed) {
			continue
		}
		if err != nil {
			return err
		}
		if err := s.em.emitTruncate(ctx, s.event(change.OpTruncate, t), at.String()); err != nil {
			return err
		}
	}
	return nil
}

// errUnkeyed is a change of a relation skipUnkeyed leaves out.
var errUnkeyed = errors.New("change of a table without a key")

// skipped is err, or nil for a change that is left out (errUnkeyed).
func skipped(err error) error {
	if errors.Is(err, errUnkeyed) {
		return nil
	}
	return err
}

// tuple decodes a pgoutput tuple. An unchanged TOASTed value ('u') is not sent by PostgreSQL: it
// is taken from old (REPLICA IDENTITY FULL) when there, otherwise left nil and listed in toast so
// that sinks keep the target's value instead of writing NULL over it.
func (s *stream) tuple(t *change.Table, td *pglogrepl.TupleData, old change.Row) (change.Row, []string, error) {
	return decodeTuple(s.dec, t, td, old)
}

// decodeTuple is tuple with the given decoder: one per goroutine.
func decodeTuple(dec *decoder, t *change.Table, td *pglogrepl.TupleData, old change.Row) (change.Row, []string, error) {
	return decodeTupleInto(dec, t, td, old, nil)
}

// decodeTupleInto is decodeTuple into row, emptied first; nil makes a new one.
func decodeTupleInto(dec *decoder, t *change.Table, td *pglogrepl.TupleData, old, row change.Row) (change.Row, []string, error) {
	if td == nil {
		return nil, nil, nil
	}
	if len(td.Columns) != len(t.Columns) {
		return nil, nil, fmt.Errorf("%s: tuple has %d columns, relation has %d", t.QualifiedName(), len(td.Columns), len(t.Columns))
	}
	if row == nil {
		row = make(change.Row, len(t.Columns))
	} else {
		clear(row)
	}
	var toast []string
	for i, col := range td.Columns {
		c := t.Columns[i]
		switch col.DataType {
		case pglogrepl.TupleDataTypeNull:
			row[c.Name] = nil
		case pglogrepl.TupleDataTypeToast:
			if v, ok := old[c.Name]; ok && v != nil {
				row[c.Name] = v
				continue
			}
			row[c.Name] = nil
			toast = append(toast, c.Name)
		case pglogrepl.TupleDataTypeText:
			v, err := dec.decode(c, col.Data)
			if err != nil {
				return nil, nil, undecodableError{fmt.Errorf("%s.%s: %w", t.QualifiedName(), c.Name, err)}
			}
			row[c.Name] = v
		default:
			return nil, nil, errors.New("unexpected binary tuple data: capture asks for text")
		}
	}
	return row, toast, nil
}
