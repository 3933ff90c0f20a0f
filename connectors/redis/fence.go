package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// A fence keeps a worker that has lost a partition from writing to Redis for it again (see
// sink.Fence). The offsets Redis keeps (offsets.go) are written after the writes, so the token
// is the consumer-group generation in which the worker was assigned the partition: each
// transaction of a batch WATCHes the partition's fence key, refuses to run when it holds a newer
// generation, and stores its own in the same MULTI/EXEC as the writes. A new owner's first write thus shuts out the old owner's
// later ones, and a write of the old owner racing it aborts on the WATCH.
type fence struct {
	key   string
	epoch int64
	// offHash and offField hold the partition's offset, which must be offset (-1: none): see
	// offsets.go. They are read, not WATCHed: the offset is stored by a script that checks it.
	offHash, offField string
	offset            int64
}

// FenceKeyPrefix starts the keys that hold the fences, one per sink and partition:
// backflow:fence:<sink>:<topic>:<partition>.
const FenceKeyPrefix = "backflow:fence:"

// fenceTTL is how long a fence key outlives the last write of its partition. It only has to
// outlast a worker that lost the partition (whose applies the runtime cancels within the
// rebalance timeout); a short life lets a consumer group that was deleted and created again,
// whose generations start again from 1, write after that long.
const fenceTTL = 10 * time.Minute

// fenceOf returns the fence a batch must pass, or nil when the runtime holds none (a replay).
func (c *connector) fenceOf(b *sink.Batch) *fence {
	if !b.Fence.Held {
		return nil
	}
	name := b.Sink
	if name == "" {
		name = c.sinkName
	}
	return &fence{key: FenceKeyPrefix + name + ":" + b.Topic + ":" + strconv.Itoa(int(b.Partition)), epoch: int64(b.Fence.Epoch),
		offHash: offsetsHash(name, b.Topic), offField: partitionField(b.Partition), offset: b.Fence.Offset}
}

// check refuses the batch when the fence key holds a newer generation than the worker's, or the
// offset key another offset than the worker holds (Redis lost writes since), reading both in one
// round trip.
func (f *fence) check(ctx context.Context, r goredis.Cmdable) error {
	var epoch, offset *goredis.StringCmd
	_, _ = r.Pipelined(ctx, func(pipe goredis.Pipeliner) error {
		epoch, offset = pipe.Get(ctx, f.key), pipe.HGet(ctx, f.offHash, f.offField)
		return nil
	})
	stored, err := stored(epoch, f.key)
	if err != nil {
		return err
	}
	if stored > f.epoch {
		return fmt.Errorf("redis: %s holds generation %d, this worker was assigned the partition in generation %d: %w", f.key, stored, f.epoch, sink.ErrFenced)
	}
	if stored, err = storedOr(offset, f.offHash, -1); err != nil {
		return err
	}
	if stored != f.offset {
		return fmt.Errorf("redis: %s holds offset %d for partition %s, not %d as this worker does: Redis lost writes since (a restart, a flush, a failover): %w",
			f.offHash, stored, f.offField, f.offset, sink.ErrFenced)
	}
	return nil
}

// stored reads an integer reply, 0 when the key is absent.
func stored(cmd *goredis.StringCmd, key string) (int64, error) { return storedOr(cmd, key, 0) }

// storedOr reads an integer reply, absent when the key is absent.
func storedOr(cmd *goredis.StringCmd, key string, absent int64) (int64, error) {
	n, err := cmd.Int64()
	switch {
	case errors.Is(err, goredis.Nil):
		return absent, nil
	case err != nil:
		return 0, wrapBatch("read "+key, err)
	}
	return n, nil
}

// queue stores the worker's generation in the transaction of the writes.
func (f *fence) queue(ctx context.Context, pipe goredis.Pipeliner) {
	if f != nil {
		pipe.Set(ctx, f.key, f.epoch, fenceTTL)
	}
}

// watched runs fn, which checks nothing and queues the writes of one MULTI/EXEC, inside a WATCH
// of the fence key (and of keys, which fn reads): the fence is checked first, and the
// transaction runs again when the fence key or one of keys changed meanwhile.
func (c *connector) watched(ctx context.Context, f *fence, keys []string, fn func(tx *goredis.Tx) error) error {
	if f != nil {
		keys = append(keys, f.key)
	}
	var err error
	for range watchAttempts {
		err = c.client.Watch(ctx, func(tx *goredis.Tx) error {
			if f != nil {
				if err := f.check(ctx, tx); err != nil {
					return err
				}
			}
			return fn(tx)
		}, keys...)
		if !errors.Is(err, goredis.TxFailedErr) {
			return err
		}
	}
	return sink.Retryable(fmt.Errorf("redis: keys kept changing during %d transactions: %w", watchAttempts, err))
}
