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
// row as an op=r event. Readers, each on a connection of its own, read tables and ranges of
// large tables (of pages, see pages.go, or of keys) in parallel, chunk after chunk without
// waiting for Kafka; one goroutine emits their chunks as they come and records a range's progress
// only once Kafka has acknowledged every record up to its chunk, so a restart resumes each range
// after its last acknowledged page or key.
type snapshotter struct {
	c     *Capture
	cat   *catalog
	em    *emitter
	store *stateStore
	state *snapshotState
	lsn   pglogrepl.LSN
	start time.Time
	saver *stateSaver
	// version is the server's server_version_num.
	version int
}

// snapTable is a table being snapshotted.
type snapTable struct {
	name   string
	reader *chunkReader
	prog   *tableProgress
	pl     *progressLog
	left   int // ranges (and rechecks) not done
	// estimate, pages and bytes, the table's estimated rows, its pages and its size with TOAST
	// when planned, size its chunks (chunkRows, pageStep).
	estimate, pages, bytes int64
}

// rangeWork is a range for a reader: where it starts is copied here, since the range's progress
// belongs to the emitting goroutine. A range of pages has pages set; a recheck of the pages an
// earlier run read (see pages.go) also has recheck set, and records no progress.
type rangeWork struct {
	tbl     *snapTable
	rng     *rangeProgress
	at      keyBounds
	pages   *pageWork
	recheck bool
}

// chunkRead is a chunk of a range, read and encoded (recs set) or handed to Kafka (seq set:
// every record below seq must be acknowledged before the chunk counts). A chunk's records go out
// in parts as they are read (see pieceBytes): every part but the last is a piece, which only
// carries records; the last carries the whole chunk's n, bytes and position.
type chunkRead struct {
	w     *rangeWork
	ev    *change.Event // the event its records share
	piece bool
	// rows are its rows' records, ready to produce but for their timestamp; dead are the dead
	// letters written in place of the rows that could not be: a record of a chunk takes a
	// pointer, not a copy of all that an encodedEvent holds.
	rows []*recordSlot
	dead []encodedEvent
	n    int
	// bytes is the size of its rows' records.
	bytes int64
	// changes is how many of its rows are records (the others, with a NULL key, dead letters):
	// counted as captured changes once Kafka has the chunk.
	changes int
	last    []string
	next    int64 // of a range of pages: the first page after the chunk
	end     bool  // the range has no row after this chunk
	seq     uint64
}

