package capture

// Streamed transactions: the messages only pgoutput protocol 2 with "streaming 'on'" sends.
// PostgreSQL streams a transaction before it commits once it outgrows logical_decoding_work_mem,
// in blocks (Stream Start … Stream Stop) that interleave with other transactions, each change
// carrying the xid of the (sub)transaction that wrote it; Stream Commit or Stream Abort ends it.
// The blocks go to the transaction's spill file (spill.go) and reach Kafka at Stream Commit, as
// one transaction with that commit's position, time and xid: what protocol 1 would have sent.
//
// Capture is idle while a transaction streams and busy at its commit, so most of the work is
// done as it streams: an insert, update or delete of a relation the stream describes as capture
// already knows it is decoded and encoded then (codec.Encoder.EncodeTemplate), and the commit
// only fills in the commit's position, time and xid (codec.Encoder.Fill) and produces. The
// encoded record keeps the message beside it: at the commit, a record goes the protocol 1 way
// instead, from that message, whenever the encoded form may not be what protocol 1 gives (see
// replayEncoded). Messages whose handling needs the commit (relations, truncates, the signal
// table's rows, keys with a NULL column, anything that fails to decode or encode) are spilled
// as PostgreSQL sent them and handled at the commit only, as in protocol 1.

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pglogrepl"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
)

// streamingSince is the first server_version_num whose pgoutput streams transactions in progress.
const streamingSince = 140000

// openSpill chooses the protocol by source.postgres.streaming and the server's version: for
// streaming, it returns the spill directory of this cluster's slot, emptied; nil for protocol 1.
func (c *Capture) openSpill(ctx context.Context, cat *catalog, systemID string) (*spills, error) {
	if c.pg.Streaming == config.StreamingOff || c.spillFailed != "" {
		return nil, nil // see noteSpillFailure
	}
	var version int
	if err := cat.conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		return nil, fmt.Errorf("read server_version_num: %w", err)
	}
	if version < streamingSince {
		if c.pg.Streaming == config.StreamingOn {
			return nil, fmt.Errorf("source.postgres.streaming is on, but PostgreSQL %d cannot stream transactions in progress "+
				"(version 14 and later can); set it to auto or off", version)
		}
		return nil, nil
	}
	dir := c.pg.SpillDir
	if dir == "" {
		dir = os.TempDir()
	}
	// One directory per cluster and slot: the files of another capture are not this one's to remove.
	sp, err := openSpills(filepath.Join(dir, "backflow-"+systemID+"-"+c.pg.Slot))
	if err != nil {
		return nil, fmt.Errorf("source.postgres.spill_dir: %w", err)
	}
	c.log.Info("streaming transactions in progress", zap.String("spill_dir", sp.dir))
	return sp, nil
}

// streamed handles a protocol 2 message of a streamed transaction and reports true, or reports
// false for any other message, which is handled as in protocol 1.
func (s *stream) streamed(ctx context.Context, xld pglogrepl.XLogData) (bool, error) {
	data := xld.WALData
	if s.streamXid != 0 {
		return true, s.inBlock(ctx, xld)
	}
	switch pglogrepl.MessageType(data[0]) {
	case pglogrepl.MessageTypeStreamStart:
		m, err := parseStreamMessage[*pglogrepl.StreamStartMessageV2](xld)
		if err != nil {
			return true, err
		}
		if m.Xid == 0 {
			return true, fmt.Errorf("pgoutput stream start at %s without a transaction id", xld.WALStart)
		}
		s.streamXid = m.Xid
		gulpOf(s.conn).setBulk(true)
		return true, s.spill.start(m.Xid, m.FirstSegment == 1)
	case pglogrepl.MessageTypeStreamCommit:
		m, err := parseStreamMessage[*pglogrepl.StreamCommitMessageV2](xld)
		if err != nil {
			return true, err
		}
		return true, s.streamCommit(ctx, m)
	case pglogrepl.MessageTypeStreamAbort:
		m, err := parseStreamMessage[*pglogrepl.StreamAbortMessageV2](xld)
		if err != nil {
			return true, err
		}
		s.spill.abort(m.Xid, m.SubXid)
		return true, nil
	}
	return false, nil
}

