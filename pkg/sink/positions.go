package sink

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// Where a worker resumes a partition must still be in the partition's log; otherwise records
// were lost or the log is not the one the position was counted in, and reading on from it would
// leave the target wrong without a word. On every assignment the worker compares its position
// (the offset the target stored, else the group's commit) with the log as Kafka holds it now:
//
//   - Below the log start: Kafka deleted records the sink never applied (retention,
//     DeleteRecords). They are gone; the worker reports them (an error, the counter
//     backflow_sink_lost_records_total and a problem in status) and resumes at the log start.
//     A sink without a position (a new one, or one whose group's commits expired) starts at
//     offset 0 for this check: it would otherwise fill its target with only the rows changed
//     since the first record Kafka still has. On a topic whose cleanup.policy is compact alone,
//     the log start moves only past records compaction removed as superseded (kafka.CompactOnly):
//     every key's latest state follows, nothing is reported, and the worker resumes there.
//   - Past the log end: the topic was deleted and created again, or the broker lost data. The
//     worker reads the partition again from its start (duplicates, never a loss) and warns.
//   - A target that stores offsets also stores, per partition, the ID of the topic its offset
//     counts in (see identityPartition). Another ID means the topic was created again, perhaps
//     on a new cluster, with an offset that may still be in range: the stored offset is void, and
//     the partition is read again from its start.
//
// While consuming, a partition that falls out of its log (OffsetOutOfRange: the sink fell behind
// retention) is not reset by the client (kgo.NoResetOffset), which would skip the deleted records
// silently: the worker rejoins its group (errOutOfRange) and the check above reports them. A
// topic deleted and created again while consumed stops the client's reads of it for good
// (UNKNOWN_TOPIC_ID): the worker rejoins (errTopicRecreated) with a client that reads the new
// one, from where the checks above say.

// errOutOfRange ends a worker's membership when a partition fell out of its log while consumed:
// it rejoins, and adjustOffsets reports what was lost and where it resumes.
var errOutOfRange = errors.New("a partition's position is no longer in its log")

// errTopicRecreated ends a worker's membership when a topic it consumes was deleted and created
// again while it ran: its client keeps the old topic's ID and never reads the new one. The new
// membership's client does, and adjustOffsets checks the positions.
var errTopicRecreated = errors.New("a topic was deleted and created again")

// partitionLog is what Kafka holds of a partition: its first and next offsets, and on a
// compacted topic its delete horizon (kafka.DeleteHorizons; 0 when it has none).
type partitionLog struct {
	start, end, horizon int64
}

// topicLogs is what Kafka holds of the assigned topics.
type topicLogs struct {
	parts map[TopicPartition]partitionLog
	ids   map[string]int64 // topic -> idFingerprint of its ID; absent when the broker has none
	// cleanups holds how the topics' records go (kafka.Cleanups): a topic whose log start moves
	// only by compaction is CompactOnly. A topic whose configuration could not be read is not in
	// it.
	cleanups map[string]kafka.Cleanup
	// operator holds the partitions an operator moved the group's position of (operatorCommits).
	operator map[TopicPartition]operatorCommit
	// risks holds the partitions whose deletes are at risk, or may be (deleteRisks).
	risks map[TopicPartition]deleteRisk
}

