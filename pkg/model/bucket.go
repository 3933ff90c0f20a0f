package model

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"slices"
)

// A model whose key has a non-integer column is read unordered: sorting a million text keys
// would cost PostgreSQL more than reading them. Its rows are partitioned by the hash of their
// state key into bucket files; each bucket, small enough to sort in memory, is then sorted by
// (key hash, key), and the buckets taken in order make the whole result sorted as its
// hash-ordered state, which the run merges with it as in key order.

// bucketRows is the number of rows a bucket aims at; maxBuckets bounds the open files.
const (
	bucketRows = 32 << 10
	maxBuckets = 512
)

// bucketCount is the number of buckets, a power of two, for about rows rows, per in each.
func bucketCount(rows, per int64) int {
	n := 1
	if rows > per {
		n = 1 << min(bits.Len64(uint64((rows-1)/per)), 20)
	}
	return min(n, maxBuckets)
}

// buckets are the spill files of a result partitioned by key hash: bucket i holds the rows whose
// key hash has i in its top bits.
type buckets struct {
	files []*os.File
	ws    []*bufio.Writer
	shift uint
	rec   []byte // the row being written
}

func newBuckets(dir string, n int) (*buckets, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("model state directory: %w", err)
	}
	b := &buckets{shift: uint(64 - bits.TrailingZeros(uint(n)))}
	// The writers' buffers together stay under about 8 MB.
	size := min(max(8<<20/n, 4<<10), 64<<10)
	for range n {
		f, err := os.CreateTemp(dir, "bucket-*")
		if err != nil {
			b.close()
			return nil, fmt.Errorf("model bucket file: %w", err)
		}
		b.files, b.ws = append(b.files, f), append(b.ws, bufio.NewWriterSize(f, size))
	}
	return b, nil
}

func (b *buckets) index(kh uint64) int {
	if b.shift == 64 {
		return 0
	}
	return int(kh >> b.shift)
}

// add writes a row to its bucket: its key, row hash, the length of its columns, then its
// columns as spill writes them, in one write. Write errors surface when the bucket is read.
func (b *buckets) add(kh uint64, key []byte, hash uint64, raw [][]byte) {
	size := uvarintLen(uint64(len(raw)))
	for _, v := range raw {
		size += len(v) + uvarintLen(uint64(len(v))+1)
	}
	rec := binary.AppendUvarint(b.rec[:0], uint64(len(key)))
	rec = binary.BigEndian.AppendUint64(append(rec, key...), hash)
	rec = binary.AppendUvarint(rec, uint64(size))
	rec = binary.AppendUvarint(rec, uint64(len(raw)))
	for _, v := range raw {
		if v == nil {
			rec = append(rec, 0)
			continue
		}
		rec = append(binary.AppendUvarint(rec, uint64(len(v))+1), v...)
	}
	b.rec = rec
	_, _ = b.ws[b.index(kh)].Write(rec)
}

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// read returns bucket i whole and removes its file.
func (b *buckets) read(i int) ([]byte, error) {
	f := b.files[i]
	if err := b.ws[i].Flush(); err != nil {
		return nil, fmt.Errorf("write model bucket file %s: %w", f.Name(), err)
	}
	data, err := os.ReadFile(f.Name())
	if err != nil {
		return nil, fmt.Errorf("read model bucket file: %w", err)
	}
	_ = f.Close()
	_ = os.Remove(f.Name())
	b.files[i], b.ws[i] = nil, nil
	return data, nil
}

// close removes the files not read yet.
func (b *buckets) close() {
	for _, f := range b.files {
		if f != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}
}

// bucketRow is a row of a bucket: its key hash and where its key is in the bucket's data; its
// row hash and columns follow the key.
type bucketRow struct {
	kh   uint64
	off  uint32
	klen uint32
}

// bucket is a bucket read whole and sorted in state order, ready to merge.
type bucket struct {
	data []byte
	rows []bucketRow
	dup  []byte // a key found twice
	err  error
}

func (b *bucket) key(r bucketRow) []byte { return b.data[r.off : r.off+r.klen : r.off+r.klen] }

func (b *bucket) hash(r bucketRow) uint64 { return binary.BigEndian.Uint64(b.data[r.off+r.klen:]) }

