package model

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// stateMagic starts every state file; the number is the format's version. Version 1 files are
// in key order; version 2 adds a line naming the order, "order hash" (see stateOrder).
const (
	stateMagic  = "backflow-model-state 1\n"
	stateMagic2 = "backflow-model-state 2\n"
)

// A state file holds the last committed result of a model as (key, row hash) entries, after a
// header naming the key encoding (keyEnc), in one of two orders:
//
//   - key order (integer keys, version 1): strictly increasing byte order of the key, which is
//     the order of the query's ORDER BY;
//   - hash order (any other key, version 2): by the xxhash of the key, then the key's bytes. The
//     query is read unordered and partitioned by that hash (see bucket.go), so PostgreSQL sorts
//     nothing, and the entries of any power-of-two partition of the hash range are contiguous.
//
// The hash covers the result's shape and every column's text, so any change to a row, or to the
// result's columns or types, changes it.
type entry struct {
	key  []byte
	kh   uint64 // keyHash(key) in a hash-ordered state, 0 otherwise
	hash uint64
}

// stateWriter writes a state file to a temporary name; commit makes it the state.
type stateWriter struct {
	f    *os.File
	w    *bufio.Writer
	sum  *xxhash.Digest
	path string // the final name
	enc  keyEnc
	// hashed is the state's order, hash order or key order (stateHashed of enc).
	hashed bool
	rows   int64
	last   []byte
	// lastKh is the key hash of last, in a hash-ordered state.
	lastKh uint64
	buf    [binary.MaxVarintLen64 + 8]byte
}

// stateHashed reports whether states of keys of this encoding are kept in hash order: every key
// with a non-integer column.
func stateHashed(enc keyEnc) bool { return strings.ContainsRune(string(enc), 't') }

// keyHash is the hash that orders and partitions hash-ordered states.
func keyHash(key []byte) uint64 { return xxhash.Sum64(key) }

func newStateWriter(path string, enc keyEnc) (*stateWriter, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("model state directory: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("model state file: %w", err)
	}
	sw := &stateWriter{f: f, w: bufio.NewWriterSize(f, 1<<16), sum: xxhash.New(), path: path, enc: enc, hashed: stateHashed(enc)}
	if _, err := sw.write([]byte(stateHeader(enc))); err != nil {
		sw.abort()
		return nil, err
	}
	return sw, nil
}

func (sw *stateWriter) write(b []byte) (int, error) {
	_, _ = sw.sum.Write(b)
	n, err := sw.w.Write(b)
	if err != nil {
		return n, fmt.Errorf("write model state %s: %w", sw.f.Name(), err)
	}
	return n, nil
}

// add appends an entry; keys must come in strictly increasing order.
func (sw *stateWriter) add(key []byte, hash uint64) error {
	var kh uint64
	if sw.hashed {
		kh = keyHash(key)
	}
	if sw.rows > 0 && (kh < sw.lastKh || kh == sw.lastKh && bytes.Compare(key, sw.last) <= 0) {
		return fmt.Errorf("model state out of order at key %q", key)
	}
	sw.last, sw.lastKh = append(sw.last[:0], key...), kh
	n := binary.PutUvarint(sw.buf[:], uint64(len(key)))
	if _, err := sw.write(sw.buf[:n]); err != nil {
		return err
	}
	if _, err := sw.write(key); err != nil {
		return err
	}
	binary.BigEndian.PutUint64(sw.buf[:8], hash)
	if _, err := sw.write(sw.buf[:8]); err != nil {
		return err
	}
	sw.rows++
	return nil
}

// checksum is the state's checksum as recorded in the commit record.
func (sw *stateWriter) checksum() string { return strconv.FormatUint(sw.sum.Sum64(), 16) }