// readLogs lists the start and end offsets, the IDs and the cleanup policies of topics. A
// partition whose offsets could not be listed is left out, and not checked.
func readLogs(ctx context.Context, cl *kgo.Client, topics []string, log *zap.Logger) (topicLogs, error) {
	adm := kadm.NewClient(cl)
	logs := topicLogs{parts: map[TopicPartition]partitionLog{}, ids: map[string]int64{}}
	var err error
	if logs.cleanups, err = kafka.Cleanups(ctx, adm, topics...); err != nil {
		// Taken as topics whose first records may have been deleted: a loss reported that
		// compaction made, rather than one kept quiet.
		log.Warn("could not read the topics' cleanup.policy; a partition's log start past the sink's position counts as records lost",
			zap.Error(err))
	}
	horizons, err := kafka.DeleteHorizons(ctx, adm, time.Now(), logs.cleanups)
	if err != nil {
		log.Warn("could not find the records older than the topics' delete.retention.ms; deletes compaction may have removed "+
			"before the sink applied them go unreported", zap.Error(err))
	}
	starts, ends, err := bounds(ctx, adm, topics)
	if err != nil {
		return logs, err
	}
	starts.Each(func(o kadm.ListedOffset) {
		e, ok := ends.Lookup(o.Topic, o.Partition)
		if o.Err == nil && ok && e.Err == nil {
			logs.parts[TopicPartition{o.Topic, o.Partition}] = partitionLog{start: o.Offset, end: e.Offset, horizon: horizons[o.Topic][o.Partition]}
		}
	})
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return logs, fmt.Errorf("describe topics %v: %w", topics, err)
	}
	for _, d := range details {
		if fp := idFingerprint(d.ID); d.Err == nil && fp != 0 {
			logs.ids[d.Topic] = fp
		}
	}
	return logs, nil
}

// deleteRisks finds the partitions that the sink resumes while they still hold records from
// where the target stands (startPosition.applied) that are older than their topic's
// delete.retention.ms, among which compaction removed some (kafka.DeleteRisks): the sink was
// behind that long, so deletes may be gone there, tombstone and all (and with them every record
// of the key), before the sink applied them. A position replay --reset set (operatorCommits) is
// not checked: the sink read past it before, deletes and all, or reads into an emptied target.
// A topic whose records could not be read is not checked either, with a warning.
func (s *Sink) deleteRisks(ctx context.Context, starts []startPosition, logs topicLogs) map[TopicPartition]deleteRisk {
	positions := map[string]map[int32]int64{}
	horizons := map[string]map[int32]int64{}
	for _, sp := range starts {
		tp, pos := sp.tp, sp.applied()
		if c, ok := logs.operator[tp]; pos < 0 || (ok && c.byReplay && c.at == pos) || pos >= logs.parts[tp].horizon {
			continue
		}
		if positions[tp.Topic] == nil {
			positions[tp.Topic], horizons[tp.Topic] = map[int32]int64{}, map[int32]int64{}
		}
		positions[tp.Topic][tp.Partition], horizons[tp.Topic][tp.Partition] = pos, logs.parts[tp].horizon
	}
	out := map[TopicPartition]deleteRisk{}
	if len(positions) == 0 {
		return out
	}
	unread := func(topic string, err error) {
		s.log.Warn("could not read the records from the sink's positions to the topic's delete horizon; deletes compaction may "+
			"have removed before the sink applied them go unreported", zap.String("topic", topic), zap.Error(err))
	}
	opts, err := kafka.ClientOpts(s.kcfg, s.log)
	if err != nil {
		unread("", err)
		return out
	}
	for topic, pos := range positions {
		risks, err := kafka.DeleteRisks(ctx, opts, topic, pos, horizons[topic])
		if err != nil {
			unread(topic, err)
			continue
		}
		for p, r := range risks {
			out[TopicPartition{topic, p}] = deleteRisk{at: pos[p], risk: r}
		}
	}
	return out
}

// deleteRisk is the kafka.DeleteRisk of the sink's position at in a partition.
type deleteRisk struct {
	at   int64
	risk kafka.DeleteRisk
}

