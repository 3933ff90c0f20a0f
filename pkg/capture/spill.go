package capture

// spill keeps the transactions PostgreSQL streams before they commit (pgoutput protocol 2,
// "streaming 'on'") on local disk, one file per top-level transaction, until PostgreSQL says how
// each ends.
//
// Invariant: nothing of a streamed transaction reaches Kafka before its Stream Commit. Its
// change and relation messages go to its file only, in the order PostgreSQL sent them; at Stream
// Commit the file is read back and removed. A Stream Abort of the transaction removes the file
// unread; one of a subtransaction marks that subtransaction's changes to be skipped at replay. A
// file left by an earlier run is removed at start: PostgreSQL streams again, from its first
// change, every transaction that had not committed at the slot's confirmed position.
//
// A message is spilled in one of two forms (streamtxn.go chooses): as PostgreSQL sent it, read
// back through the very handlers a protocol 1 transaction goes through; or, for most changes,
// already decoded and encoded while the transaction streams, with the message itself beside the
// records, so that the commit only writes the commit's fields into them and produces them.
//
// Memory stays bounded whatever a transaction's size: per open transaction a buffered writer, the
// ids of its rolled-back subtransactions and the table shapes its records were encoded with; a
// replay reads one message at a time.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"

	"github.com/backflow-dev/backflow/pkg/change"
)

// spillExt names the files of streamed transactions; only these are removed at start.
const spillExt = ".spill"

// spillHeader is the fixed part of a spilled message: its length, WAL position and the xid of
// the (sub)transaction it belongs to, all big-endian.
const spillHeader = 4 + 8 + 4

// maxSpilledMessage bounds a message read back, so a damaged file fails clearly instead of
// allocating whatever its length field says. PostgreSQL's messages are below 1 GB.
const maxSpilledMessage = 1 << 30

// spillDiskError is a failure of the spill directory's files themselves (the directory
// removed, the disk full or failing): Capture stops streaming transactions in progress then,
// rather than failing at the same place run after run (RunWithRetry).
type spillDiskError struct{ err error }

func (e *spillDiskError) Error() string { return e.err.Error() }
func (e *spillDiskError) Unwrap() error { return e.err }

func diskError(format string, args ...any) error {
	return &spillDiskError{fmt.Errorf(format, args...)}
}

// spills are the open streamed transactions of one replication session, by top-level xid.
type spills struct {
	dir  string
	open map[uint32]*spillFile
	// shapes are the relation messages capture decoded last, by relation id, with the table each
	// gave: a streamed transaction describing a relation alike has its changes encoded as it
	// streams (streamtxn.go).
	shapes map[uint32]relShape
	// batch is the streamed changes waiting to be encoded (streamencode.go).
	batch streamBatch
}

// relShape is a relation message's description of a table (relShapeKey) and the table
// capture decoded from it.
type relShape struct {
	key string
	t   *change.Table
}

// spillFile is the file of one streamed transaction.
type spillFile struct {
	f       *os.File
	w       *bufio.Writer
	aborted map[uint32]bool // subtransactions rolled back: their changes are skipped at replay
	hdr     [spillHeader]byte
	// tables are the tables the transaction's records were encoded with, which its encoded
	// records name by index; using maps a relation id to the one its next changes are
	// encoded with, absent when they are spilled as PostgreSQL sent them.
	tables []spillTable
	using  map[uint32]int
}

// spillTable is a table encoded records of a streamed transaction were encoded with.
type spillTable struct {
	relID uint32
	t     *change.Table
}

// openSpills prepares dir for the streamed transactions of a session, removing the files an
// earlier run left there.
func openSpills(dir string) (*spills, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, diskError("spill directory %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, diskError("spill directory %s: %w", dir, err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), spillExt) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return nil, diskError("remove spill file left by an earlier run: %w", err)
			}
		}
	}
	return &spills{dir: dir, open: map[uint32]*spillFile{}, shapes: map[uint32]relShape{}}, nil
}

// pending reports whether a streamed transaction has begun and not ended yet.
func (sp *spills) pending() bool { return len(sp.open) > 0 }

// start begins the file of xid. A first segment starts it afresh: whatever an earlier stream of
// the same transaction left is PostgreSQL's to send again.
func (sp *spills) start(xid uint32, first bool) error {
	if sf, ok := sp.open[xid]; ok {
		if !first {
			return nil
		}
		sp.drop(xid, sf)
	}
	f, err := os.OpenFile(filepath.Join(sp.dir, strconv.FormatUint(uint64(xid), 10)+spillExt),
		os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return diskError("spill file of transaction %d: %w", xid, err)
	}
	// 64 KiB per open transaction: several may be streaming at once.
	sp.open[xid] = &spillFile{f: f, w: bufio.NewWriterSize(f, 64<<10), aborted: map[uint32]bool{}, using: map[uint32]int{}}
	return nil
}

