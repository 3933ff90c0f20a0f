package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/backflow-dev/backflow/pkg/change"
)

// snapshotter reads the captured tables as of the slot's consistent point and publishes every
// row as an op=r event. Readers, each on a connection of its own, read tables and key ranges of
// large tables in parallel, chunk after chunk without waiting for Kafka; one goroutine emits
// their chunks as they come and records a range's progress only once Kafka has acknowledged
// every record up to its chunk, so a restart resumes each range after its last acknowledged key.
type snapshotter struct {
	c     *Capture
	cat   *catalog
	em    *emitter
	store *stateStore
	state *snapshotState
	lsn   pglogrepl.LSN
	start time.Time
	saver *stateSaver
}

// snapTable is a table being snapshotted.
type snapTable struct {
	name   string
	reader *chunkReader
	prog   *tableProgress
	pl     *progressLog
	left   int // ranges not done
}

// rangeWork is a range for a reader: where it starts is copied here, since the range's progress
// belongs to the emitting goroutine.
type rangeWork struct {
	tbl *snapTable
	rng *rangeProgress
	at  keyBounds
}

// chunkRead is a chunk of a range, read and encoded (recs set) or handed to Kafka (seq set:
// every record below seq must be acknowledged before the chunk counts).
type chunkRead struct {
	w  *rangeWork
	ev *change.Event // the event its records share
	// rows are its rows' records, ready to produce but for their timestamp; dead are the dead
	// letters written in place of the rows that could not be: a record of a chunk takes a
	// pointer, not a copy of all that an encodedEvent holds.
	rows []*recordSlot
	dead []encodedEvent
	n    int
	// changes is how many of its rows are records (the others, with a NULL key, dead letters):
	// counted as captured changes once Kafka has the chunk.
	changes int
	last    []string
	end     bool // the range has no row after this chunk
	seq     uint64
}

// run snapshots every table not yet done. exported is the snapshot name returned by
// CREATE_REPLICATION_SLOT, valid only while the replication connection stays idle (it does until
// run returns: streaming starts after the snapshot); it is empty when resuming after a crash, in
// which case rows are read as of now and the slot replays every change since its consistent
// point after them (duplicates possible, loss not).
func (s *snapshotter) run(ctx context.Context, tables [][2]string, exported string) error {
	work, err := s.plan(ctx, tables)
	if err != nil {
		return err
	}
	if len(work) > 0 {
		if err := s.read(ctx, work, exported); err != nil {
			return err
		}
	}
	for _, w := range work {
		if !w.rng.Done { // the readers ended without error: they read every range to its end
			return fmt.Errorf("snapshot %s: a key range was left unread (from %v below %v)", w.tbl.name, w.rng.From, w.rng.Below)
		}
	}
	s.state.Done = true
	return s.store.save(ctx, s.state)
}

// plan prepares the tables not done, splitting those not started into key ranges, and returns
// the ranges left to read.
func (s *snapshotter) plan(ctx context.Context, tables [][2]string) ([]*rangeWork, error) {
	var work []*rangeWork
	for _, st := range tables {
		qn := st[0] + "." + st[1]
		prog := s.state.Tables[qn]
		if prog == nil {
			prog = &tableProgress{}
			s.state.Tables[qn] = prog
		}
		if prog.Done {
			continue
		}
		tbl, err := s.prepare(ctx, st[0], st[1], prog)
		if err != nil {
			return nil, err
		}
		for _, r := range prog.Ranges {
			if !r.Done {
				tbl.left++
				work = append(work, &rangeWork{tbl: tbl, rng: r, at: r.bounds()})
			}
		}
		if tbl.left == 0 {
			s.tableDone(tbl)
		}
	}
	return work, nil
}