// reportDeletes reports the deletes at risk (deleteRisks) in a partition the sink resumes with
// the target at pos. Nothing in Kafka says which keys they were, so the sink cannot repair the
// target: it reports the records up to the delete horizon (error log, metric, a record in the
// dead-letter topic that status finds) and goes on. When compaction removed every record from
// pos to the horizon, their age is unknown (kafka.DeleteRiskUnknown): a warning only, since the
// embedded broker does that to any sink stopped for an hour while its keys changed.
func (s *Sink) reportDeletes(ctx context.Context, tp TopicPartition, pos int64, logs topicLogs) error {
	r, ok := logs.risks[tp]
	if !ok || r.at != pos {
		return nil
	}
	horizon := logs.parts[tp].horizon
	fields := []zap.Field{zap.String("topic", tp.Topic), zap.Int32("partition", tp.Partition), zap.Int64("from_offset", pos),
		zap.Int64("to_offset", horizon), zap.Duration("delete_retention", logs.cleanups[tp.Topic].DeleteRetention)}
	switch r.risk {
	case kafka.DeleteRiskUnknown:
		s.log.Warn("compaction removed every record from the sink's position to the first one younger than the topic's "+
			"delete.retention.ms; if a delete among them was older than that, the target keeps its row. "+observe.DeletesAtRiskRepair, fields...)
	case kafka.DeletesAtRisk:
		lr := observe.LostRange{Topic: tp.Topic, Partition: tp.Partition, From: pos, To: horizon, At: time.Now(), DeletesAtRisk: true}
		s.log.Error("the sink resumes before records older than the topic's delete.retention.ms, among which compaction removed "+
			"some: deletes may be gone, and the target may keep rows the warehouse deleted. "+observe.DeletesAtRiskRepair,
			append(fields, zap.Int64("records", lr.To-lr.From))...)
		s.metrics.Lost(s.cfg.Name, lr)
		return s.dlq.sendLost(ctx, lr)
	}
	return nil
}

// operatorCommit is a group commit an operator made, not the sink: by replay --reset (its
// commits carry kafka.ResetCommitMetadata), or by another tool (kafka-consumer-groups
// --reset-offsets and the like commit without metadata; a sink's own commits carry its member
// ID).
type operatorCommit struct {
	at       int64
	byReplay bool
}

// operatorCommits returns the partitions whose committed offset in group an operator set.
func operatorCommits(ctx context.Context, cl *kgo.Client, group string) (map[TopicPartition]operatorCommit, error) {
	committed, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("fetch the offsets of group %s: %w", group, err)
	}
	out := map[TopicPartition]operatorCommit{}
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && (o.Metadata == kafka.ResetCommitMetadata || o.Metadata == "") {
			out[TopicPartition{o.Topic, o.Partition}] = operatorCommit{at: o.At, byReplay: o.Metadata == kafka.ResetCommitMetadata}
		}
	})
	return out, nil
}

// warnForeignCommit says what becomes of a group position another tool set (operatorCommit):
// the target's stored offset wins over it (replay --reset moves both), or the sink resumes there.
func (s *Sink) warnForeignCommit(sp startPosition, logs topicLogs) {
	c, ok := logs.operator[sp.tp]
	if !ok || c.byReplay || c.at != sp.group {
		return
	}
	fields := []zap.Field{zap.String("topic", sp.tp.Topic), zap.Int32("partition", sp.tp.Partition), zap.Int64("group_offset", sp.group)}
	if sp.hasStored && sp.stored != sp.group {
		s.log.Warn("the group's offset was set by another tool (kafka-consumer-groups --reset-offsets?), but the target stores "+
			"its own and it wins: the sink resumes where the target stands. To replay or skip records, use backflow replay "+
			"(--reset moves the group and the target's offsets together)", append(fields, zap.Int64("stored_offset", sp.stored))...)
		return
	}
	if !sp.hasStored {
		s.log.Warn("the group's offset was set by another tool (kafka-consumer-groups --reset-offsets?): the sink resumes there; "+
			"records the target had not applied before it are skipped, and those after it it had are applied again", fields...)
	}
}

// idFingerprint is the first 63 bits of a topic ID, as an offset store can hold it (a bigint);
// 0 for the zero ID of brokers without topic IDs (before Kafka 2.8).
func idFingerprint(id kadm.TopicID) int64 {
	return int64(binary.BigEndian.Uint64(id[:8]) >> 1)
}

// identityPartition is the partition number under which a target that stores offsets keeps the
// ID fingerprint of partition p's topic: -1 for partition 0, -2 for partition 1, and so on.
// Rows with a negative partition in an offsets table are these.
func identityPartition(p int32) int32 { return -1 - p }

