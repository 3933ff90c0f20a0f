package redis

import (
	"context"
	"fmt"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// Redis loses data more readily than a database: a restart without persistence, or with the last
// snapshot only, a FLUSHALL, a failover to a replica that lagged. A sink that went on from the
// consumer group's commit would never write again the rows Redis lost. So the connector keeps,
// in Redis itself, each partition's next offset (sink.OffsetStore), written after the batch's
// writes (never ahead of them: a snapshot that has the offset has the writes), and the runtime
// resumes partitions from there:
//
//   - Redis back at an older snapshot holds an older offset: the batch's fence (fence.check)
//     finds it is not the one the worker holds (sink.Fence.Offset), refuses the batch as fenced,
//     and the worker rejoins and reads again from it.
//   - Redis emptied holds none: the same check refuses the batch, and the runtime, finding no
//     offset where the group has applied records, reads the partitions again from their start.
//
// The offsets of a sink and topic are a hash, field per partition, and each partition's also a
// key of its own, which its worker WATCHes (workers of other partitions never touch it). A marker
// key says the sink keeps offsets here: a sink that wrote here before it kept them (an older
// version) finds keys of its template but no marker, and is told to go on from the group's
// commits (sink.ErrOffsetsNotKept) rather than read everything again.

// OffsetKeyPrefix starts the keys of the stored offsets: backflow:offsets:<sink>:<topic> (a
// hash of partition to next offset), backflow:offsets:<sink>:<topic>:<partition>, and
// backflow:offsets:<sink> (the marker).
const OffsetKeyPrefix = "backflow:offsets:"

func offsetsHash(sinkName, topic string) string { return OffsetKeyPrefix + sinkName + ":" + topic }

func offsetKey(sinkName, topic string, partition int32) string {
	return offsetsHash(sinkName, topic) + ":" + strconv.Itoa(int(partition))
}

func offsetsMarker(sinkName string) string { return OffsetKeyPrefix + sinkName }

var _ sink.OffsetStore = (*connector)(nil)

// Offsets returns the stored next offset of each partition of topics for sinkName.
func (c *connector) Offsets(ctx context.Context, sinkName string, topics []string) (map[string]map[int32]int64, error) {
	kept, err := c.client.Exists(ctx, offsetsMarker(sinkName)).Result()
	if err != nil {
		return nil, wrapBatch("read offsets", err)
	}
	if kept == 0 {
		written, err := c.anyKeyWritten(ctx)
		if err != nil {
			return nil, err
		}
		if written {
			return nil, fmt.Errorf("redis: keys of template %q but no offsets of sink %s: %w", c.cfg.key.text, sinkName, sink.ErrOffsetsNotKept)
		}
	}
	out := make(map[string]map[int32]int64, len(topics))
	for _, topic := range topics {
		fields, err := c.client.HGetAll(ctx, offsetsHash(sinkName, topic)).Result()
		if err != nil {
			return nil, wrapBatch("read offsets of "+topic, err)
		}
		for p, v := range fields {
			part, perr := strconv.ParseInt(p, 10, 32)
			next, verr := strconv.ParseInt(v, 10, 64)
			if perr != nil || verr != nil {
				return nil, fmt.Errorf("redis: %s holds %q: %q, not a partition and an offset", offsetsHash(sinkName, topic), p, v)
			}
			if out[topic] == nil {
				out[topic] = map[int32]int64{}
			}
			out[topic][int32(part)] = next
		}
	}
	return out, nil
}

// anyKeyWritten reports whether the database holds a key the template renders (any key at all
// when the template starts with a placeholder).
func (c *connector) anyKeyWritten(ctx context.Context) (bool, error) {
	if c.cfg.key.prefix() == "" {
		n, err := c.client.DBSize(ctx).Result()
		if err != nil {
			return false, wrapBatch("count keys", err)
		}
		return n > 0, nil
	}
	var cursor uint64
	for {
		keys, next, err := c.client.Scan(ctx, cursor, c.cfg.key.pattern(), 1000).Result()
		if err != nil {
			return false, wrapBatch("scan "+c.cfg.key.pattern(), err)
		}
		for _, k := range keys {
			if c.cfg.key.owns(k) {
				return true, nil
			}
		}
		if next == 0 {
			return false, nil
		}
		cursor = next
	}
}

// storeOffset records the batch's next offset once its writes are in, under the WATCH of the
// fence, which checks that the partition's offset key still holds the worker's offset; without
// a fence (a replay), as is.
func (c *connector) storeOffset(ctx context.Context, f *fence, b *sink.Batch, sinkName string) error {
	key := offsetKey(sinkName, b.Topic, b.Partition)
	write := func(pipe goredis.Pipeliner) error {
		pipe.Set(ctx, key, b.NextOffset, 0)
		pipe.HSet(ctx, offsetsHash(sinkName, b.Topic), strconv.Itoa(int(b.Partition)), b.NextOffset)
		pipe.Set(ctx, offsetsMarker(sinkName), 1, 0)
		f.queue(ctx, pipe)
		return nil
	}
	if f == nil {
		_, err := c.client.TxPipelined(ctx, write)
		return markWatchErr(err)
	}
	err := c.watched(ctx, f, nil, func(tx *goredis.Tx) error { // checks the fence, offset included
		_, err := tx.TxPipelined(ctx, write)
		return err
	})
	return markWatchErr(err)
}

var _ sink.OffsetResetter = (*connector)(nil)

// ResetOffsets sets the stored next offsets of sinkName in one MULTI/EXEC, so that `backflow
// replay --reset` moves Redis's position along with the group's (the runtime resumes from what
// Redis holds); the runtime also keeps topic identities through it, under negative partitions.
func (c *connector) ResetOffsets(ctx context.Context, sinkName string, next map[string]map[int32]int64) error {
	_, err := c.client.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
		for topic, parts := range next {
			for p, off := range parts {
				pipe.HSet(ctx, offsetsHash(sinkName, topic), strconv.Itoa(int(p)), off)
				if p >= 0 {
					pipe.Set(ctx, offsetKey(sinkName, topic, p), off, 0)
				}
			}
		}
		pipe.Set(ctx, offsetsMarker(sinkName), 1, 0)
		return nil
	})
	if err != nil {
		return wrapBatch("reset offsets of "+sinkName, err)
	}
	return nil
}
