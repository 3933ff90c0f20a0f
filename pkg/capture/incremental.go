package capture

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/change"
)

// watermarkPrefix marks the low/high watermark messages of re-snapshot chunks.
const watermarkPrefix = "backflow-wm"

// Why a re-snapshot runs; it is kept with the request and shown in logs and status.
const (
	ReasonRequested = "requested" // a signal row or `backflow snapshot`
	ReasonReplaced  = "replaced"  // the table name now points to another relation
	ReasonAdded     = "added"     // a table captured for the first time after the initial snapshot
	ReasonSlotLost  = "slot_lost" // the replication slot was lost and recreated
	ReasonKeyed     = "keyed"     // the table has a key again after changes were left out for want of one
	ReasonColumns   = "columns"   // columns were added or retyped: PostgreSQL filled or rewrote the rows unlogged
	// ReasonPartitions: partitions were truncated, rewritten, detached, dropped or attached with
	// rows, which changes the table's rows without a change in its log.
	ReasonPartitions = "partitions"
	// ReasonLogged: the table, or some of its partitions, was UNLOGGED (its changes not in the
	// log) and is logged again.
	ReasonLogged = "logged"
	// ReasonUnpublished: the table was out of the publication, which sent none of its changes.
	ReasonUnpublished = "unpublished"
	// ReasonFilter: the publication's column list or row filter of the table changed, so it
	// publishes other rows or columns.
	ReasonFilter = "filter"
	// ReasonOperations: the publication did not publish some operations (inserts, updates,
	// deletes or truncates) and publishes them again.
	ReasonOperations = "operations"
	// ReasonEnum: labels of an enum type the table's columns hold were renamed.
	ReasonEnum = "enum"
	// ReasonTopicDeleted: the table's topic was deleted while capture was not running, and
	// holds only what capture wrote since.
	ReasonTopicDeleted = "topic_deleted"
	// ReasonKafkaLost: a broker lost records capture had written to the table's topic, after
	// it had acknowledged them (kafkaLoss).
	ReasonKafkaLost = "kafka_lost"
)

// SnapshotRequest asks capture to re-read a table into its topic while streaming. It is the
// `data` of a row of type 'snapshot' in the signal table.
type SnapshotRequest struct {
	Table string `json:"table"`           // schema.table
	Where string `json:"where,omitempty"` // optional SQL condition
	// FullRefresh also deletes, in the topic and so in every target, the keys the topic holds
	// that the table no longer has. It cannot be combined with Where.
	FullRefresh bool     `json:"full_refresh,omitempty"`
	Reason      string   `json:"reason,omitempty"`
	LastKey     []string `json:"last_key,omitempty"`
	Rows        int64    `json:"rows"`
	Deleted     int64    `json:"deleted,omitempty"` // keys a full refresh deleted
	// Undeletable are keys a full refresh found stale but could not delete: undecodable, or
	// written under another key definition (the first few logged).
	Undeletable int64 `json:"undeletable,omitempty"`
	Done        bool  `json:"done"`
}

// ReSnapshots is the re-snapshot progress capture keeps in its state topic.
type ReSnapshots struct {
	Queue []*SnapshotRequest `json:"queue"` // the first is the one running
	Done  []*SnapshotRequest `json:"done,omitempty"`
}

// incremental re-snapshots tables while the stream goes on, with the watermark technique: for
// each chunk it writes a low watermark through the WAL, reads the chunk, writes a high watermark;
// changes the stream delivers between the two watermarks drop the chunk rows of their keys (the
// stream has newer data), and at the high watermark the remaining rows are published as reads.
// Nothing is locked, and no change to a key is reordered or lost.
//
// Chunks are read on a connection of their own, in a goroutine: the replication loop keeps
// receiving and answering PostgreSQL while a slow chunk is read, so the server never drops the
// replication connection for silence (wal_sender_timeout).
type incremental struct {
	s       *stream
	state   *ReSnapshots
	save    func(context.Context, *ReSnapshots) error
	connect func(context.Context) (*pgx.Conn, error) // opens the chunk reads' connection
	sweeper sweeper                                  // reads a topic's keys for full refreshes
	conn    *pgx.Conn
	reader  *chunkReader
	sizer   *chunkRows   // the rows of reader's next chunk
	chunk   *chunkWindow // the chunk between its watermarks, nil when none is open
	refresh *refresh     // the running full refresh's key bookkeeping
	pl      *progressLog // the running re-snapshot's progress (log, metrics, status)
}

