package model

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/kafka"
)

func putHash(b []byte, h uint64) { binary.BigEndian.PutUint64(b, h) }

// rebuild writes the state a model's topic describes: for each state key, the row hash of its
// last record, unless that record is a delete or a tombstone. It is the recovery path (a new
// machine, a lost disk, a run stopped while publishing). The topic's records are sorted on disk
// (runs of bounded size, then a merge), so memory does not grow with the topic. foreign counts
// records without the model's headers, which are ignored.
func rebuild(ctx context.Context, opts []kgo.Opt, topic, path string, keyCols int) (rows, foreign int64, err error) {
	enc := allText(keyCols) // takes a key of any encoding: runs convert it to theirs
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return 0, 0, fmt.Errorf("model state directory: %w", err)
	}
	so := &sorter{dir: filepath.Dir(path), hashed: stateHashed(enc)}
	defer so.close()
	var bad error
	// Small fetches, one at a time: what is fetched is held until it is sorted.
	ropts := append(slices.Clone(opts), kgo.FetchMaxBytes(1<<20), kgo.FetchMaxPartitionBytes(256<<10), kgo.MaxConcurrentFetches(1))
	err = kafka.ReadToEnd(ctx, ropts, topic, func(rec *kgo.Record) {
		if bad != nil {
			return
		}
		var key, hash []byte
		var from keyEnc
		found := false
		for _, h := range rec.Headers {
			switch h.Key {
			case HeaderKey:
				key, found = h.Value, true
			case HeaderHash:
				hash = h.Value
			case HeaderKeyEnc:
				from = keyEnc(h.Value)
			}
		}
		if !found {
			foreign++
			return
		}
		key, cerr := enc.convert(key, from)
		if cerr != nil {
			bad = fmt.Errorf("record at %s/%d@%d: key of another shape than the model's (was its key changed?): %w", topic, rec.Partition, rec.Offset, cerr)
			return
		}
		e := sortEntry{key: bytes.Clone(key), off: rec.Offset}
		if rec.Value != nil && len(hash) == 8 {
			e.live, e.hash = true, binary.BigEndian.Uint64(hash)
		}
		bad = so.add(e)
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return 0, foreign, err
	}
	sw, err := newStateWriter(path, enc)
	if err != nil {
		return 0, foreign, err
	}
	err = so.merge(func(e sortEntry) error {
		if !e.live {
			return nil
		}
		rows++
		return sw.add(e.key, e.hash)
	})
	if err != nil {
		sw.abort()
		return 0, foreign, err
	}
	return rows, foreign, sw.commit()
}

// convertState writes to dst the state at src with its keys in encoding enc, sorted anew on
// disk in the order of that encoding: this happens after the key's types changed, after a
// rebuild of a model with an integer key column (a rebuild writes text keys), and once for a
// state of a text key written in key order by an earlier version.
func convertState(src, dst string, enc keyEnc) error {
	sr, err := openState(src)
	if err != nil {
		return err
	}
	defer sr.close()
	so := &sorter{dir: filepath.Dir(dst), hashed: stateHashed(enc)}
	defer so.close()
	for !sr.done {
		key, err := enc.convert(sr.cur.key, sr.enc)
		if err != nil {
			return fmt.Errorf("the state's keys (encoding %q) do not fit the result's key (encoding %q): %w; "+
				"a model's key columns cannot change in place: give the model a new name (a new topic), or delete its topic and state file to start over", sr.enc, enc, err)
		}
		if err := so.add(sortEntry{key: bytes.Clone(key), hash: sr.cur.hash, live: true}); err != nil {
			return err
		}
		if err := sr.next(); err != nil {
			return err
		}
	}
	sw, err := newStateWriter(dst, enc)
	if err != nil {
		return err
	}
	if err := so.merge(func(e sortEntry) error { return sw.add(e.key, e.hash) }); err != nil {
		sw.abort()
		return err
	}
	return sw.commit()
}
