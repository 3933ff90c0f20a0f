package sink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// adjustOffsets runs when the worker is assigned partitions, before it fetches them: it tells
// assigned, takes the worker's fence of each (see fences) and, when the target stores offsets,
// makes the group start each partition from the offset stored there: the target is the truth,
// which makes its effect exactly-once. Offsets the target holds ahead of the group's commits are
// kept in behind, to be committed to the group. A position the partition's log no longer holds
// is reported and moved (see resumeAt).
func (s *Sink) adjustOffsets(client *atomic.Pointer[kgo.Client], store OffsetStore, behind *catchUp,
	assigned func(context.Context, *kgo.Client, map[string][]int32)) func(context.Context, map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	return func(ctx context.Context, offs map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
		cl, err := storedClient(ctx, client)
		if err != nil {
			return nil, err
		}
		_, epoch := cl.GroupMetadata()
		parts := make(map[string][]int32, len(offs))
		topics := make([]string, 0, len(offs))
		for t, ps := range offs {
			topics = append(topics, t)
			for p := range ps {
				parts[t] = append(parts[t], p)
			}
		}
		assigned(ctx, cl, parts)
		logs, err := readLogs(ctx, cl, topics, s.log)
		if err != nil {
			return nil, fmt.Errorf("sink %s: %w", s.cfg.Name, err)
		}
		if logs.operator, err = operatorCommits(ctx, cl, s.Group()); err != nil {
			s.log.Warn("could not tell which positions an operator set; each is checked for deletes compaction may have removed", zap.Error(err))
		}
		stored, keeps, err := s.storedOffsets(ctx, store, topics)
		if err != nil {
			return nil, err
		}
		if keeps {
			if err := s.checkIdentity(ctx, store, stored, logs, offs); err != nil {
				return nil, err
			}
		}
		var starts []startPosition
		for t, parts := range offs {
			for p, o := range parts {
				next, ok := stored[t][p]
				starts = append(starts, startPosition{tp: TopicPartition{t, p}, group: o.EpochOffset().Offset, stored: next, hasStored: ok, keeps: keeps})
			}
		}
		logs.risks = s.deleteRisks(ctx, starts, logs)
		for _, start := range starts {
			s.warnForeignCommit(start, logs)
			parts := offs[start.tp.Topic]
			if parts[start.tp.Partition], err = s.startAt(ctx, start, parts[start.tp.Partition], logs, epoch, behind); err != nil {
				return nil, err
			}
		}
		return offs, nil
	}
}

// storedOffsets reads the offsets the target stores for this sink; keeps says whether it stores
// any (false without a store, or before the target has its offsets table).
func (s *Sink) storedOffsets(ctx context.Context, store OffsetStore, topics []string) (stored map[string]map[int32]int64, keeps bool, err error) {
	if store == nil {
		return nil, false, nil
	}
	stored, err = store.Offsets(ctx, s.offsetName, topics)
	if errors.Is(err, ErrOffsetsNotKept) {
		s.log.Info("the target keeps no offsets for this sink yet; going on from the group's commits", zap.Error(err))
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("sink %s: read offsets stored in the target: %w", s.cfg.Name, err)
	}
	return stored, true, nil
}

// startPosition is what is known of an assigned partition's position before it is read.
type startPosition struct {
	tp        TopicPartition
	group     int64 // the group's commit; negative when it has none
	stored    int64 // the offset the target stored, when hasStored
	hasStored bool
	keeps     bool // the target stores this sink's offsets
}

// applied is the position up to which the target holds the partition's records, -1 when that is
// unknown or nothing: the offset the target stored, else the group's commit; -1 for a target
// that stores offsets but lost this one (see targetLost), which is read again from the start.
func (sp startPosition) applied() int64 {
	switch {
	case sp.hasStored:
		return sp.stored
	case sp.keeps && sp.group > 0:
		return -1
	default:
		return sp.group
	}
}

// startAt takes the worker's fence of a partition and returns the offset to read it from: o, the
// group's, unless the target or the log says otherwise.
func (s *Sink) startAt(ctx context.Context, sp startPosition, o kgo.Offset, logs topicLogs, epoch int32, behind *catchUp) (kgo.Offset, error) {
	tp := sp.tp
	switch {
	case !sp.hasStored && sp.keeps && sp.group > 0:
		// The group has applied records the target has no offset for: every batch stores its
		// offset there, so the target lost what it held.
		s.fences.assign(tp, -1, epoch)
		pos, err := s.resumeAt(ctx, tp, s.targetLost(tp, sp.group), logs)
		if err != nil {
			return o, err
		}
		behind.add(tp.Topic, tp.Partition, pos)
		return kgo.NewOffset().At(pos), nil
	case !sp.hasStored:
		s.fences.assign(tp, -1, epoch)
		at := sp.group
		if at < 0 && !logs.cleanups[tp.Topic].CompactOnly {
			at = 0 // no position: the partition's first records Kafka no longer has are lost too
		}
		if at < 0 {
			return o, nil
		}
		if err := s.reportDeletes(ctx, tp, sp.applied(), logs); err != nil {
			return o, err
		}
		pos, err := s.resumeAt(ctx, tp, at, logs)
		if err != nil || pos == at {
			return o, err
		}
		return kgo.NewOffset().At(pos), nil
	default:
		// The fence is what the target holds; the position may have to move past what Kafka no
		// longer has.
		s.fences.assign(tp, sp.stored, epoch)
		if err := s.reportDeletes(ctx, tp, sp.applied(), logs); err != nil {
			return o, err
		}
		pos, err := s.resumeAt(ctx, tp, sp.stored, logs)
		if err != nil {
			return o, err
		}
		if sp.group != pos {
			behind.add(tp.Topic, tp.Partition, pos)
		}
		return kgo.NewOffset().At(pos), nil
	}
}