// chunkWindow is one chunk on its way from the table to the topic.
type chunkWindow struct {
	id      string // the watermark id
	result  chan chunkResult
	read    bool // the read finished: rows, last and snap are set
	lowSeen bool // the stream passed the low watermark
	rows    []change.Row
	bad     []badRow // rows that did not decode: dead letters in their place
	last    []string
	snap    pgSnapshot // the snapshot the chunk was read with
	pending []txnKey   // keys the stream changed before the low watermark, while snap was unknown
	dropped map[string]bool
}

type chunkResult struct {
	rows  []change.Row
	bad   []badRow
	last  []string
	bytes int64 // the text of its rows
	snap  pgSnapshot
	err   error
}

type txnKey struct {
	xid uint32
	key string
}

func (in *incremental) active() *SnapshotRequest {
	if in == nil || len(in.state.Queue) == 0 {
		return nil
	}
	return in.state.Queue[0]
}

// signal handles a row inserted into the signal table.
func (in *incremental) signal(ctx context.Context, row change.Row) error {
	typ, _ := row["type"].(string)
	if typ != "snapshot" {
		in.s.c.log.Warn("ignoring signal of unknown type", zap.String("type", typ))
		return nil
	}
	var req SnapshotRequest
	data, _ := row["data"].(string)
	if err := json.Unmarshal([]byte(data), &req); err != nil || !strings.Contains(req.Table, ".") {
		in.s.c.log.Warn("ignoring snapshot signal: data must be {\"table\": \"schema.table\", \"where\": …}", zap.String("data", data))
		return nil
	}
	if err := in.s.c.admitRequest(ctx, in.s.cat, req.Table, req.Where); err != nil {
		in.s.c.log.Warn("refusing snapshot signal", zap.Any("signal_id", row["id"]), zap.String("table", req.Table),
			zap.String("where", req.Where), zap.Error(err))
		return nil
	}
	if req.FullRefresh && req.Where != "" {
		in.s.c.log.Warn("ignoring snapshot signal: a full refresh re-reads the whole table and takes no where", zap.String("data", data))
		return nil
	}
	req.LastKey, req.Rows, req.Deleted, req.Done = nil, 0, 0, false
	if req.Reason == "" {
		req.Reason = ReasonRequested
	}
	return in.enqueue(ctx, &req)
}

// enqueue adds a re-snapshot to the queue and saves it. A full refresh of a table already waiting
// for one that has not started reading is not queued twice.
func (in *incremental) enqueue(ctx context.Context, req *SnapshotRequest) error {
	for i, q := range in.state.Queue {
		started := i == 0 && in.reader != nil
		if !started && q.Table == req.Table && q.FullRefresh && req.FullRefresh {
			return nil
		}
	}
	in.state.Queue = append(in.state.Queue, req)
	in.s.c.log.Info("re-snapshot queued", zap.String("table", req.Table), zap.String("where", req.Where),
		zap.Bool("full_refresh", req.FullRefresh), zap.String("reason", req.Reason))
	return in.save(ctx, in.state)
}

// step advances the running re-snapshot without blocking: it opens the next chunk, or takes the
// result of a chunk read that finished, or finishes a full refresh whose sweep is ready.
func (in *incremental) step(ctx context.Context) error {
	req := in.active()
	if req == nil || in.s.inTxn {
		return nil
	}
	switch {
	case in.chunk != nil:
		return in.collect(ctx)
	case in.refresh != nil && in.refresh.finishing:
		return in.finishRefresh(ctx, req)
	}
	if in.reader == nil {
		if err := in.open(ctx, req); err != nil || in.reader == nil {
			return err
		}
	}
	return in.startChunk(ctx, req)
}

// startChunk writes the low watermark and starts reading the chunk in the background.
func (in *incremental) startChunk(ctx context.Context, req *SnapshotRequest) error {
	w := &chunkWindow{id: strconv.FormatInt(time.Now().UnixNano(), 10), result: make(chan chunkResult, 1), dropped: map[string]bool{}}
	if err := in.emitWatermark(ctx, "low", w.id); err != nil {
		return err
	}
	in.chunk = w
	in.reader.size = in.sizer.next() // set before the read, which reads it
	conn, reader, lastKey := in.conn, in.reader, req.LastKey
	go func() { w.result <- readChunk(ctx, conn, reader, lastKey) }()
	return nil
}

