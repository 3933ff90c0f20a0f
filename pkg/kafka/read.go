package kafka

import (
	"context"
	"fmt"

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
