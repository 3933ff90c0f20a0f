package capture

import (
	"bytes"
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
)

// A full refresh makes the topic, and so every target, equal to the table, deletes included,
// without anything specific to a target: the compacted topic already holds every key the
// targets were told about.
//
// The invariant: a key the topic held when the refresh started (the sweep reads the topic up to
// its end at that moment) and that the refresh neither read from the table nor saw change in the
// stream since it started is not in the table, so a delete for it is correct. A key present in
// the table is always seen: a chunk read it, or the stream changed it after the chunk's window
// (then the stream's own events carry it). Emitting a delete for a key the table lacks is
// idempotent, so a sweep that over-counts live keys (a truncate it does not order across
// partitions, say) costs a redundant delete, never a wrong one.
type refresh struct {
	em        *emitter
	log       *zap.Logger
	topic     string
	t         *change.Table
	seen      map[string]struct{} // encoded keys read or seen changing since the start
	sweep     chan sweepResult
	result    *sweepResult
	finishing bool // every chunk is published; waiting for the sweep
	// after is the last transaction the stream decoded before the refresh began (0: none). Its
	// changes are in the topic but were not seen by the refresh, and PostgreSQL writes a commit
	// record, which the stream may decode, a moment before the transaction is visible to other
	// snapshots: a chunk read whose snapshot does not see it yet could miss a row the topic
	// holds, which the refresh would then delete. Such a read is made again (visibleAfter).
	after uint32
	// visibleAfter says that a chunk's snapshot saw after: later ones see it too.
	visibleAfter bool
	rereads      int // chunk reads made again for after, bounded by maxRereads
	// undeletable counts the old keys no delete could be built for: undecodable, or written under
	// another key definition. The first few are logged, each with why, the rest only counted: a
	// table whose key changed has one per row.
	undeletable int
}

// maxRereads bounds the chunk reads a refresh makes again waiting to see its after
// transaction, which takes microseconds: past it the refresh goes on, with a warning.
const maxRereads = 20

// rereadFor says whether a chunk read whose snapshot is snap must be made again (see after).
func (r *refresh) rereadFor(snap pgSnapshot) bool {
	switch {
	case r.visibleAfter:
		return false
	case r.after == 0 || snap.visible(r.after):
		r.visibleAfter = true
		return false
	case r.rereads >= maxRereads:
		r.log.Warn("full refresh: the last transaction the stream decoded is still not visible to the table's reads; going on, "+
			"and a row it wrote may be deleted from the topic until its next change", zap.Uint32("xid", r.after))
		r.visibleAfter = true
		return false
	}
	r.rereads++
	return true
}

// undeletableLogged is how many undeletable keys a full refresh logs one by one.
const undeletableLogged = 5

// sweepResult is what a sweep read: the live keys of the topic and a way to decode them.
type sweepResult struct {
	live   map[string]struct{}
	decode func(ctx context.Context, key []byte) (change.Row, error)
	err    error
}

// sweeper reads the live keys of a topic up to its current end.
type sweeper func(ctx context.Context, topic string) sweepResult

func newRefresh(ctx context.Context, log *zap.Logger, em *emitter, sw sweeper, t *change.Table) *refresh {
	r := &refresh{em: em, log: log, topic: em.topic(t), t: t, seen: map[string]struct{}{}, sweep: make(chan sweepResult, 1)}
	go func() { r.sweep <- sw(ctx, r.topic) }()
	return r
}

// see notes that the key of row is accounted for.
func (r *refresh) see(ctx context.Context, t *change.Table, row change.Row) error {
	key, err := r.em.enc.EncodeKey(ctx, r.topic, t, row)
	if err != nil {
		return fmt.Errorf("full refresh of %s: %w", t.QualifiedName(), err)
	}
	r.seen[string(key)] = struct{}{}
	return nil
}

