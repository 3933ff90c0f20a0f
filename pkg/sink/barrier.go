package sink

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
)

// A source TRUNCATE reaches a topic of several partitions as one copy per partition
// (kafka.TruncateRecords). Each is a barrier: the truncate takes effect once every partition has
// applied its records before its copy, and before any partition applies a record after its copy.
// Then rows written after the truncate survive it and rows written before it go, whatever the
// target and without a version column.
//
// The partitions may be spread over several workers (processes) of the sink's group, so they
// coordinate through the sink's barrier topic (BarrierTopic):
//
//   - A worker that reaches a copy keeps the partition's records after it out of its rounds and
//     pauses the partition. Once the records before the copy are applied and committed (the
//     group's offset is the copy's), it notes "partition p reached truncate T".
//   - The worker that holds partition 0 at T applies T once every partition reached it, then
//     notes "T applied". Its stored offset stays at the copy, so a crash before the note
//     re-reaches the copy and applies T again, which is harmless: nobody passed T yet.
//   - Every waiting worker resumes its partition right after the copy once T is applied. A copy
//     of a truncate already applied is passed as a record the sink skips (a restart of capture
//     writes the copies again).
//
// Waiting never holds a poll: the paused partition simply returns no records, and the member
// lets rebalances through as when idle. A revoked partition forgets its wait; its new owner
// reads from the copy (the committed offset) and notes it reached T again.
//
// A copy of a topic of one partition is a truncate applied in place, as are truncates written
// by older versions of backflow or by Debezium (one record, null key, no headers): those are
// applied where they are, in their one partition, as before.
type barriers struct {
	s   *Sink
	log *barrierLog
	cl  *kgo.Client

	held     map[TopicPartition]*heldAt
	inflight map[TopicPartition]int // rounds polled and not yet committed, per partition

	mu      sync.Mutex
	revoked []map[string][]int32 // from the group's callbacks, handled by the polling goroutine
}

// heldAt is a partition held at a truncate's copy.
type heldAt struct {
	rec       *kgo.Record
	copy      kafka.TruncateCopy
	announced bool      // "reached" is noted
	since     time.Time // when it was held
	warned    bool      // a long wait was logged
}

// barrierWarnAfter is how long a partition waits at a truncate before the wait is logged as a
// warning naming the partitions that have not reached it (a worker down, a partition stuck on
// its target).
const barrierWarnAfter = time.Minute

func (h *heldAt) id() barrierID { return barrierID{h.rec.Topic, h.copy.ID} }

// barrierCopy returns the truncate copy r is when it is a barrier for this sink: a copy of a
// topic of several partitions, for a sink that applies truncates.
func (s *Sink) barrierCopy(r *kgo.Record) (kafka.TruncateCopy, bool) {
	if s.cfg.OnTruncate == config.OnTruncateIgnore {
		return kafka.TruncateCopy{}, false
	}
	c, ok := kafka.TruncateCopyOf(r)
	return c, ok && c.Partitions > 1
}

// drop notes partitions this member no longer owns; the polling goroutine forgets them.
func (b *barriers) drop(gone map[string][]int32) {
	b.mu.Lock()
	b.revoked = append(b.revoked, gone)
	b.mu.Unlock()
}

// forgetRevoked forgets the waits of revoked partitions and resumes their fetching (a pause
// outlives a revocation, and the partition may come back).
func (b *barriers) forgetRevoked() {
	b.mu.Lock()
	revoked := b.revoked
	b.revoked = nil
	b.mu.Unlock()
	for _, gone := range revoked {
		for topic, parts := range gone {
			for _, p := range parts {
				tp := TopicPartition{topic, p}
				if _, ok := b.held[tp]; ok {
					delete(b.held, tp)
					b.cl.ResumeFetchPartitions(map[string][]int32{topic: {p}})
				}
				delete(b.inflight, tp)
			}
		}
	}
}