// add appends a message of transaction xid, written by its (sub)transaction sub, at WAL position
// at: its type byte, then body, which is the message without the xid protocol 2 puts in front.
func (sp *spills) add(xid, sub uint32, at pglogrepl.LSN, typ byte, body []byte) error {
	sf, ok := sp.open[xid]
	if !ok {
		return fmt.Errorf("pgoutput message of streamed transaction %d outside a stream of it", xid)
	}
	binary.BigEndian.PutUint32(sf.hdr[0:], uint32(1+len(body)))
	binary.BigEndian.PutUint64(sf.hdr[4:], uint64(at))
	binary.BigEndian.PutUint32(sf.hdr[12:], sub)
	sf.w.Write(sf.hdr[:])
	sf.w.WriteByte(typ)
	if _, err := sf.w.Write(body); err != nil { // a bufio.Writer keeps its first error
		return diskError("write spill file %s: %w", sf.f.Name(), err)
	}
	return nil
}

// use sets the table the next changes of relation relID in transaction xid are encoded with as
// they stream; nil spills them as PostgreSQL sends them.
func (sp *spills) use(xid, relID uint32, t *change.Table) {
	sf, ok := sp.open[xid]
	if !ok {
		return
	}
	if t == nil {
		delete(sf.using, relID)
		return
	}
	for i, st := range sf.tables {
		if st.relID == relID && st.t == t {
			sf.using[relID] = i
			return
		}
	}
	sf.using[relID] = len(sf.tables)
	sf.tables = append(sf.tables, spillTable{relID: relID, t: t})
}

// using returns the table, and its index, the changes of relation relID in transaction xid are
// encoded with as they stream; false when they are spilled as PostgreSQL sent them.
func (sp *spills) using(xid, relID uint32) (int, *change.Table, bool) {
	sf, ok := sp.open[xid]
	if !ok {
		return 0, nil, false
	}
	i, ok := sf.using[relID]
	if !ok {
		return 0, nil, false
	}
	return i, sf.tables[i].t, true
}

// tables returns the tables the encoded records of transaction xid name by index.
func (sp *spills) tables(xid uint32) []spillTable {
	if sf, ok := sp.open[xid]; ok {
		return sf.tables
	}
	return nil
}

// abort ends sub: the whole transaction when sub is xid, else one subtransaction of it.
func (sp *spills) abort(xid, sub uint32) {
	sf, ok := sp.open[xid]
	if !ok {
		return // nothing of it was streamed to this session
	}
	if sub == xid {
		sp.drop(xid, sf)
		return
	}
	sf.aborted[sub] = true
}

// end removes the file of transaction xid, once read.
func (sp *spills) end(xid uint32) {
	if sf, ok := sp.open[xid]; ok {
		sp.drop(xid, sf)
	}
}

// read hands each message of committed transaction xid to fn, in the order PostgreSQL sent
// them, skipping those of rolled-back subtransactions. A transaction with no file had nothing
// streamed to this session. It touches nothing but the file and what start and abort recorded
// of the transaction, so it may run on another goroutine than the one receiving the stream
// (streamreplay.go), which removes the file once it is read (end).
func (sp *spills) read(xid uint32, fn func(at pglogrepl.LSN, msg []byte) error) error {
	sf, ok := sp.open[xid]
	if !ok {
		return nil
	}
	if err := sf.w.Flush(); err != nil {
		return diskError("write spill file %s: %w", sf.f.Name(), err)
	}
	if _, err := sf.f.Seek(0, io.SeekStart); err != nil {
		return diskError("read spill file %s: %w", sf.f.Name(), err)
	}
	r := bufio.NewReaderSize(sf.f, 256<<10)
	var hdr [spillHeader]byte
	var msg []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return diskError("read spill file %s: %w", sf.f.Name(), err)
		}
		n := binary.BigEndian.Uint32(hdr[0:])
		if n == 0 || n > maxSpilledMessage {
			return fmt.Errorf("spill file %s is damaged: a message of %d bytes", sf.f.Name(), n)
		}
		msg = grow(msg, int(n))
		if _, err := io.ReadFull(r, msg); err != nil {
			return diskError("read spill file %s: %w", sf.f.Name(), err)
		}
		// Relation messages of a rolled-back subtransaction go too, as PostgreSQL's own
		// subscriber drops them: pgoutput describes the relation again before the next change.
		if sf.aborted[binary.BigEndian.Uint32(hdr[12:])] {
			continue
		}
		if err := fn(pglogrepl.LSN(binary.BigEndian.Uint64(hdr[4:])), msg); err != nil {
			return err
		}
	}
}

// grow returns b resized to n, reusing its storage when it is large enough: handlers keep nothing
// of a message, as in protocol 1, where the connection reuses its buffer for the next one.
func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

func (sp *spills) drop(xid uint32, sf *spillFile) {
	delete(sp.open, xid)
	_ = sf.f.Close()
	_ = os.Remove(sf.f.Name()) // a file left behind is removed at the next start
}

// close removes the files of the transactions still open: the slot streams them again.
func (sp *spills) close() {
	_ = sp.batch.wait() // its goroutines write to the files
	for xid, sf := range sp.open {
		sp.drop(xid, sf)
	}
	// The directory is this cluster's and slot's: a capture of another cluster (a test's, a
	// benchmark's) would otherwise leave one behind at every start. Anything else in it keeps
	// it, and so does anything else in its place (a file there is the failure to report).
	if fi, err := os.Lstat(sp.dir); err == nil && fi.IsDir() {
		_ = os.Remove(sp.dir)
	}
}