func (s *snapshotter) prepare(ctx context.Context, schema, name string, prog *tableProgress) (*snapTable, error) {
	qn := schema + "." + name
	t, err := s.cat.table(ctx, schema, name)
	if err != nil {
		return nil, err
	}
	if err := s.em.ensureTopic(ctx, t); err != nil {
		return nil, err
	}
	reader, err := newChunkReader(ctx, s.cat, t, s.c.pg.SnapshotChunk, "")
	if err != nil {
		return nil, err
	}
	estimate := estimateRows(ctx, s.cat.conn, schema, name, s.c.log)
	if len(prog.ranges()) == 0 {
		if prog.Ranges, err = splitRanges(ctx, s.cat.conn, t, s.rangesFor(estimate)); err != nil {
			return nil, err
		}
	}
	s.c.log.Info("snapshot table", zap.String("table", qn), zap.Int64("rows_done", prog.Rows),
		zap.Int64("rows_estimated", estimate), zap.Int("ranges", len(prog.Ranges)))
	return &snapTable{name: qn, reader: reader, prog: prog, pl: newProgressLog(qn, s.c.log, s.c.metrics, estimate, prog.Rows)}, nil
}

// rangesFor is how many ranges a table of about estimate rows is read in: one per reader, but
// no range shorter than a chunk.
func (s *snapshotter) rangesFor(estimate int64) int {
	return int(max(1, min(int64(s.c.pg.SnapshotParallelism), estimate/int64(max(s.c.pg.SnapshotChunk, 1)))))
}

// read runs the readers over the ranges and emits what they read.
func (s *snapshotter) read(ctx context.Context, work []*rangeWork, exported string) error {
	queue := make(chan *rangeWork, len(work))
	for _, w := range work {
		queue <- w
	}
	close(queue)
	readers := max(1, min(s.c.pg.SnapshotParallelism, len(work)))
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(rctx)
	chunks := make(chan chunkRead, readers)
	for range readers {
		g.Go(func() error { return s.readRanges(gctx, exported, queue, chunks) })
	}
	readErr := make(chan error, 1)
	go func() {
		readErr <- g.Wait()
		close(chunks)
	}()
	s.saver = startStateSaver(ctx, s.store)
	err := s.emitChunks(ctx, chunks)
	if serr := s.saver.close(); err == nil {
		err = serr
	}
	cancel() // on an emit failure, the readers stop
	if rerr := <-readErr; err == nil {
		err = rerr
	}
	return err
}

// readRanges reads ranges from queue until it is empty, on a connection of its own inside a
// REPEATABLE READ transaction that imports the exported snapshot: every reader sees the table
// exactly as of the slot's consistent point. Readers also encode their rows: decoding and
// encoding are most of a snapshot's work, and they run in parallel here.
func (s *snapshotter) readRanges(ctx context.Context, exported string, queue <-chan *rangeWork, out chan<- chunkRead) error {
	conn, err := s.c.connect(ctx, false)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := beginSnapshot(ctx, conn, exported)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	for w := range queue {
		r := *w.tbl.reader
		r.dec = newDecoder() // a decoder serves one goroutine
		for at := w.at; ; {
			c, err := s.readChunk(ctx, tx, &r, at)
			if err != nil {
				return fmt.Errorf("snapshot %s: %w", w.tbl.name, err)
			}
			c.w = w
			select {
			case out <- c:
			case <-ctx.Done():
				return ctx.Err()
			}
			if c.end {
				break
			}
			at = keyBounds{after: c.last, below: at.below}
		}
	}
	return nil
}