// collect takes a finished chunk read: stream changes seen before the low watermark drop the
// rows the read did not see them in, and the high watermark is written.
func (in *incremental) collect(ctx context.Context) error {
	w := in.chunk
	if w.read {
		return nil
	}
	var res chunkResult
	select {
	case res = <-w.result:
	default:
		return nil
	}
	if res.err != nil {
		return fmt.Errorf("re-snapshot %s: read chunk: %w", in.reader.t.QualifiedName(), res.err)
	}
	if in.refresh != nil && in.refresh.rereadFor(res.snap) {
		in.chunk = nil // read again, with a new low watermark: the next step starts it
		return nil
	}
	w.read, w.rows, w.bad, w.last, w.snap = true, res.rows, res.bad, res.last, res.snap
	in.sizer.saw(len(res.rows)+len(res.bad), res.bytes)
	for _, p := range w.pending {
		if !w.snap.visible(p.xid) {
			w.dropped[p.key] = true
		}
	}
	w.pending = nil
	return in.emitWatermark(ctx, "high", w.id)
}

// readChunk reads the next chunk in a transaction whose snapshot it notes: a transaction that
// committed before the low watermark but was not yet visible to that snapshot (its commit
// record is written before it becomes visible) must still drop the chunk rows it touched.
func readChunk(ctx context.Context, conn *pgx.Conn, r *chunkReader, lastKey []string) chunkResult {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return chunkResult{err: err}
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	var text string
	if err := tx.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&text); err != nil {
		return chunkResult{err: err}
	}
	snap, err := parseSnapshot(text)
	if err != nil {
		return chunkResult{err: err}
	}
	res := r.read(ctx, tx, lastKey)
	res.snap = snap
	return res
}

func (in *incremental) open(ctx context.Context, req *SnapshotRequest) error {
	if in.conn == nil {
		conn, err := in.connect(ctx)
		if err != nil {
			return fmt.Errorf("re-snapshot %s: %w", req.Table, err)
		}
		in.conn = conn
	}
	if req.FullRefresh && req.LastKey != nil {
		// The keys seen by the interrupted run are gone with it: start over.
		in.s.c.log.Info("full refresh interrupted by a restart starts over", zap.String("table", req.Table))
		req.LastKey, req.Rows = nil, 0
	}
	schema, name, _ := strings.Cut(req.Table, ".")
	t, err := in.s.cat.table(ctx, schema, name)
	if err == nil {
		err = in.s.em.ensureTopic(ctx, t)
	}
	if err == nil {
		in.reader, err = newChunkReader(ctx, in.s.cat, t, in.s.c.pg.SnapshotChunk, req.Where)
	}
	if err != nil {
		in.s.c.log.Error("re-snapshot cannot start; dropping the request", zap.String("table", req.Table), zap.Error(err))
		return in.finish(ctx)
	}
	if req.FullRefresh {
		in.refresh = newRefresh(ctx, in.s.c.log, in.s.em, in.sweeper, t)
		in.refresh.after = uint32(in.s.txn.TxID) // step opens only between transactions: the last one decoded
	}
	var estimate int64 // a condition reads an unknown part of the table
	if req.Where == "" {
		estimate = estimateRows(ctx, in.s.cat.conn, schema, name, in.s.c.log)
	}
	in.sizer = newChunkRows(in.s.c.pg.SnapshotChunk, chunkBytes, 0, 0) // a probe first: see chunkRows
	in.pl = newProgressLog(req.Table, in.s.c.log.With(zap.String("snapshot", "incremental"), zap.String("reason", req.Reason)),
		in.s.c.metrics, estimate, req.Rows)
	in.s.c.log.Info("re-snapshot started", zap.String("table", req.Table), zap.Int64("rows_done", req.Rows),
		zap.Bool("full_refresh", req.FullRefresh), zap.String("reason", req.Reason))
	return nil
}

