package replay

import (
	"context"
	"fmt"
	"slices"

	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// skipDeleted takes the partitions whose next records Kafka deleted before the replay read them
// (retention, or a delete-records, while the replay ran or since it was interrupted; the
// consumer reports OffsetOutOfRange, as kgo.NoResetOffset asks) on to their log's first offset,
// and reopens the consumer there. Nothing brings those records back: each range lost is logged
// as an error and counted in the summary (Summary.Lost), where a client left to reset itself
// would skip them without a word. A compacted topic's log start moves past records only when
// later ones of their keys superseded them: no loss is reported there.
func (r *ranges) skipDeleted(ctx context.Context, gone []sink.TopicPartition) error {
	var topics []string
	for _, tp := range gone {
		if !slices.Contains(topics, tp.Topic) {
			topics = append(topics, tp.Topic)
		}
	}
	starts, err := r.adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("replay %s: list the first offsets of %v, whose records the replay had not read were deleted: %w", r.group, topics, err)
	}
	compactOnly, err := kafka.CompactOnly(ctx, r.adm, topics...)
	if err != nil {
		r.log.Warn("could not read the topics' cleanup.policy: records a compaction removed count as lost", zap.Error(err))
	}
	for _, tp := range gone {
		start, ok := starts.Lookup(tp.Topic, tp.Partition)
		from := r.polled[tp]
		if !ok || start.Offset <= from {
			return fmt.Errorf("replay %s: %s/%d: offset %d is out of the partition's range (first offset %d), yet not deleted: "+
				"was the topic created again?", r.group, tp.Topic, tp.Partition, from, start.Offset)
		}
		to := min(start.Offset, r.end[tp])
		r.polled[tp] = to
		r.skips[tp] = skip{from: from, to: to}
		if compactOnly[tp.Topic] {
			r.log.Info("replay: compaction removed records of the range, each superseded by a later record of its key; going on at the partition's first record",
				zap.String("group", r.group), zap.String("topic", tp.Topic), zap.Int32("partition", tp.Partition),
				zap.Int64("from_offset", from), zap.Int64("to_offset", to))
			continue
		}
		r.lost += to - from
		r.log.Error("replay: Kafka deleted records of the range before the replay read them; they are lost to it, and rows only "+
			"they carried are not replayed: `backflow snapshot --table` sends every row of a table again",
			zap.String("group", r.group), zap.String("topic", tp.Topic), zap.Int32("partition", tp.Partition),
			zap.Int64("from_offset", from), zap.Int64("to_offset", to), zap.Int64("records", to-from))
	}
	old := r.cl
	if err := r.open(); err != nil {
		return err
	}
	old.Close()
	return nil
}
