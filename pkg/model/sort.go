package model

import (
	"bufio"
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// sortRunBytes bounds the entries a sorter holds in memory before it writes them, sorted, to a
// run file.
const sortRunBytes = 8 << 20

// sortEntry is one record of a model's topic: its state key, offset, and row hash unless it
// deletes the key; kh is the key's hash when the sorter is hashed.
type sortEntry struct {
	key  []byte
	kh   uint64
	off  int64
	hash uint64
	live bool
}

// compareEntries orders entries by key hash (zero unless hashed), key, then offset: the order of
// a state file.
func compareEntries(a, b sortEntry) int {
	switch {
	case a.kh < b.kh:
		return -1
	case a.kh > b.kh:
		return 1
	}
	if c := bytes.Compare(a.key, b.key); c != 0 {
		return c
	}
	switch {
	case a.off < b.off:
		return -1
	case a.off > b.off:
		return 1
	}
	return 0
}

// sorter is an external sort of topic records by key then offset: the records of one key are
// in one partition, so its last offset is its last record. A hashed sorter sorts by key hash
// first, the order of a hash-ordered state.
type sorter struct {
	dir    string
	hashed bool
	limit  int // bytes of entries per run; sortRunBytes when 0
	buf    []sortEntry
	bytes  int
	runs   []*os.File
}

func (s *sorter) add(e sortEntry) error {
	if s.hashed {
		e.kh = keyHash(e.key)
	}
	s.buf = append(s.buf, e)
	limit := s.limit
	if limit == 0 {
		limit = sortRunBytes
	}
	if s.bytes += len(e.key) + 64; s.bytes >= limit {
		return s.flush()
	}
	return nil
}

// flush writes the buffered entries, sorted, to a new run file.
func (s *sorter) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	slices.SortFunc(s.buf, compareEntries)
	f, err := os.CreateTemp(s.dir, "rebuild-*")
	if err != nil {
		return fmt.Errorf("model rebuild: %w", err)
	}
	s.runs = append(s.runs, f)
	w := bufio.NewWriterSize(f, 1<<16)
	var b [binary.MaxVarintLen64*2 + 9]byte
	for _, e := range s.buf {
		n := binary.PutUvarint(b[:], uint64(len(e.key)))
		_, _ = w.Write(b[:n])
		_, _ = w.Write(e.key)
		n = binary.PutVarint(b[:], e.off)
		binary.BigEndian.PutUint64(b[n:], e.hash)
		b[n+8] = 0
		if e.live {
			b[n+8] = 1
		}
		_, _ = w.Write(b[:n+9])
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("model rebuild: write %s: %w", f.Name(), err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("model rebuild: %w", err)
	}
	s.buf, s.bytes = s.buf[:0], 0
	return nil
}

// merge calls fn with the last entry of every key, in key order.
func (s *sorter) merge(fn func(sortEntry) error) error {
	if err := s.flush(); err != nil {
		return err
	}
	h := &runHeap{}
	for _, f := range s.runs {
		r := &runReader{r: bufio.NewReaderSize(f, 1<<16), hashed: s.hashed}
		if ok, err := r.next(); err != nil {
			return err
		} else if ok {
			h.items = append(h.items, r)
		}
	}
	heap.Init(h)
	var last sortEntry
	have := false
	for h.Len() > 0 {
		r := h.items[0]
		e := r.cur
		if have && !bytes.Equal(e.key, last.key) {
			if err := fn(last); err != nil {
				return err
			}
		}
		last, have = e, true
		ok, err := r.next()
		if err != nil {
			return err
		}
		if ok {
			heap.Fix(h, 0)
		} else {
			heap.Pop(h)
		}
	}
	if have {
		return fn(last)
	}
	return nil
}

func (s *sorter) close() {
	for _, f := range s.runs {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}
}

type runReader struct {
	r      *bufio.Reader
	hashed bool
	cur    sortEntry
}

// next reads the next entry into cur; false at the end of the run.
func (r *runReader) next() (bool, error) {
	n, err := binary.ReadUvarint(r.r)
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("model rebuild: read a run: %w", err)
	}
	key := make([]byte, n) // kept by merge as the last entry: not reused
	if _, err := io.ReadFull(r.r, key); err != nil {
		return false, fmt.Errorf("model rebuild: read a run: %w", err)
	}
	off, err := binary.ReadVarint(r.r)
	if err != nil {
		return false, fmt.Errorf("model rebuild: read a run: %w", err)
	}
	var b [9]byte
	if _, err := io.ReadFull(r.r, b[:]); err != nil {
		return false, fmt.Errorf("model rebuild: read a run: %w", err)
	}
	r.cur = sortEntry{key: key, off: off, hash: binary.BigEndian.Uint64(b[:8]), live: b[8] == 1}
	if r.hashed {
		r.cur.kh = keyHash(key)
	}
	return true, nil
}

// runHeap orders run readers by their current entry.
type runHeap struct{ items []*runReader }

func (h *runHeap) Len() int           { return len(h.items) }
func (h *runHeap) Less(i, j int) bool { return compareEntries(h.items[i].cur, h.items[j].cur) < 0 }
func (h *runHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *runHeap) Push(x any)         { h.items = append(h.items, x.(*runReader)) }
func (h *runHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}