func (in *incremental) emitWatermark(ctx context.Context, kind, id string) error {
	_, err := in.s.cat.conn.Exec(ctx, "SELECT pg_logical_emit_message(false, $1, $2)", watermarkPrefix, kind+":"+id)
	if err != nil {
		return fmt.Errorf("re-snapshot: write %s watermark: %w", kind, err)
	}
	return nil
}

// observe drops the buffered chunk row of a key the stream changed inside the window, or before
// it by a transaction the chunk's snapshot did not see; a full refresh notes the key as present
// or dealt with by the stream.
func (in *incremental) observe(ctx context.Context, t *change.Table, row change.Row) error {
	if in == nil || in.reader == nil || t.QualifiedName() != in.reader.t.QualifiedName() {
		return nil
	}
	if in.refresh != nil {
		if err := in.refresh.see(ctx, t, row); err != nil {
			return err
		}
	}
	w := in.chunk
	if w == nil {
		return nil
	}
	key := rowKey(in.reader.t, row)
	switch {
	case w.lowSeen:
		w.dropped[key] = true
	case w.read:
		if !w.snap.visible(uint32(in.s.txn.TxID)) {
			w.dropped[key] = true
		}
	default:
		w.pending = append(w.pending, txnKey{xid: uint32(in.s.txn.TxID), key: key})
	}
	return nil
}

// pgSnapshot is a transaction snapshot as pg_current_snapshot() prints it, in 32-bit xids (what
// pgoutput's Begin message carries).
type pgSnapshot struct {
	xmin, xmax uint32
	xip        map[uint32]bool
}

func parseSnapshot(s string) (pgSnapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return pgSnapshot{}, fmt.Errorf("unexpected snapshot %q", s)
	}
	xmin, err1 := strconv.ParseUint(parts[0], 10, 64)
	xmax, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return pgSnapshot{}, fmt.Errorf("unexpected snapshot %q", s)
	}
	snap := pgSnapshot{xmin: uint32(xmin), xmax: uint32(xmax), xip: map[uint32]bool{}}
	for _, x := range strings.Split(parts[2], ",") {
		if n, err := strconv.ParseUint(x, 10, 64); err == nil {
			snap.xip[uint32(n)] = true
		}
	}
	return snap, nil
}

// visible reports whether a committed transaction's effects were visible to the snapshot,
// comparing xids modulo 2^32 as PostgreSQL does.
func (s pgSnapshot) visible(xid uint32) bool {
	switch {
	case int32(xid-s.xmin) < 0:
		return true
	case int32(xid-s.xmax) >= 0:
		return false
	}
	return !s.xip[xid]
}

// watermark handles a watermark message from the stream.
func (in *incremental) watermark(ctx context.Context, content string, lsn pglogrepl.LSN) error {
	kind, id, _ := strings.Cut(content, ":")
	if in == nil || in.chunk == nil || id != in.chunk.id {
		return nil // a watermark of a chunk from before a restart
	}
	switch {
	case kind == "low":
		in.chunk.lowSeen = true
	case kind == "high" && in.chunk.read && in.chunk.lowSeen:
		return in.flush(ctx, lsn)
	}
	return nil
}

// flush publishes the chunk rows the window left, then records the progress once Kafka has them.
// The rows carry the high watermark's position: they are the table's state there, which keeps
// last-write-wins targets correct.
func (in *incremental) flush(ctx context.Context, at pglogrepl.LSN) error {
	req, w := in.active(), in.chunk
	for _, row := range w.rows {
		if w.dropped[rowKey(in.reader.t, row)] {
			continue
		}
		ev := in.s.event(change.OpRead, in.reader.t)
		ev.Source.Snapshot, ev.Source.LSN, ev.Source.TxID = change.SnapshotIncremental, int64(at), 0
		ev.Source.TsMs = time.Now().UnixMilli()
		ev.After = row
		if err := in.s.em.emit(ctx, ev); err != nil {
			return err
		}
		if in.refresh != nil {
			if err := in.refresh.see(ctx, in.reader.t, row); err != nil {
				return err
			}
		}
	}
	if err := in.deadLetterBad(ctx, w, at); err != nil {
		return err
	}
	if err := in.s.em.drain(ctx); err != nil {
		return err
	}
	in.chunk = nil
	req.Rows += int64(len(w.rows))
	in.pl.acked(len(w.rows), req.Rows, time.Now())
	read := len(w.rows) + len(w.bad)
	if read > 0 {
		req.LastKey = w.last
	}
	if read >= in.reader.size { // a full chunk: there may be more
		return in.save(ctx, in.state)
	}
	if in.refresh != nil {
		in.refresh.finishing = true
		return in.finishRefresh(ctx, req)
	}
	in.s.c.log.Info("re-snapshot done", zap.String("table", req.Table), zap.Int64("rows", req.Rows))
	return in.finish(ctx)
}

