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

// SnapshotRequest asks capture to re-read a table into its topic while streaming. It is the
// `data` of a row of type 'snapshot' in the signal table.
type SnapshotRequest struct {
	Table   string   `json:"table"`           // schema.table
	Where   string   `json:"where,omitempty"` // optional SQL condition
	LastKey []string `json:"last_key,omitempty"`
	Rows    int64    `json:"rows"`
	Done    bool     `json:"done"`
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
type incremental struct {
	s       *stream
	state   *ReSnapshots
	save    func(context.Context, *ReSnapshots) error
	reader  *chunkReader
	phase   int    // idle, waiting for the low watermark, or open until the high one
	id      string // the current chunk's watermark id
	buffer  []change.Row
	last    []string
	dropped map[string]bool
	snap    pgSnapshot // the snapshot the buffered chunk was read with
}

const (
	phaseIdle = iota
	phaseWaitLow
	phaseOpen
)

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
	in.state.Queue = append(in.state.Queue, &req)
	in.s.c.log.Info("re-snapshot requested", zap.String("table", req.Table), zap.String("where", req.Where))
	return in.save(ctx, in.state)
}

// step starts the next chunk when a re-snapshot is running and no chunk is open.
func (in *incremental) step(ctx context.Context) error {
	req := in.active()
	if req == nil || in.phase != phaseIdle || in.s.inTxn {
		return nil
	}
	if in.reader == nil {
		if err := in.open(ctx, req); err != nil {
			return err
		}
	}
	in.id = fmt.Sprintf("%d", time.Now().UnixNano())
	if err := in.emitWatermark(ctx, "low"); err != nil {
		return err
	}
	if err := in.readChunk(ctx, req); err != nil {
		return fmt.Errorf("re-snapshot %s: read chunk: %w", req.Table, err)
	}
	in.phase = phaseWaitLow
	return in.emitWatermark(ctx, "high")
}

// readChunk reads the next chunk in a transaction whose snapshot it notes: a transaction that
// committed before the low watermark but was not yet visible to that snapshot (its commit
// record is written before it becomes visible) must still drop the chunk rows it touched.
func (in *incremental) readChunk(ctx context.Context, req *SnapshotRequest) error {
	tx, err := in.s.cat.conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	var snap string
	if err := tx.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&snap); err != nil {
		return err
	}
	if in.snap, err = parseSnapshot(snap); err != nil {
		return err
	}
	in.buffer, in.last, err = in.reader.read(ctx, tx, req.LastKey)
	in.dropped = map[string]bool{}
	return err
}

func (in *incremental) open(ctx context.Context, req *SnapshotRequest) error {
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
	in.s.c.log.Info("re-snapshot started", zap.String("table", req.Table), zap.Int64("rows_done", req.Rows))
	return nil
}

func (in *incremental) emitWatermark(ctx context.Context, kind string) error {
	_, err := in.s.cat.conn.Exec(ctx, "SELECT pg_logical_emit_message(false, $1, $2)", watermarkPrefix, kind+":"+in.id)
	if err != nil {
		return fmt.Errorf("re-snapshot: write %s watermark: %w", kind, err)
	}
	return nil
}

// observe drops the buffered chunk row of a key the stream changed inside the window, or before
// it by a transaction the chunk's snapshot did not see.
func (in *incremental) observe(t *change.Table, row change.Row) {
	if in == nil || in.reader == nil || t.QualifiedName() != in.reader.t.QualifiedName() {
		return
	}
	if in.phase == phaseOpen || (in.phase == phaseWaitLow && !in.snap.visible(uint32(in.s.txn.TxID))) {
		in.dropped[rowKey(in.reader.t, row)] = true
	}
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
	if in == nil || id != in.id {
		return nil // a watermark of a chunk from before a restart
	}
	switch {
	case kind == "low" && in.phase == phaseWaitLow:
		in.phase = phaseOpen
	case kind == "high" && in.phase == phaseOpen:
		return in.flush(ctx, lsn)
	}
	return nil
}

// flush publishes the chunk rows the window left, then records the progress once Kafka has them.
// The rows carry the high watermark's position: they are the table's state there, which keeps
// last-write-wins targets correct.
func (in *incremental) flush(ctx context.Context, at pglogrepl.LSN) error {
	req := in.active()
	for _, row := range in.buffer {
		if in.dropped[rowKey(in.reader.t, row)] {
			continue
		}
		ev := in.s.event(change.OpRead, in.reader.t)
		ev.Source.Snapshot, ev.Source.LSN, ev.Source.TxID = "incremental", int64(at), 0
		ev.Source.TsMs = time.Now().UnixMilli()
		ev.After = row
		if err := in.s.em.emit(ctx, ev); err != nil {
			return err
		}
	}
	if err := in.s.em.tr.drain(ctx); err != nil {
		return err
	}
	in.phase = phaseIdle
	req.Rows += int64(len(in.buffer))
	if len(in.buffer) > 0 {
		req.LastKey = in.last
	}
	if len(in.buffer) < in.s.c.pg.SnapshotChunk {
		in.s.c.log.Info("re-snapshot done", zap.String("table", req.Table), zap.Int64("rows", req.Rows))
		return in.finish(ctx)
	}
	return in.save(ctx, in.state)
}

func (in *incremental) finish(ctx context.Context) error {
	req := in.state.Queue[0]
	req.Done = true
	in.state.Queue = in.state.Queue[1:]
	in.state.Done = append(in.state.Done, req)
	if len(in.state.Done) > 20 {
		in.state.Done = in.state.Done[len(in.state.Done)-20:]
	}
	in.reader, in.buffer = nil, nil
	return in.save(ctx, in.state)
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
