package model

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/kafka"
)

func putHash(b []byte, h uint64) { binary.BigEndian.PutUint64(b, h) }

// rebuild writes the state a model's topic describes: for each state key, the row hash of its
// last record, unless that record is a delete or a tombstone. It is the recovery path (a new
// machine, a lost disk, a run stopped while publishing): the keys are held in memory while the
// topic is read. foreign counts records without the model's headers, which are ignored.
func rebuild(ctx context.Context, opts []kgo.Opt, topic, path string, keyCols int) (rows, foreign int64, err error) {
	live := map[string]uint64{}
	enc := allText(keyCols) // takes a key of any encoding: runs convert it to theirs
	var bad error
	err = kafka.ReadToEnd(ctx, opts, topic, func(rec *kgo.Record) {
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
		switch {
		case cerr != nil:
			if bad == nil {
				bad = fmt.Errorf("record at %s/%d@%d: key of another shape than the model's (was its key changed?): %w", topic, rec.Partition, rec.Offset, cerr)
			}
		case rec.Value == nil || len(hash) != 8:
			delete(live, string(key))
		default:
			live[string(key)] = binary.BigEndian.Uint64(hash)
		}
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return 0, foreign, err
	}
	keys := make([]string, 0, len(live))
	for k := range live {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return bytes.Compare([]byte(a), []byte(b)) })
	sw, err := newStateWriter(path, enc)
	if err != nil {
		return 0, foreign, err
	}
	for _, k := range keys {
		if err := sw.add([]byte(k), live[k]); err != nil {
			sw.abort()
			return 0, foreign, err
		}
	}
	return int64(len(keys)), foreign, sw.commit()
}

// convertState writes to dst the state at src with its keys in encoding enc. The entries are
// held in memory to be sorted anew: this happens once, after the key's types changed or after a
// rebuild.
func convertState(src, dst string, enc keyEnc) error {
	sr, err := openState(src)
	if err != nil {
		return err
	}
	defer sr.close()
	var entries []entry
	for !sr.done {
		key, err := enc.convert(sr.cur.key, sr.enc)
		if err != nil {
			return fmt.Errorf("the state's keys (encoding %q) do not fit the result's key (encoding %q): %w; "+
				"a model's key columns cannot change in place: give the model a new name (a new topic), or delete its topic and state file to start over", sr.enc, enc, err)
		}
		entries = append(entries, entry{key: bytes.Clone(key), hash: sr.cur.hash})
		if err := sr.next(); err != nil {
			return err
		}
	}
	slices.SortFunc(entries, func(a, b entry) int { return bytes.Compare(a.key, b.key) })
	sw, err := newStateWriter(dst, enc)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := sw.add(e.key, e.hash); err != nil {
			sw.abort()
			return err
		}
	}
	return sw.commit()
}