// run snapshots every table not yet done. exported is the snapshot name returned by
// CREATE_REPLICATION_SLOT, valid only while the replication connection stays idle (it does until
// run returns: streaming starts after the snapshot); it is empty when resuming after a crash, in
// which case rows are read as of now, in one snapshot all readers share, and the slot replays
// every change since its consistent point after them (duplicates possible, loss not).
func (s *snapshotter) run(ctx context.Context, tables [][2]string, exported string) error {
	shared, err := s.shareSnapshot(ctx, exported)
	if err != nil {
		return err
	}
	defer shared.close(ctx)
	work, err := s.plan(ctx, tables)
	if err != nil {
		return err
	}
	if len(work) > 0 {
		if err := s.read(ctx, work, shared.name); err != nil {
			return err
		}
	}
	for _, w := range work {
		if !w.recheck && !w.rng.Done { // the readers ended without error: they read every range to its end
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
			if pw := r.recheckWork(s.state.Xmin); pw != nil {
				tbl.left++
				work = append(work, &rangeWork{tbl: tbl, rng: r, pages: pw, recheck: true})
			}
			if !r.Done {
				tbl.left++
				work = append(work, &rangeWork{tbl: tbl, rng: r, at: r.bounds(), pages: r.pageWork()})
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
	tbl := &snapTable{name: qn, reader: reader, prog: prog, estimate: estimate}
	if tbl.bytes, err = tableBytes(ctx, s.cat.conn, t); err != nil {
		return nil, err
	}
	if err := s.split(ctx, tbl, t); err != nil {
		return nil, err
	}
	s.c.log.Info("snapshot table", zap.String("table", qn), zap.Int64("rows_done", prog.Rows),
		zap.Int64("rows_estimated", estimate), zap.Int("ranges", len(prog.Ranges)), zap.Bool("by_pages", prog.Filenode != 0))
	tbl.pl = newProgressLog(qn, s.c.log, s.c.metrics, estimate, prog.Rows)
	return tbl, nil
}

// split cuts a table not started into ranges: of pages when it can be read so, else of keys. A
// table started in key ranges resumes them; one started in page ranges and rewritten since, or
// no longer readable by pages, is started again.
func (s *snapshotter) split(ctx context.Context, tbl *snapTable, t *change.Table) error {
	prog := tbl.prog
	started := len(prog.ranges()) > 0
	if started && prog.Filenode == 0 {
		return nil
	}
	byPages, err := readsByPages(ctx, s.cat.conn, s.version, t)
	if err != nil {
		return err
	}
	if !byPages {
		if started {
			s.c.log.Warn("snapshot table can no longer be read by pages: it is read again from the start, by keys",
				zap.String("table", tbl.name))
		}
		prog.Filenode, prog.Rows = 0, 0
		prog.Ranges, err = splitRanges(ctx, s.cat.conn, t, s.rangesFor(tbl.estimate))
		return err
	}
	if tbl.pages, err = tablePages(ctx, s.cat.conn, t); err != nil {
		return err
	}
	node, err := relFilenode(ctx, s.cat.conn, t)
	if err != nil {
		return err
	}
	if started && prog.Filenode == node {
		return nil
	}
	if started {
		s.c.log.Warn("snapshot table was rewritten since its snapshot began (VACUUM FULL, CLUSTER or a swap): "+
			"its rows are on other pages now, so it is read again from the start", zap.String("table", tbl.name))
	}
	prog.Ranges, prog.Rows, prog.Filenode = splitPages(tbl.pages, s.rangesFor(tbl.estimate)), 0, node
	return nil
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
		read := s.readKeys
		if w.pages != nil {
			read = s.readPages
		}
		if err := read(ctx, tx, &r, w, out); err != nil {
			return fmt.Errorf("snapshot %s: %w", w.tbl.name, err)
		}
	}
	return nil
}

// readKeys reads a key range chunk after chunk into out, chunks of r.size rows or fewer when
// they are wide (chunkRows).
func (s *snapshotter) readKeys(ctx context.Context, tx pgx.Tx, r *chunkReader, w *rangeWork, out chan<- chunkRead) error {
	sizer := newChunkRows(r.size, chunkBytes, w.tbl.bytes, w.tbl.estimate)
	for at := w.at; ; {
		r.size = sizer.next() // r is this range's copy
		c, err := s.readChunk(ctx, r, s.pieces(ctx, w, out), func(fn func(raw [][]byte) error) (int, []string, error) {
			return r.eachRaw(ctx, tx, at, fn)
		})
		if err != nil {
			return err
		}
		sizer.saw(c.n, c.bytes)
		c.w, c.end = w, c.n < r.size
		if err := sendChunk(ctx, out, c); err != nil || c.end {
			return err
		}
		at = keyBounds{after: c.last, below: at.below}
	}
}

// readPages reads a page range chunk after chunk into out, up to the table's last page as of
// now when the range is open.
func (s *snapshotter) readPages(ctx context.Context, tx pgx.Tx, r *chunkReader, w *rangeWork, out chan<- chunkRead) error {
	end := w.pages.end
	if end == 0 {
		var err error
		if end, err = tablePages(ctx, tx, r.t); err != nil {
			return err
		}
	}
	step := newPageStep(w.tbl.estimate, w.tbl.pages)
	sizer := newChunkRows(r.size, chunkBytes, w.tbl.bytes, w.tbl.estimate)
	for at := w.pages.from; ; {
		below := min(max(at, end), at+step.next(sizer.next()))
		c, err := s.readChunk(ctx, r, s.pieces(ctx, w, out), func(fn func(raw [][]byte) error) (int, []string, error) {
			n, err := r.eachPages(ctx, tx, at, below, w.pages.xmin, fn)
			return n, nil, err
		})
		if err != nil {
			return err
		}
		step.saw(below-at, c.n)
		sizer.saw(c.n, c.bytes)
		c.w, c.next, c.end = w, below, below >= end
		if err := sendChunk(ctx, out, c); err != nil || c.end {
			return err
		}
		at = below
	}
}

// pieces sends a chunk's pieces of range w to out.
func (s *snapshotter) pieces(ctx context.Context, w *rangeWork, out chan<- chunkRead) func(chunkRead) error {
	return func(c chunkRead) error {
		c.w, c.piece = w, true
		return sendChunk(ctx, out, c)
	}
}

func sendChunk(ctx context.Context, out chan<- chunkRead, c chunkRead) error {
	select {
	case out <- c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// readChunk encodes the chunk read calls it with (each row's text) and returns it with what read
// returns: how many rows and the last one's key. Every pieceBytes of records it hands what it has
// encoded so far to piece, and returns the rest. Its records share one read event: a
// record keeps its event for what describes the change (table, op, position), never its row;
// and one codec.RowEncoder writes what is the same in all of them once, and each row's columns
// from their text (textRow). Kafka records are allocated slabBlock at a time rather than one by
// one, and their keys and values cut from a byteSlab's blocks.
func (s *snapshotter) readChunk(ctx context.Context, r *chunkReader, piece func(chunkRead) error,
	read func(fn func(raw [][]byte) error) (int, []string, error)) (chunkRead, error) {
	ev := new(change.Event)
	*ev = s.event(r.t, time.Now().UnixMilli())
	topic := s.em.topic(r.t)
	enc, err := s.em.enc.Rows(ctx, topic, ev)
	if err != nil {
		return chunkRead{}, err
	}
	rows := make([]*recordSlot, 0, min(r.size, 1024))
	var dead []encodedEvent
	var slots []recordSlot
	var mem byteSlab
	var size, partSize int64
	// A row that cannot be decoded or encoded would fail every run at this chunk: a dead letter
	// takes its place, with the row as PostgreSQL wrote it.
	bad := func(raw [][]byte, err error) {
		if ue := (undecodableError{}); errors.As(err, &ue) {
			err = ue.err // what capture could not decode says it all
		} else {
			err = fmt.Errorf("encode %s event of %s: %w", ev.Op, r.t.QualifiedName(), err)
		}
		dead = append(dead, encodedEvent{ev: ev, topic: topic, callerCounts: true, undecodable: err.Error(), raw: r.rawJSON(raw, r.binary)})
	}
	row := &textRow{cols: r.t.Columns, binary: r.binary, dec: r.dec}
	n, last, err := read(func(raw [][]byte) error {
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
		size += int64(len(key) + len(value))
		partSize += int64(len(key) + len(value))
		rows = append(rows, slot)
		if partSize < s.c.pieceBytes {
			return nil
		}
		err = piece(chunkRead{ev: ev, rows: rows, dead: dead, changes: len(rows)})
		rows, dead, partSize = make([]*recordSlot, 0, len(rows)), nil, 0
		return err
	})
	if err != nil {
		return chunkRead{}, err
	}
	return chunkRead{ev: ev, rows: rows, dead: dead, n: n, bytes: size, changes: len(rows), last: last}, nil
}

// pieceBytes is about how many bytes of records a chunk's piece holds: a chunk is produced while
// it is read, in pieces, rather than once read whole. Records then wait in the readers for a
// piece rather than a chunk: the snapshot bench's peak RSS went from about 152 to 113 MB, at
// the same speed.
const pieceBytes = 256 << 10

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

// sharedSnapshot is the snapshot every reader of a run imports, held by a transaction of its own
// until the run ends.
type sharedSnapshot struct {
	conn    *pgx.Conn
	tx      pgx.Tx
	name    string
	version int // server_version_num
}

// shareSnapshot opens the run's snapshot: the exported one, or when there is none a new one it
// exports. It also reads the server's version and, the first time, the snapshot's xmin
// (snapshotState.Xmin), which a resumed run's rechecks of pages start from.
func (s *snapshotter) shareSnapshot(ctx context.Context, exported string) (*sharedSnapshot, error) {
	conn, err := s.c.connect(ctx, false)
	if err != nil {
		return nil, err
	}
	sh := &sharedSnapshot{conn: conn, name: exported}
	if err := sh.open(ctx, s.state); err != nil {
		sh.close(ctx)
		return nil, err
	}
	s.version = sh.version
	return sh, nil
}

func (sh *sharedSnapshot) open(ctx context.Context, st *snapshotState) error {
	var err error
	if sh.tx, err = beginSnapshot(ctx, sh.conn, sh.name); err != nil {
		return err
	}
	if err := sh.tx.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&sh.version); err != nil {
		return fmt.Errorf("read server_version_num: %w", err)
	}
	if sh.name == "" {
		if err := sh.tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&sh.name); err != nil {
			return fmt.Errorf("export a snapshot for the readers: %w", err)
		}
	}
	if st.Xmin == "" && sh.version >= pagesSince {
		if err := sh.tx.QueryRow(ctx, "SELECT pg_snapshot_xmin(pg_current_snapshot())::text").Scan(&st.Xmin); err != nil {
			return fmt.Errorf("read the snapshot's xmin: %w", err)
		}
	}
	return nil
}

func (sh *sharedSnapshot) close(ctx context.Context) {
	if sh.tx != nil {
		_ = sh.tx.Rollback(context.WithoutCancel(ctx))
	}
	_ = sh.conn.Close(context.WithoutCancel(ctx))
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
	if err := s.em.drain(ctx); err != nil {
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
		if c.piece { // no progress: its chunk's last part brings it
			s.em.countAcked(c.ev, c.changes, now)
			continue
		}
		switch {
		case c.w.recheck: // rows read again: no progress of their range, no rows of the table's
		case r.Pages != nil:
			r.Pages.Next = c.next
			r.Rows += int64(c.n)
			tbl.prog.Rows += int64(c.n)
		case c.n > 0:
			r.LastKey = c.last
			r.Rows += int64(c.n)
			tbl.prog.Rows += int64(c.n)
		}
		tbl.pl.acked(c.n, tbl.prog.Rows, now) // counted once Kafka has them, like capture's changes
		s.em.countAcked(c.ev, c.changes, now)
		if c.end {
			if !c.w.recheck {
				r.Done = true
			}
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