// stale returns the keys to delete once the sweep is done (ready false until then).
func (r *refresh) stale(ctx context.Context) (keys []change.Row, ready bool, err error) {
	if r.result == nil {
		select {
		case res := <-r.sweep:
			r.result = &res
		default:
			return nil, false, nil
		}
	}
	if r.result.err != nil {
		return nil, true, r.result.err
	}
	for k := range r.result.live {
		if _, ok := r.seen[k]; ok {
			continue
		}
		row, err := r.result.decode(ctx, []byte(k))
		if err != nil {
			// Failing the run would only repeat the refresh and this error at every restart.
			r.undeletableKey("full refresh: a key the topic holds cannot be decoded, so no delete can be sent for it; it stays in the targets",
				zap.Binary("key", []byte(k)), err)
			continue
		}
		// An old key written under another key schema (a column type changed) decodes to
		// values the new rows may have: compare them in the table's current encoding.
		now, err := r.em.enc.EncodeKey(ctx, r.topic, r.t, row)
		if err != nil {
			r.undeletableKey("full refresh: an old key does not fit the table's key any more (the key columns changed); it is left in the targets",
				zap.Any("key", row), err)
			continue
		}
		if _, ok := r.seen[string(now)]; ok {
			continue
		}
		keys = append(keys, row)
	}
	return keys, true, nil
}

// undeletableKey counts an old key no delete can be built for, and logs it with msg while few are.
func (r *refresh) undeletableKey(msg string, key zap.Field, err error) {
	if r.undeletable++; r.undeletable <= undeletableLogged {
		r.log.Error(msg, zap.String("topic", r.topic), key, zap.Error(err))
	}
	if r.undeletable == undeletableLogged+1 {
		r.log.Error("full refresh: more keys cannot be deleted; they are counted, not logged, and the refresh's summary says how many",
			zap.String("topic", r.topic))
	}
}

// topicSweeper reads topics with capture's Kafka connection options and decodes their keys with
// the pipeline's schemas (the schema topic, or the registry).
type topicSweeper struct {
	opts   []kgo.Opt
	schema string // the schema topic, "" with a registry or JSON
	reg    *config.SchemaRegistry
}

func (s topicSweeper) sweep(ctx context.Context, topic string) sweepResult {
	live := map[string]struct{}{}
	err := kafka.ReadToEnd(ctx, s.opts, topic, func(r *kgo.Record) {
		switch {
		case r.Key == nil, bytes.Equal(r.Key, kafka.TruncateKey): // no row's key
		case r.Value == nil:
			delete(live, string(r.Key))
		default:
			live[string(r.Key)] = struct{}{}
		}
	})
	if err != nil {
		return sweepResult{err: fmt.Errorf("read the keys of %s: %w", topic, err)}
	}
	dec, err := s.decoder(ctx)
	if err != nil {
		return sweepResult{err: err}
	}
	return sweepResult{live: live, decode: func(ctx context.Context, key []byte) (change.Row, error) {
		_, row, err := dec.DecodeKey(ctx, topic, key)
		return row, err
	}}
}

func (s topicSweeper) decoder(ctx context.Context) (*codec.Decoder, error) {
	store := codec.NewSchemaStore()
	opts := []codec.DecoderOpt{codec.Schemas(store)}
	if s.reg != nil && s.reg.URL != "" {
		rc, err := sr.NewClient(registryOpts(*s.reg)...)
		if err != nil {
			return nil, fmt.Errorf("kafka.schema_registry: %w", err)
		}
		opts = append(opts, codec.DecoderRegistry(rc))
	} else if s.schema != "" {
		var bad error
		err := kafka.ReadToEnd(ctx, s.opts, s.schema, func(r *kgo.Record) {
			if _, err := store.AddRecord(r.Key, r.Value); err != nil && bad == nil {
				bad = err
			}
		})
		if err != nil {
			return nil, fmt.Errorf("read schemas: %w", err)
		}
		_ = bad // a bad schema record only fails the keys written with it
	}
	return codec.NewDecoder(opts...)
}
