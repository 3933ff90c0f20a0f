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
// The offsets of a sink and topic are one hash, a field per partition: the one record of an
// offset, so that nothing can hold two (an eviction of one of two keys would fence the worker at
// every try). The offset is stored by a script that checks the fence (generation and offset) and
// writes in one step, so workers of other partitions writing the same hash never conflict. A
// marker key says the sink keeps offsets here: a sink that wrote here before it kept them (an
// older version) finds keys of its template, no offsets and no marker, and is told to go on from
// the group's commits (sink.ErrOffsetsNotKept) rather than read everything again.

// OffsetKeyPrefix starts the keys of the stored offsets: backflow:offsets:<sink>:<topic> (a
// hash of partition to next offset) and backflow:offsets:<sink> (the marker).
const OffsetKeyPrefix = "backflow:offsets:"

func offsetsHash(sinkName, topic string) string { return OffsetKeyPrefix + sinkName + ":" + topic }

func partitionField(p int32) string { return strconv.Itoa(int(p)) }

func offsetsMarker(sinkName string) string { return OffsetKeyPrefix + sinkName }

var _ sink.OffsetStore = (*connector)(nil)

// Offsets returns the stored next offset of each partition of topics for sinkName.
func (c *connector) Offsets(ctx context.Context, sinkName string, topics []string) (map[string]map[int32]int64, error) {
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
	if len(out) > 0 {
		return out, nil
	}
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

// storeScript stores a partition's next offset (ARGV[3]) in its hash field (KEYS[1], ARGV[1])
// and sets the marker (KEYS[3]). With a fence (ARGV[6] = 1) it first checks, in the same step,
// that the fence key (KEYS[2]) holds no newer generation than ARGV[4] and the field holds the
// worker's offset (ARGV[2]; -1: none), and stores the generation for ARGV[5] ms. It returns 1, or
// 0 for a newer generation, -1 for another offset.
var storeScript = goredis.NewScript(`
if ARGV[6] == '1' then
  local gen = redis.call('GET', KEYS[2])
  if gen and tonumber(gen) > tonumber(ARGV[4]) then return 0 end
  local held = redis.call('HGET', KEYS[1], ARGV[1])
  if ARGV[2] == '-1' then
    if held then return -1 end
  elseif held ~= ARGV[2] then
    return -1
  end
  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SET', KEYS[3], 1)
return 1`)

// storeOffset records the batch's next offset once its writes are in, checking the fence in the
// same step (storeScript); without a fence (a replay), as is.
func (c *connector) storeOffset(ctx context.Context, f *fence, b *sink.Batch, sinkName string) error {
	// Without a fence the script reads no fence key; the marker stands in for it.
	fenceKey, epoch, held, fenced := offsetsMarker(sinkName), int64(0), int64(-1), "0"
	if f != nil {
		fenceKey, epoch, held, fenced = f.key, f.epoch, f.offset, "1"
	}
	keys := []string{offsetsHash(sinkName, b.Topic), fenceKey, offsetsMarker(sinkName)}
	res, err := storeScript.Run(ctx, c.client, keys, partitionField(b.Partition), held, b.NextOffset, epoch,
		fenceTTL.Milliseconds(), fenced).Int()
	switch {
	case err != nil:
		return wrapBatch("store offset in "+keys[0], err)
	case res == 0:
		return fmt.Errorf("redis: %s holds a newer generation than %d, this worker's: %w", fenceKey, epoch, sink.ErrFenced)
	case res < 0:
		return fmt.Errorf("redis: %s does not hold offset %d of partition %d, as this worker does: Redis lost writes since (a restart, a flush, a failover): %w",
			keys[0], held, b.Partition, sink.ErrFenced)
	}
	return nil
}

var _ sink.OffsetResetter = (*connector)(nil)

// ResetOffsets sets the stored next offsets of sinkName in one MULTI/EXEC, so that `backflow
// replay --reset` moves Redis's position along with the group's (the runtime resumes from what
// Redis holds); the runtime also keeps topic identities through it, under negative partitions.
func (c *connector) ResetOffsets(ctx context.Context, sinkName string, next map[string]map[int32]int64) error {
	_, err := c.client.TxPipelined(ctx, func(pipe goredis.Pipeliner) error {
		for topic, parts := range next {
			for p, off := range parts {
				pipe.HSet(ctx, offsetsHash(sinkName, topic), partitionField(p), off)
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