// readChunk reads and encodes the chunk of r within at. Its records share one read event: a
// record keeps its event for what describes the change (table, op, position), never its row;
// and one codec.RowEncoder writes what is the same in all of them once, and each row's columns
// from their text (textRow). Kafka records are allocated slabBlock at a time rather than one by
// one, and their keys and values cut from a byteSlab's blocks.
func (s *snapshotter) readChunk(ctx context.Context, tx pgx.Tx, r *chunkReader, at keyBounds) (chunkRead, error) {
	ev := new(change.Event)
	*ev = s.event(r.t, time.Now().UnixMilli())
	topic := s.em.topic(r.t)
	enc, err := s.em.enc.Rows(ctx, topic, ev)
	if err != nil {
		return chunkRead{}, err
	}
	rows := make([]*recordSlot, 0, r.size)
	var dead []encodedEvent
	var slots []recordSlot
	var mem byteSlab
	// A row that cannot be decoded or encoded would fail every run at this chunk: a dead letter
	// takes its place, with the row as PostgreSQL wrote it.
	bad := func(raw [][]byte, err error) {
		if ue := (undecodableError{}); errors.As(err, &ue) {
			err = ue.err // what capture could not decode says it all
		} else {
			err = fmt.Errorf("encode %s event of %s: %w", ev.Op, r.t.QualifiedName(), err)
		}
		dead = append(dead, encodedEvent{ev: ev, topic: topic, callerCounts: true, undecodable: err.Error(), raw: r.rawJSON(raw)})
	}
	row := &textRow{cols: r.t.Columns, dec: r.dec}
	n, last, err := r.eachRaw(ctx, tx, at, func(raw [][]byte) error {
		if col, ok := r.nullKey(raw); ok {
			dead = append(dead, encodedEvent{ev: ev, topic: topic, callerCounts: true, nullCol: col})
			return nil
		}
		row.raw = raw
		key, value, err := enc.EncodeFrom(ctx, row)
		if err != nil {
			bad(raw, err)
			return nil
		}
		if len(slots) == 0 {
			slots = make([]recordSlot, slabBlock)
		}
		slot := &slots[0]
		slots = slots[1:]
		slot.rec = kgo.Record{Topic: topic, Key: mem.copy(key), Value: mem.copy(value)}
		rows = append(rows, slot)
		return nil
	})
	if err != nil {
		return chunkRead{}, err
	}
	return chunkRead{ev: ev, rows: rows, dead: dead, n: n, changes: len(rows), last: last, end: n < r.size}, nil
}

// byteSlab hands out copies of byte slices carved from blocks of slabBytes: a snapshot's keys
// and values, with an allocation per block rather than two per row, in memory the garbage
// collector does not scan. A block lives until the last record in it is acknowledged, which
// is about when its neighbours are.
type byteSlab struct{ free []byte }

// slabBytes keeps blocks within the allocator's size classes, as slabBlock does.
const slabBytes = 32 << 10

// copy returns a copy of b (nil for nil).
func (s *byteSlab) copy(b []byte) []byte {
	if b == nil {
		return nil
	}
	if len(b) > slabBytes/4 {
		return slices.Clone(b) // a large row gets its own, wasting no block
	}
	if len(b) > len(s.free) {
		s.free = make([]byte, slabBytes)
	}
	out := s.free[:len(b):len(b)]
	copy(out, b)
	s.free = s.free[len(b):]
	return out
}

// beginSnapshot opens a read-only REPEATABLE READ transaction on the exported snapshot (on a
// snapshot of its own when exported is empty).
func beginSnapshot(ctx context.Context, conn *pgx.Conn, exported string) (pgx.Tx, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("begin snapshot transaction: %w", err)
	}
	if exported != "" {
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+quoteLiteral(exported)); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("import exported snapshot %s: %w", exported, err)
		}
	}
	return tx, nil
}

// emitChunks publishes the chunks as they come, without waiting for Kafka between them (the
// tracker's max_in_flight is the bound), and records each one's progress once acknowledged.
func (s *snapshotter) emitChunks(ctx context.Context, in <-chan chunkRead) error {
	var sent []chunkRead
	for c := range in {
		now := time.Now() // a chunk's records, produced in a burst, share one clock read
		for _, rec := range c.dead {
			if err := s.em.emitEncoded(ctx, rec); err != nil {
				return fmt.Errorf("snapshot %s: %w", c.w.tbl.name, err)
			}
		}
		for _, slot := range c.rows {
			r := &slot.rec
			rec := encodedEvent{ev: c.ev, topic: r.Topic, key: r.Key, value: r.Value, slot: slot, ts: now, callerCounts: true}
			if err := s.em.emitEncoded(ctx, rec); err != nil {
				return fmt.Errorf("snapshot %s: %w", c.w.tbl.name, err)
			}
		}
		c.rows, c.dead, c.seq = nil, nil, s.em.tr.nextSeq()
		sent = append(sent, c)
		var err error
		if sent, err = s.settle(ctx, sent); err != nil {
			return err
		}
	}
	if err := s.em.tr.drain(ctx); err != nil {
		return err
	}
	_, err := s.settle(ctx, sent)
	return err
}