// checkIdentity compares the topic IDs stored in the target with the topics' IDs now, for the
// partitions offs assigns. A partition whose topic was created again gets the start of its new
// log as its stored offset (in stored too), and a partition without a stored ID gets the current
// one. Without an OffsetResetter nothing is stored, and nothing checked.
func (s *Sink) checkIdentity(ctx context.Context, store OffsetStore, stored map[string]map[int32]int64, logs topicLogs,
	offs map[string]map[int32]kgo.Offset) error {
	rs, ok := store.(OffsetResetter)
	if !ok {
		return nil
	}
	write := map[string]map[int32]int64{}
	set := func(t string, p int32, v int64) {
		if write[t] == nil {
			write[t] = map[int32]int64{}
		}
		write[t][p] = v
	}
	for t, parts := range offs {
		id, known := logs.ids[t]
		if !known {
			continue
		}
		for p := range parts {
			was, has := stored[t][identityPartition(p)]
			switch {
			case !has:
				set(t, identityPartition(p), id)
			case was != id:
				log, listed := logs.parts[TopicPartition{t, p}]
				if !listed {
					continue // checked at the next assignment
				}
				s.log.Warn("the topic was created again since the target stored its offset: the stored offset counts in the old topic; "+
					"reading the partition again from its start",
					zap.String("topic", t), zap.Int32("partition", p), zap.Int64("stored_offset", stored[t][p]), zap.Int64("start", log.start))
				set(t, p, log.start)
				set(t, identityPartition(p), id)
			}
		}
	}
	if len(write) == 0 {
		return nil
	}
	if err := rs.ResetOffsets(ctx, s.offsetName, write); err != nil {
		return fmt.Errorf("sink %s: store topic IDs in the target: %w", s.cfg.Name, err)
	}
	for t, parts := range write {
		for p, v := range parts {
			if p >= 0 {
				stored[t][p] = v
			}
		}
	}
	return nil
}

// resumeAt returns where to read tp from, given the position the worker would resume at (a
// negative one: none, the log start), after reporting what the log no longer holds of it. Records
// deleted before the sink applied them are also written down in the dead-letter topic, before
// the sink moves past them: that is what keeps them in status once this process is gone.
func (s *Sink) resumeAt(ctx context.Context, tp TopicPartition, pos int64, logs topicLogs) (int64, error) {
	log, ok := logs.parts[tp]
	switch {
	case !ok || pos < 0 || (pos >= log.start && pos <= log.end):
		return pos, nil
	case pos < log.start && logs.cleanups[tp.Topic].CompactOnly:
		s.log.Info("compaction removed records of the partition from the sink's position on, each superseded by a later "+
			"record of its key (or a delete older than delete.retention.ms, reported apart); resuming at the partition's first record",
			zap.String("topic", tp.Topic), zap.Int32("partition", tp.Partition), zap.Int64("position", pos), zap.Int64("start", log.start))
		return log.start, nil
	case pos < log.start:
		r := observe.LostRange{Topic: tp.Topic, Partition: tp.Partition, From: pos, To: log.start, At: time.Now()}
		s.log.Error("records were deleted from Kafka before this sink applied them, and the target misses their changes; "+
			"resuming at the partition's first record: re-snapshot their tables to repair",
			zap.String("topic", tp.Topic), zap.Int32("partition", tp.Partition), zap.Int64("from_offset", r.From),
			zap.Int64("to_offset", r.To), zap.Int64("records", r.To-r.From))
		s.metrics.Lost(s.cfg.Name, r)
		if err := s.dlq.sendLost(ctx, r); err != nil {
			return 0, err
		}
		return log.start, nil
	default:
		s.log.Warn("the sink's position is past the end of the partition: the topic was created again or the broker lost data; "+
			"reading the partition again from its start",
			zap.String("topic", tp.Topic), zap.Int32("partition", tp.Partition), zap.Int64("position", pos),
			zap.Int64("start", log.start), zap.Int64("end", log.end))
		return log.start, nil
	}
}