// targetLost says that the target stores no offset for tp although the group committed at: a
// new or restored database, an offsets table dropped. What the sink wrote there before is gone,
// so the partition is read again from its start (positions before the log's start are reported
// lost, as for any position).
func (s *Sink) targetLost(tp TopicPartition, at int64) int64 {
	s.log.Error("the target stores no offset for a partition the group has applied records of: it lost what the sink "+
		"wrote there (a new or restored database, an offsets table dropped); reading the partition again from its start",
		zap.String("topic", tp.Topic), zap.Int32("partition", tp.Partition), zap.Int64("group_offset", at))
	return 0
}

// catchUp holds offsets that the target stored but the group has not committed: a process killed
// between the target's commit and Kafka's. The group gets them on the next poll; otherwise a
// partition that receives no more records would show that lag, and be read from there by
// consumers that do not seek to the target's offsets, for good.
type catchUp struct {
	mu      sync.Mutex
	offsets map[string]map[int32]kgo.EpochOffset
}

func (c *catchUp) add(topic string, partition int32, at int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.offsets == nil {
		c.offsets = map[string]map[int32]kgo.EpochOffset{}
	}
	if c.offsets[topic] == nil {
		c.offsets[topic] = map[int32]kgo.EpochOffset{}
	}
	c.offsets[topic][partition] = kgo.EpochOffset{Epoch: -1, Offset: at}
}

// drop forgets the partitions this member no longer owns: their new owner commits them.
func (c *catchUp) drop(gone map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for t, parts := range gone {
		for _, p := range parts {
			delete(c.offsets[t], p)
		}
	}
}

// passed forgets a partition's offset once the group has a commit at or past it: the member
// applied and committed records after it, and committing it later would move the group back
// (and, with nothing more to fetch there, leave that lag for good).
func (c *catchUp) passed(topic string, partition int32, next int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o, ok := c.offsets[topic][partition]; ok && o.Offset <= next {
		delete(c.offsets[topic], partition)
	}
}

func (c *catchUp) take() map[string]map[int32]kgo.EpochOffset {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.offsets
	c.offsets = nil
	return out
}

// restore puts back offsets a failed commit took, unless a newer position was added meanwhile.
func (c *catchUp) restore(offs map[string]map[int32]kgo.EpochOffset) {
	for topic, parts := range offs {
		for p, o := range parts {
			c.mu.Lock()
			_, newer := c.offsets[topic][p]
			c.mu.Unlock()
			if !newer {
				c.add(topic, p, o.Offset)
			}
		}
	}
}

// commit commits the offsets behind holds. The records after them are not applied yet, so the
// commit is never ahead of the target; a failed commit keeps them for the next call, and is
// logged.
func (c *catchUp) commit(ctx context.Context, cl *kgo.Client, log *zap.Logger) {
	offs := c.take()
	n := 0
	for _, parts := range offs {
		n += len(parts)
	}
	if n == 0 {
		return
	}
	var cerr error
	cl.CommitOffsetsSync(ctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err == nil {
			err = commitResponseErr(resp)
		}
		cerr = err
	})
	if cerr != nil {
		// Kept for the next idle poll: dropped, the group's lag would stay forever on partitions
		// with nothing more to fetch (a sink alive, polling, and never catching up).
		c.restore(offs)
		log.Warn("could not commit the offsets the target is ahead at to the group; trying again", zap.Error(cerr))
		return
	}
	log.Info("committed to the group the offsets the target was ahead at", zap.Int("partitions", n))
}

// commitResponseErr is the first partition error of an offset commit response.
func commitResponseErr(resp *kmsg.OffsetCommitResponse) error {
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, err)
			}
		}
	}
	return nil
}

// storedClient returns the client once session has stored it. The client joins the group from
// inside kgo.NewClient, so its first callback can run before NewClient has returned.
func storedClient(ctx context.Context, client *atomic.Pointer[kgo.Client]) (*kgo.Client, error) {
	for {
		if cl := client.Load(); cl != nil {
			return cl, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}
