package model

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/backflow-dev/backflow/pkg/change"
)

// spill holds a run's changes on disk between the query and the publishing: nothing is
// published before the whole result has been read and checked (a duplicate key in its last row
// refuses the run), and memory does not grow with the size of the diff.
type spill struct {
	f   *os.File
	w   *bufio.Writer
	n   map[change.Op]int64
	buf [binary.MaxVarintLen64]byte
}

// change is one spilled change: its op, state key, row hash and, but for deletes, the row's
// text.
type spilled struct {
	op   change.Op
	key  []byte
	hash uint64
	raw  [][]byte
}

func newSpill(dir string) (*spill, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("model state directory: %w", err)
	}
	f, err := os.CreateTemp(dir, "diff-*")
	if err != nil {
		return nil, fmt.Errorf("model diff file: %w", err)
	}
	return &spill{f: f, w: bufio.NewWriterSize(f, 1<<16), n: map[change.Op]int64{}}, nil
}

func (s *spill) uvarint(v uint64) {
	n := binary.PutUvarint(s.buf[:], v)
	_, _ = s.w.Write(s.buf[:n])
}

// add spills a change; write errors surface at rewind.
func (s *spill) add(op change.Op, key []byte, hash uint64, raw [][]byte) {
	s.n[op]++
	_ = s.w.WriteByte(op[0])
	s.uvarint(uint64(len(key)))
	_, _ = s.w.Write(key)
	var h [8]byte
	binary.BigEndian.PutUint64(h[:], hash)
	_, _ = s.w.Write(h[:])
	if op == change.OpDelete {
		return
	}
	s.uvarint(uint64(len(raw)))
	for _, v := range raw {
		if v == nil {
			s.uvarint(0)
			continue
		}
		s.uvarint(uint64(len(v)) + 1)
		_, _ = s.w.Write(v)
	}
}

// total is the number of changes spilled.
func (s *spill) total() int64 {
	var t int64
	for _, n := range s.n {
		t += n
	}
	return t
}

// counts returns the changes by op, for metrics and status.
func (s *spill) counts() map[string]int64 {
	out := map[string]int64{}
	for op, n := range s.n {
		out[string(op)] = n
	}
	return out
}

// each reads the changes back in the order they were spilled.
func (s *spill) each(fn func(spilled) error) error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("write model diff file: %w", err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("read model diff file: %w", err)
	}
	r := bufio.NewReaderSize(s.f, 1<<16)
	for {
		op, err := r.ReadByte()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read model diff file: %w", err)
		}
		c, err := readSpilled(r, change.Op([]byte{op}))
		if err != nil {
			return fmt.Errorf("read model diff file: %w", err)
		}
		if err := fn(c); err != nil {
			return err
		}
	}
}

func readSpilled(r *bufio.Reader, op change.Op) (spilled, error) {
	c := spilled{op: op}
	key, err := readBytes(r)
	if err != nil {
		return c, err
	}
	var h [8]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return c, err
	}
	c.key, c.hash = key, binary.BigEndian.Uint64(h[:])
	if op == change.OpDelete {
		return c, nil
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return c, err
	}
	c.raw = make([][]byte, n)
	for i := range c.raw {
		l, err := binary.ReadUvarint(r)
		if err != nil {
			return c, err
		}
		if l == 0 {
			continue
		}
		c.raw[i] = make([]byte, l-1)
		if _, err := io.ReadFull(r, c.raw[i]); err != nil {
			return c, err
		}
	}
	return c, nil
}

func readBytes(r *bufio.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	_, err = io.ReadFull(r, b)
	return b, err
}

// close removes the file.
func (s *spill) close() {
	_ = s.f.Close()
	_ = os.Remove(s.f.Name())
}
