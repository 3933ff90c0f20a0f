package sink

// The direct path: a batch of created rows scanned straight from the encoded messages into the
// connector's RowBuffer and loaded in one go, without a Record per row.

import (
	"context"
	"errors"
	"hash/maphash"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/config"
)

// prepareRows scans a batch into a RowBuffer of the connector's RowLoader (see RowLoader), or
// returns nil when the batch must be applied as Records: the sink or the connector cannot take
// the fast path, or some record is not the creation of a row with a key of its own.
//
// A panic while scanning also sends the batch that way, where each record is decoded on its own
// and one that panics again is dead-lettered.
//
// Topics of bare rows (envelope: none) always go as Records: their tombstones are deletes.
func (s *Sink) prepareRows(ctx context.Context, recs []*kgo.Record) (prep *prepared) {
	if s.loader == nil || s.cfg.Envelope == config.EnvelopeNone {
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			s.log.Warn("scanning rows panicked; the batch goes as records", zap.String("reason", panicReason(p)))
			prep = nil
		}
	}()
	var (
		t   *change.Table
		buf RowBuffer
	)
	p := &prepared{recs: recs, commits: make([]time.Time, 0, len(recs))}
	// Kafka keys stand for the rows' keys: two records of one key must be coalesced, which only
	// the Records path does. A hash collision only sends the batch that way too; two keys that
	// map to one target key (a sink keyed otherwise than the topic) make the load fail on the
	// target's unique key, and the batch goes that way then.
	seen := make(map[uint64]struct{}, len(recs))
	for _, kr := range recs {
		if kr.Value == nil {
			p.filtered++ // a tombstone: the delete before it does the work
			continue
		}
		if buf == nil {
			if t = s.dec.ScanTable(ctx, kr.Value); t == nil {
				return nil
			}
			if buf = s.rowBuffer(t); buf == nil {
				return nil
			}
		}
		h := maphash.Bytes(s.keySeed, kr.Key)
		if _, dup := seen[h]; dup || len(kr.Key) == 0 {
			return nil
		}
		seen[h] = struct{}{}
		c, ok := s.dec.ScanCreated(ctx, kr.Value, t, buf)
		if !ok || !buf.EndRow() {
			return nil
		}
		if c.SourceTsMs > 0 {
			p.commits = append(p.commits, time.UnixMilli(c.SourceTsMs))
		}
		p.loaded++
	}
	if buf == nil {
		return nil
	}
	p.rows, p.batch = buf, s.batchOf(recs)
	return p
}

// rowBuffer returns a RowBuffer for rows of t, or nil when the mapping or the connector cannot
// take them directly.
func (s *Sink) rowBuffer(t *change.Table) RowBuffer {
	v, ok := s.projections.Load(t)
	if !ok {
		fields, ok := s.mapping.Projection(t)
		if !ok {
			fields = nil
		}
		v, _ = s.projections.LoadOrStore(t, fields)
	}
	fields := v.([]string)
	if fields == nil {
		return nil
	}
	buf, err := s.loader.RowBuffer(t, fields)
	if err != nil {
		s.log.Debug("rows go as records", zap.String("table", t.Schema+"."+t.Name), zap.Error(err))
		return nil
	}
	return buf
}

// load applies a batch of scanned rows, after the rate limit. done is false when the connector
// could not load them (a key already in the target, a constraint, the target down): the caller
// then applies the batch as Records, which retries, bisects and dead-letters as usual.
func (s *Sink) load(ctx context.Context, p *prepared) (done bool, err error) {
	if err := s.wait(ctx, p.loaded); err != nil {
		return false, err
	}
	tp := TopicPartition{p.batch.Topic, p.batch.Partition}
	p.batch.Fence = s.fences.get(tp)
	err = p.rows.Load(ctx, p.batch)
	switch {
	case err == nil:
		s.fences.applied(tp, p.batch.NextOffset)
		return true, nil
	case ctx.Err() != nil:
		return false, ctx.Err()
	case errors.Is(err, ErrFenced):
		return false, err
	}
	s.log.Debug("direct load failed; applying the batch as records", zap.String("topic", p.batch.Topic),
		zap.Int32("partition", p.batch.Partition), zap.Int("rows", p.loaded), zap.Error(err))
	return false, nil
}
