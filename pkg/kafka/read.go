package kafka

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadToEnd calls fn for every record of topic, from each partition's first offset up to the end
// offsets taken when it is called; records written later are not read. opts are the connection
// options (brokers, TLS, SASL). Within a partition records come in offset order.
func ReadToEnd(ctx context.Context, opts []kgo.Opt, topic string, fn func(*kgo.Record)) error {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("read %s: list start offsets: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("read %s: list end offsets: %w", topic, err)
	}
	want := map[int32]kgo.Offset{}
	last := map[int32]int64{} // the last offset to read per partition
	ends.Each(func(o kadm.ListedOffset) {
		start, _ := starts.Lookup(topic, o.Partition)
		if o.Offset > start.Offset {
			want[o.Partition] = kgo.NewOffset().At(start.Offset)
			last[o.Partition] = o.Offset - 1
		}
	})
	if len(want) == 0 {
		return nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: want})
	for len(last) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fs.Err0(); err != nil {
			return fmt.Errorf("read %s: %w", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := last[r.Partition]
			if !ok || r.Offset > end {
				return
			}
			fn(r)
			if r.Offset >= end {
				delete(last, r.Partition)
			}
		})
	}
	return nil
}

// firstOffsetsWait bounds FirstOffsets: a partition that yields no record by then (only
// transaction markers or aborted records up to its end) is left out.
const firstOffsetsWait = 5 * time.Second

// FirstOffsets returns, for each partition p of topic in from, the offset of the first record
// the partition still holds at or after from[p]: compaction and transactions leave gaps in a
// partition's offsets. A partition with no record there before its end is left out. opts are
// the connection options (brokers, TLS, SASL).
func FirstOffsets(ctx context.Context, opts []kgo.Opt, topic string, from map[int32]int64) (map[int32]int64, error) {
	out := map[int32]int64{}
	if len(from) == 0 {
		return out, nil
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", topic, err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: list end offsets: %w", topic, err)
	}
	want := map[int32]kgo.Offset{}
	for p, at := range from {
		if end, ok := ends.Lookup(topic, p); ok && at < end.Offset {
			want[p] = kgo.NewOffset().At(at)
		}
	}
	if len(want) == 0 {
		return out, nil
	}
	wait, cancel := context.WithTimeout(ctx, firstOffsetsWait)
	defer cancel()
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: want})
	for len(out) < len(want) {
		fs := cl.PollFetches(wait)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if wait.Err() != nil {
			return out, nil // what is left holds no record up to its end
		}
		if err := fs.Err0(); err != nil {
			return nil, fmt.Errorf("read %s: %w", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if _, seen := out[r.Partition]; !seen {
				out[r.Partition] = r.Offset
				cl.PauseFetchPartitions(map[string][]int32{topic: {r.Partition}})
			}
		})
	}
	return out, nil
}