// cut returns the records of a partition a round may take: none while the partition is held at
// a copy (records fetched before the pause took effect), and those before a new copy, at which
// the partition is then held. Copies of truncates already applied stay in (the sink skips them).
func (b *barriers) cut(tp TopicPartition, recs []*kgo.Record) []*kgo.Record {
	if b.held[tp] != nil {
		return nil
	}
	for i, r := range recs {
		c, ok := b.s.barrierCopy(r)
		if !ok {
			continue
		}
		if applied, _ := b.log.status(barrierID{r.Topic, c.ID}); applied {
			continue
		}
		b.held[tp] = &heldAt{rec: r, copy: c, since: time.Now()}
		b.cl.PauseFetchPartitions(map[string][]int32{tp.Topic: {tp.Partition}})
		b.s.log.Info("partition reached a truncate; holding it until every partition has", zap.String("topic", tp.Topic),
			zap.Int32("partition", tp.Partition), zap.Int64("offset", r.Offset), zap.String("truncate", c.ID), zap.Int32("partitions", c.Partitions))
		return recs[:i]
	}
	return recs
}

// polled counts a round's partitions as in flight.
func (b *barriers) polled(r Round) {
	for tp := range r {
		b.inflight[tp]++
	}
}

// committed counts a round's partitions as applied, and notes the copies they reached.
func (b *barriers) committed(ctx context.Context, r Round) error {
	for tp := range r {
		if b.inflight[tp]--; b.inflight[tp] <= 0 {
			delete(b.inflight, tp)
		}
	}
	return b.announce(ctx, nil)
}

// announce notes "reached" for the held partitions whose records before the copy are all
// applied: none in a round in flight, nor in building (the round Poll is gathering).
func (b *barriers) announce(ctx context.Context, building Round) error {
	for tp, h := range b.held {
		if h.announced || b.inflight[tp] > 0 || len(building[tp]) > 0 {
			continue
		}
		p := tp.Partition
		if err := b.log.write(ctx, barrierNote{Topic: tp.Topic, Truncate: h.copy.ID, Partitions: h.copy.Partitions, Reached: &p}); err != nil {
			return fmt.Errorf("sink %s: %w", b.s.cfg.Name, err)
		}
		h.announced = true
	}
	return nil
}

// step moves the held partitions on: it applies the truncates partition 0 holds once every
// partition reached them, and releases the partitions whose truncate is applied. Call it only
// while a poll holds rebalances back: the partitions are surely this member's.
func (b *barriers) step(ctx context.Context, building Round) error {
	if err := b.announce(ctx, building); err != nil {
		return err
	}
	for tp, h := range b.held {
		if !h.announced {
			continue
		}
		applied, all := b.log.status(h.id())
		if !applied && all && tp.Partition == 0 {
			if err := b.apply(ctx, h); err != nil {
				return err
			}
			applied = true
		}
		if applied {
			if err := b.release(ctx, tp, h); err != nil {
				return err
			}
		} else if !h.warned && time.Since(h.since) > barrierWarnAfter {
			h.warned = true
			// not_reached empty: all reached, the owner of partition 0 has not applied it yet.
			b.s.log.Warn("a partition waits long at a truncate", zap.String("topic", tp.Topic),
				zap.Int32("partition", tp.Partition), zap.String("truncate", h.copy.ID), zap.Duration("waiting", time.Since(h.since)),
				zap.Int32s("not_reached", b.log.missing(h.id())))
		}
	}
	return nil
}

// apply applies a truncate every partition reached, unless the barrier topic, read to its end,
// says it already was, and notes it applied.
func (b *barriers) apply(ctx context.Context, h *heldAt) error {
	if err := b.log.catchUp(ctx); err != nil {
		return fmt.Errorf("sink %s: %w", b.s.cfg.Name, err)
	}
	if applied, _ := b.log.status(h.id()); !applied {
		if err := b.s.applyTruncate(ctx, h.rec); err != nil {
			return err
		}
		b.s.log.Info("applied a truncate every partition reached", zap.String("topic", h.rec.Topic),
			zap.String("truncate", h.copy.ID), zap.Int32("partitions", h.copy.Partitions))
	}
	return b.log.write(ctx, barrierNote{Topic: h.rec.Topic, Truncate: h.copy.ID, Partitions: h.copy.Partitions, Applied: true})
}