// inBlock spills a message of the stream block being received. Relation messages go with the
// changes: replayed in place, they describe the rows that follow them, as in protocol 1 (and as
// PostgreSQL's own subscriber applies them).
func (s *stream) inBlock(ctx context.Context, xld pglogrepl.XLogData) error {
	data := xld.WALData
	switch typ := pglogrepl.MessageType(data[0]); typ {
	case pglogrepl.MessageTypeStreamStop:
		err := s.flushStreamed(ctx)
		s.streamXid = 0
		gulpOf(s.conn).setBulk(false)
		return err
	case pglogrepl.MessageTypeRelation, pglogrepl.MessageTypeInsert, pglogrepl.MessageTypeUpdate,
		pglogrepl.MessageTypeDelete, pglogrepl.MessageTypeTruncate:
		if len(data) < 5 {
			return fmt.Errorf("malformed pgoutput %s message at %s: %d bytes, no transaction id", typ, xld.WALStart, len(data))
		}
		sub := binary.BigEndian.Uint32(data[1:5])
		switch typ {
		case pglogrepl.MessageTypeInsert, pglogrepl.MessageTypeUpdate, pglogrepl.MessageTypeDelete:
			if queued, err := s.queueStreamed(ctx, sub, xld.WALStart, data); queued || err != nil {
				return err
			}
		}
		// Spilled as it came, after the changes queued before it.
		if err := s.flushStreamed(ctx); err != nil {
			return err
		}
		if typ == pglogrepl.MessageTypeRelation {
			s.streamRelation(data)
		}
		// Without the xid after its type byte, a streamed message is its protocol 1 form.
		return s.spill.add(s.streamXid, sub, xld.WALStart, data[0], data[5:])
	}
	return nil // type, origin and transactional logical messages: ignored, as in protocol 1
}

// streamCommit publishes a committed streamed transaction from its spill file (replaySpill),
// then places its end in the tracker as a protocol 1 commit does.
func (s *stream) streamCommit(ctx context.Context, m *pglogrepl.StreamCommitMessageV2) error {
	s.begin(change.Source{TxID: int64(m.Xid), LSN: int64(m.CommitLSN), TsMs: m.CommitTime.UnixMilli()})
	start := time.Now()
	commit := codec.Commit{SourceTsMs: s.txn.TsMs, TxID: s.txn.TxID, LSN: s.txn.LSN}
	n, encoded, err := s.replaySpill(ctx, m.Xid, commit, s.spill.tables(m.Xid), func(at pglogrepl.LSN, data []byte) error {
		msg, err := parseWAL(data)
		if err != nil {
			return fmt.Errorf("parse spilled pgoutput message at %s: %w", at, err)
		}
		return s.apply(ctx, at, msg)
	})
	if err != nil {
		return fmt.Errorf("streamed transaction %d committed at %s: %w", m.Xid, m.CommitLSN, err)
	}
	s.commit(m.TransactionEndLSN)
	if n > 0 {
		s.c.log.Info("streamed transaction committed and handed to Kafka", zap.Uint32("xid", m.Xid),
			zap.String("commit_lsn", m.CommitLSN.String()), zap.Int("messages", n), zap.Int("encoded_while_streaming", encoded), zap.Duration("took", time.Since(start)))
	}
	return nil
}

// statusIfDue sends a status update when one is due: a replay does not go back to the receive
// loop, and PostgreSQL drops a connection silent for wal_sender_timeout.
func (s *stream) statusIfDue(ctx context.Context) error {
	if time.Since(s.statusAt) < s.c.pg.StatusInterval {
		return nil
	}
	return s.sendStatus(ctx)
}

// parseStreamMessage parses a stream control message, whose decoders check its length.
func parseStreamMessage[M pglogrepl.Message](xld pglogrepl.XLogData) (M, error) {
	var zero M
	data := xld.WALData
	msg, err := pglogrepl.ParseV2(data, false)
	if err != nil {
		return zero, fmt.Errorf("malformed pgoutput %c message %q at %s: %w", data[0], truncate(data), xld.WALStart, err)
	}
	m, ok := msg.(M)
	if !ok {
		return zero, fmt.Errorf("pgoutput %c message at %s parsed as %T", data[0], xld.WALStart, msg)
	}
	return m, nil
}
