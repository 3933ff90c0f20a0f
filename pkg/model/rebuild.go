package model

import (
	"bytes"
	"context"
	"encoding/binary"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/kafka"
)

func putHash(b []byte, h uint64) { binary.BigEndian.PutUint64(b, h) }

// rebuild writes the state a model's topic describes: for each state key, the row hash of its
// last record, unless that record is a delete or a tombstone. It is the recovery path (a new
// machine, a lost disk, a run stopped while publishing): the keys are held in memory while the
// topic is read. foreign counts records without the model's headers, which are ignored.
func rebuild(ctx context.Context, opts []kgo.Opt, topic, path string) (rows, foreign int64, err error) {
	live := map[string]uint64{}
	err = kafka.ReadToEnd(ctx, opts, topic, func(rec *kgo.Record) {
		var key, hash []byte
		found := false
		for _, h := range rec.Headers {
			switch h.Key {
			case HeaderKey:
				key, found = h.Value, true
			case HeaderHash:
				hash = h.Value
			}
		}
		switch {
		case !found:
			foreign++
		case rec.Value == nil || len(hash) != 8:
			delete(live, string(key))
		default:
			live[string(key)] = binary.BigEndian.Uint64(hash)
		}
	})
	if err != nil {
		return 0, foreign, err
	}
	keys := make([]string, 0, len(live))
	for k := range live {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return bytes.Compare([]byte(a), []byte(b)) })
	sw, err := newStateWriter(path)
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