// commit makes the written file the state, durably: fsync, rename over the old state, fsync the
// directory.
func (sw *stateWriter) commit() error {
	if err := sw.w.Flush(); err != nil {
		sw.abort()
		return fmt.Errorf("write model state %s: %w", sw.f.Name(), err)
	}
	if err := sw.f.Sync(); err != nil {
		sw.abort()
		return fmt.Errorf("sync model state %s: %w", sw.f.Name(), err)
	}
	if err := sw.f.Close(); err != nil {
		_ = os.Remove(sw.f.Name())
		return fmt.Errorf("close model state %s: %w", sw.f.Name(), err)
	}
	if err := os.Rename(sw.f.Name(), sw.path); err != nil {
		_ = os.Remove(sw.f.Name())
		return fmt.Errorf("replace model state %s: %w", sw.path, err)
	}
	dir, err := os.Open(filepath.Dir(sw.path))
	if err != nil {
		return fmt.Errorf("sync model state directory: %w", err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("sync model state directory: %w", err)
	}
	return nil
}

// abort removes the temporary file.
func (sw *stateWriter) abort() {
	_ = sw.f.Close()
	_ = os.Remove(sw.f.Name())
}

// stateHeader is the header of a state of keys of encoding enc: version 1 for key order, which
// earlier versions read too, version 2 for hash order.
func stateHeader(enc keyEnc) string {
	if stateHashed(enc) {
		return stateMagic2 + "key " + string(enc) + "\norder hash\n"
	}
	return stateMagic + "key " + string(enc) + "\n"
}

// stateReader reads a state file's entries in order.
type stateReader struct {
	f    *os.File
	r    *bufio.Reader
	cur  entry // valid until the next call of next
	done bool
	enc  keyEnc
	// hashed is the file's order: hash order, or key order (every version 1 file).
	hashed bool
	buf    []byte
	// sum and rows cover what was read so far: once done, the file's checksum and entries.
	sum  *xxhash.Digest
	rows int64
}

// checksum is the checksum of what was read; the file's once done.
func (sr *stateReader) checksum() string { return strconv.FormatUint(sr.sum.Sum64(), 16) }

// openState opens a state file; a missing file is an empty state.
func openState(path string) (*stateReader, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return &stateReader{done: true, sum: xxhash.New()}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open model state: %w", err)
	}
	sr := &stateReader{f: f, r: bufio.NewReaderSize(f, 1<<16), sum: xxhash.New()}
	if err := sr.header(); err != nil {
		sr.close()
		return nil, fmt.Errorf("model state %s: %w", path, err)
	}
	return sr, sr.next()
}

// header reads the header of either version, and adds it to the checksum.
func (sr *stateReader) header() error {
	magic := make([]byte, len(stateMagic))
	if _, err := io.ReadFull(sr.r, magic); err != nil || (string(magic) != stateMagic && string(magic) != stateMagic2) {
		return errors.New("not a state file of this version")
	}
	line, err := sr.r.ReadString('\n')
	enc, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "key ")
	if err != nil || !ok || strings.Trim(enc, "it") != "" {
		return errors.New("bad key encoding line")
	}
	sr.enc = keyEnc(enc)
	header := string(magic) + line
	if string(magic) == stateMagic2 {
		if line, err = sr.r.ReadString('\n'); err != nil || line != "order hash\n" {
			return errors.New("bad order line")
		}
		sr.hashed, header = true, header+line
	}
	_, _ = sr.sum.WriteString(header)
	return nil
}

// next moves to the next entry; done is set after the last.
func (sr *stateReader) next() error {
	if sr.done {
		return nil
	}
	n, err := binary.ReadUvarint(sr.r)
	if errors.Is(err, io.EOF) {
		sr.done = true
		return nil
	}
	if err != nil || n > 1<<24 {
		return fmt.Errorf("model state %s: corrupt entry", sr.f.Name())
	}
	// One buffer for every entry: callers copy what they keep (spilling copies into the file).
	if cap(sr.buf) < int(n)+8 {
		sr.buf = make([]byte, n+8, 2*n+8)
	}
	key := sr.buf[:n+8]
	if _, err := io.ReadFull(sr.r, key); err != nil {
		return fmt.Errorf("model state %s: truncated entry", sr.f.Name())
	}
	sr.cur = entry{key: key[:n:n], hash: binary.BigEndian.Uint64(key[n:])}
	if sr.hashed {
		sr.cur.kh = keyHash(sr.cur.key)
	}
	var lb [binary.MaxVarintLen64]byte
	_, _ = sr.sum.Write(lb[:binary.PutUvarint(lb[:], n)])
	_, _ = sr.sum.Write(key)
	sr.rows++
	return nil
}

func (sr *stateReader) close() {
	if sr.f != nil {
		_ = sr.f.Close()
	}
}

// fileChecksum returns the checksum and entry count of a state file, "" when it does not exist.
func fileChecksum(path string) (sum string, rows int64, err error) {
	sr, err := openState(path)
	if err != nil {
		return "", 0, err
	}
	defer sr.close()
	if sr.f == nil {
		return "", 0, nil
	}
	for !sr.done {
		if err := sr.next(); err != nil {
			return "", 0, err
		}
	}
	return sr.checksum(), sr.rows, nil
}