// deadLetterBad writes a dead letter in the place of each row of w that did not decode, which
// would fail every run at this chunk. A full refresh counts its key as read when the key
// decodes: the row is still in the table, and its target row must not be deleted.
func (in *incremental) deadLetterBad(ctx context.Context, w *chunkWindow, at pglogrepl.LSN) error {
	t := in.reader.t
	for _, b := range w.bad {
		if b.key != nil && w.dropped[rowKey(t, b.key)] {
			continue // the stream has the row's newer state
		}
		ev := in.s.event(change.OpRead, t)
		ev.Source.Snapshot, ev.Source.LSN, ev.Source.TxID = change.SnapshotIncremental, int64(at), 0
		if err := in.s.em.deadLetterNow(ctx, deadLetter{ev: ev, value: b.raw, reason: reasonUndecodable, detail: b.err.Error()}); err != nil {
			return err
		}
		if in.refresh != nil && b.key != nil {
			if err := in.refresh.see(ctx, t, b.key); err != nil {
				return err
			}
		}
	}
	return nil
}

// finishRefresh, once the sweep has read the keys the topic held when the refresh started,
// deletes those the refresh neither read nor saw change: the table no longer has them.
func (in *incremental) finishRefresh(ctx context.Context, req *SnapshotRequest) error {
	stale, ready, err := in.refresh.stale(ctx)
	if err != nil {
		return fmt.Errorf("full refresh of %s: %w", req.Table, err)
	}
	if !ready {
		return nil
	}
	for _, key := range stale {
		ev := in.s.event(change.OpDelete, in.reader.t)
		ev.Source.Snapshot, ev.Source.TxID = change.SnapshotIncremental, 0
		ev.Before = key
		if err := in.s.em.emit(ctx, ev); err != nil {
			return err
		}
	}
	if err := in.s.em.drain(ctx); err != nil {
		return err
	}
	req.Deleted, req.Undeletable = int64(len(stale)), int64(in.refresh.undeletable)
	in.s.c.metrics.RefreshDeletes(req.Table, len(stale))
	in.s.c.log.Info("full refresh done", zap.String("table", req.Table), zap.Int64("rows", req.Rows),
		zap.Int64("deleted", req.Deleted), zap.Int64("undeletable", req.Undeletable), zap.String("reason", req.Reason))
	return in.finish(ctx)
}

func (in *incremental) finish(ctx context.Context) error {
	req := in.state.Queue[0]
	req.Done = true
	in.state.Queue = in.state.Queue[1:]
	in.state.Done = append(in.state.Done, req)
	if len(in.state.Done) > 20 {
		in.state.Done = in.state.Done[len(in.state.Done)-20:]
	}
	if in.pl != nil {
		in.pl.done()
	}
	in.reader, in.chunk, in.refresh, in.pl = nil, nil, nil, nil
	return in.save(ctx, in.state)
}

// close releases the chunk reads' connection, once a read still under way has ended (the run's
// context is cancelled by then, which cancels its query): a connection serves one goroutine.
func (in *incremental) close(ctx context.Context) {
	if in == nil || in.conn == nil {
		return
	}
	if w := in.chunk; w != nil && !w.read {
		select {
		case <-w.result:
		case <-time.After(10 * time.Second):
		}
	}
	in.conn.Close(ctx)
	in.conn = nil
	if r := in.refresh; r != nil && r.result == nil {
		select { // the sweep logs through the Kafka client: let it end with the run
		case <-r.sweep:
		case <-time.After(10 * time.Second):
		}
	}
}

// rowKey identifies a row by its key values.
func rowKey(t *change.Table, row change.Row) string {
	var b strings.Builder
	for _, c := range t.Columns {
		if c.Key {
			fmt.Fprintf(&b, "%v\x00", row[c.Name])
		}
	}
	return b.String()
}