var errBucket = errors.New("model bucket file: corrupt row")

// parse finds the rows of the bucket's data.
func (b *bucket) parse() error {
	data := b.data
	if len(data) > 1<<32-1 {
		return fmt.Errorf("model bucket of %d bytes: at most 4 GiB", len(data))
	}
	for pos := 0; pos < len(data); {
		klen, l := binary.Uvarint(data[pos:])
		if l <= 0 || uint64(len(data)-pos-l) < klen+8 {
			return errBucket
		}
		r := bucketRow{off: uint32(pos + l), klen: uint32(klen)}
		r.kh = keyHash(b.key(r))
		pos += l + int(klen) + 8
		size, l := binary.Uvarint(data[pos:])
		if l <= 0 || uint64(len(data)-pos-l) < size {
			return errBucket
		}
		pos += l + int(size)
		b.rows = append(b.rows, r)
	}
	return nil
}

// columns decodes a row's columns, NULLs as nil, reusing dst.
func (b *bucket) columns(r bucketRow, dst [][]byte) ([][]byte, error) {
	data := b.data[r.off+r.klen+8:]
	size, l := binary.Uvarint(data)
	data = data[l : l+int(size)]
	n, l := binary.Uvarint(data)
	data, dst = data[l:], dst[:0]
	for range n {
		v, l := binary.Uvarint(data)
		if l <= 0 || uint64(len(data)-l) < v-min(v, 1) {
			return nil, errBucket
		}
		data = data[l:]
		if v == 0 {
			dst = append(dst, nil)
			continue
		}
		dst, data = append(dst, data[:v-1:v-1]), data[v-1:]
	}
	return dst, nil
}

// sort sorts the rows in state order and notes a duplicate key, which the sort makes adjacent.
// The rows are radix-sorted by key hash, several times faster than comparison sorting them;
// rows of equal hash (the same key, or a rare collision) are then sorted by key.
func (b *bucket) sort() {
	b.rows = radixSort(b.rows, make([]bucketRow, len(b.rows)))
	for i := 0; i < len(b.rows); {
		j := i + 1
		for j < len(b.rows) && b.rows[j].kh == b.rows[i].kh {
			j++
		}
		if j-i > 1 {
			run := b.rows[i:j]
			slices.SortFunc(run, func(x, y bucketRow) int { return bytes.Compare(b.key(x), b.key(y)) })
			for k := 1; k < len(run) && b.dup == nil; k++ {
				if bytes.Equal(b.key(run[k]), b.key(run[k-1])) {
					b.dup = b.key(run[k])
				}
			}
		}
		i = j
	}
}

// radixSort sorts rows by key hash, a byte at a time from the lowest, through tmp (as long as
// rows); it returns the sorted slice, which is rows or tmp. Bytes equal in every row (those
// that chose the bucket) are skipped.
func radixSort(rows, tmp []bucketRow) []bucketRow {
	for shift := uint(0); shift < 64; shift += 8 {
		var count [256]int
		for _, r := range rows {
			count[byte(r.kh>>shift)]++
		}
		if len(rows) == 0 || count[byte(rows[0].kh>>shift)] == len(rows) {
			continue
		}
		pos := 0
		for i, c := range count {
			count[i], pos = pos, pos+c
		}
		for _, r := range rows {
			d := byte(r.kh >> shift)
			tmp[count[d]] = r
			count[d]++
		}
		rows, tmp = tmp, rows
	}
	return rows
}

// sorted reads, parses and sorts the buckets in order, one ahead of the caller, which merges
// them: on two cores the sorting of a bucket overlaps the merging of the previous one. It
// stops after an error or when stop is closed; done is closed when it no longer touches b.
func (b *buckets) sorted(stop <-chan struct{}) (out <-chan *bucket, done <-chan struct{}) {
	ch, fin := make(chan *bucket, 1), make(chan struct{})
	go func() {
		defer close(fin)
		defer close(ch)
		for i := range b.files {
			bk := &bucket{}
			if bk.data, bk.err = b.read(i); bk.err == nil {
				if bk.err = bk.parse(); bk.err == nil {
					bk.sort()
				}
			}
			select {
			case ch <- bk:
			case <-stop:
				return
			}
			if bk.err != nil {
				return
			}
		}
	}()
	return ch, fin
}