// release resumes a partition right after its copy of an applied truncate, and stores that
// offset in the target (an OffsetStore) and commits it to the group: nothing of the partition is
// in flight, so neither can go back. Without the target's, a partition whose last record is the
// copy (a small table reloaded: some partitions get only the copy) would have the group past
// it and the target not, which the next start takes for a target that lost what the sink
// wrote. A failed commit only leaves the copy to be read again, and passed.
func (b *barriers) release(ctx context.Context, tp TopicPartition, h *heldAt) error {
	past := &Batch{Sink: b.s.offsetName, Topic: tp.Topic, Partition: tp.Partition, NextOffset: h.rec.Offset + 1}
	if err := b.s.applyEmpty(ctx, past); err != nil {
		return fmt.Errorf("sink %s: store offset %d of %s[%d], past truncate %s: %w", b.s.cfg.Name, past.NextOffset,
			tp.Topic, tp.Partition, h.copy.ID, err)
	}
	next := map[string]map[int32]kgo.EpochOffset{tp.Topic: {tp.Partition: {Epoch: -1, Offset: past.NextOffset}}}
	b.cl.SetOffsets(next)
	b.cl.ResumeFetchPartitions(map[string][]int32{tp.Topic: {tp.Partition}})
	delete(b.held, tp)
	b.cl.CommitOffsetsSync(ctx, next, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err == nil {
			err = commitResponseErr(resp)
		}
		if err != nil {
			b.s.log.Warn("could not commit the offset after a truncate's copy", zap.String("topic", tp.Topic), zap.Int32("partition", tp.Partition), zap.Error(err))
		}
	})
	b.s.log.Info("truncate applied; partition resumed", zap.String("topic", tp.Topic), zap.Int32("partition", tp.Partition), zap.String("truncate", h.copy.ID))
	return nil
}

// waiting reports whether a partition is held at a copy this member announced.
func (b *barriers) waiting() bool {
	for _, h := range b.held {
		if h.announced {
			return true
		}
	}
	return false
}

// TruncateBarrier returns the truncate copy r is when it is a barrier for this sink: a copy of a
// truncate written to several partitions, for a sink that applies truncates. Such a truncate
// takes effect once every partition reached its copy; replays order it with ApplyTruncate.
func (s *Sink) TruncateBarrier(r *kgo.Record) (kafka.TruncateCopy, bool) { return s.barrierCopy(r) }

// OrderTruncates says that the caller applies the truncates whose copies are barriers, with
// ApplyTruncate, once every partition reached them: Process then skips every copy. Without it
// Process applies the copy of partition 0 in place and skips the others. Run sets it.
func (s *Sink) OrderTruncates() { s.coordinated = true }

// ApplyTruncate applies the truncate of a copy, without moving the offset the target stores for
// the copy's partition past the copy: a crash before the truncate is known as applied must read
// the copy again.
func (s *Sink) ApplyTruncate(ctx context.Context, kr *kgo.Record) error {
	return s.applyTruncate(ctx, kr)
}

// applyTruncate is ApplyTruncate.
func (s *Sink) applyTruncate(ctx context.Context, kr *kgo.Record) error {
	ev, err := s.decodeWithRetry(ctx, &kgo.Record{Topic: kr.Topic, Partition: kr.Partition, Offset: kr.Offset, Value: kr.Value, Headers: kr.Headers})
	if err != nil || ev == nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return s.dlq.send(ctx, kr, fmt.Sprintf("decode truncate: %v", err))
	}
	r := Record{Op: OpTruncate, Event: ev, Topic: kr.Topic, Partition: kr.Partition, Offset: kr.Offset}
	_, err = s.applyBatch(ctx, &Batch{Sink: s.offsetName, Topic: kr.Topic, Partition: kr.Partition, Records: []Record{r}, NextOffset: kr.Offset}, []*kgo.Record{kr})
	return err
}