// settle records the progress of the chunks Kafka has acknowledged (sent is in emission order)
// and hands it to the saver; it returns the chunks still waiting.
func (s *snapshotter) settle(ctx context.Context, sent []chunkRead) ([]chunkRead, error) {
	i := 0
	now := time.Now()
	for ; i < len(sent) && s.em.tr.ackedBelow(sent[i].seq); i++ {
		c := sent[i]
		tbl, r := c.w.tbl, c.w.rng
		if c.n > 0 {
			r.LastKey = c.last
			r.Rows += int64(c.n)
			tbl.prog.Rows += int64(c.n)
		}
		tbl.pl.acked(c.n, tbl.prog.Rows, now) // counted once Kafka has them, like capture's changes
		s.em.countAcked(c.ev, c.changes, now)
		if c.end {
			r.Done = true
			if tbl.left--; tbl.left == 0 {
				s.tableDone(tbl)
			}
		}
	}
	if i > 0 {
		b, err := json.Marshal(s.state)
		if err != nil {
			return nil, fmt.Errorf("snapshot state: %w", err)
		}
		if err := s.saver.offer(b); err != nil {
			return nil, err
		}
	}
	return sent[i:], nil
}

// stateSaver writes snapshot states to the state topic in the background, in order, the latest
// only: emission never waits for a save, and a state not written yet is replaced by a newer one.
// A crash thus re-reads about what was in flight to Kafka and one save's round trip of each range.
type stateSaver struct {
	pending chan []byte // holds at most the latest state not taken yet
	done    chan struct{}
	mu      sync.Mutex
	err     error
}

func startStateSaver(ctx context.Context, store *stateStore) *stateSaver {
	sv := &stateSaver{pending: make(chan []byte, 1), done: make(chan struct{})}
	go func() {
		defer close(sv.done)
		for b := range sv.pending {
			if err := store.saveKey(ctx, store.key, json.RawMessage(b)); err != nil {
				sv.mu.Lock()
				sv.err = err
				sv.mu.Unlock()
				return
			}
		}
	}()
	return sv
}

// offer queues state b for saving, replacing one still waiting; it returns a failed save's error.
// One goroutine offers: after the receive below the channel is empty, so the send never blocks.
func (sv *stateSaver) offer(b []byte) error {
	sv.mu.Lock()
	err := sv.err
	sv.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case <-sv.pending:
	default:
	}
	sv.pending <- b
	return nil
}

// close waits until the last state offered is saved and returns the first save error.
func (sv *stateSaver) close() error {
	close(sv.pending)
	<-sv.done
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return sv.err
}

func (s *snapshotter) tableDone(tbl *snapTable) {
	tbl.prog.Done = true
	tbl.pl.done()
	s.c.log.Info("snapshot table done", zap.String("table", tbl.name), zap.Int64("rows", tbl.prog.Rows))
}

// slabBlock is how many record slots readChunk allocates at once: blocks stay in the
// allocator's size classes (under 32 KiB), whose memory is reused, where a chunk's worth would
// come from fresh pages, zeroed and faulted in; and a block is freed as soon as its records are
// acknowledged rather than with the chunk's last one.
const slabBlock = 64

func (s *snapshotter) event(t *change.Table, now int64) change.Event {
	return change.Event{
		Op:    change.OpRead,
		Table: t,
		Source: change.Source{
			Connector: "postgresql", Name: s.c.prefix, DB: s.c.db, Schema: t.Schema, Table: t.Name,
			LSN: int64(s.lsn), TsMs: s.start.UnixMilli(), Snapshot: "true",
		},
		TsMs: now,
	}
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
