package testenv

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ConsumeAll reads topic from its start offsets up to the high watermarks taken at call time (with
// fresh metadata, so a topic created a moment ago is seen) and returns the records in partition
// order, then offset order. Control records are not returned; a partition whose high watermark
// follows only control records (transactions) is read until ctx ends.
func ConsumeAll(ctx context.Context, brokers []string, topic string) ([]*kgo.Record, error) {
	starts, ends, err := offsetBounds(ctx, brokers, topic)
	if err != nil {
		return nil, err
	}
	want := map[int32]kgo.Offset{}
	for p, end := range ends {
		if end > starts[p] {
			want[p] = kgo.NewOffset().At(starts[p])
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: want}))
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", topic, err)
	}
	defer cl.Close()
	return pollUntil(ctx, cl, topic, ends, want)
}

// offsetBounds returns the start and end offsets of every partition of topic.
func offsetBounds(ctx context.Context, brokers []string, topic string) (starts, ends map[int32]int64, err error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, nil, fmt.Errorf("offsets of %s: %w", topic, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if starts, err = listOffsets(ctx, adm.ListStartOffsets, topic); err != nil {
		return nil, nil, err
	}
	if ends, err = listOffsets(ctx, adm.ListEndOffsets, topic); err != nil {
		return nil, nil, err
	}
	return starts, ends, nil
}

func listOffsets(ctx context.Context, list func(context.Context, ...string) (kadm.ListedOffsets, error), topic string) (map[int32]int64, error) {
	listed, err := list(ctx, topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// pollUntil polls until every partition in want has delivered the record before its end offset.
func pollUntil(ctx context.Context, cl *kgo.Client, topic string, ends map[int32]int64, want map[int32]kgo.Offset) ([]*kgo.Record, error) {
	byPart := map[int32][]*kgo.Record{}
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("consume %s: %d partitions not read to the end: %w", topic, len(want), err)
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) { ferr = fmt.Errorf("consume %s[%d]: %w", topic, p, err) })
		if ferr != nil {
			return nil, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < ends[r.Partition] {
				byPart[r.Partition] = append(byPart[r.Partition], r)
			}
			if r.Offset+1 >= ends[r.Partition] {
				delete(want, r.Partition)
			}
		})
	}
	return flatten(byPart), nil
}

func flatten(byPart map[int32][]*kgo.Record) []*kgo.Record {
	var out []*kgo.Record
	for p := int32(0); len(byPart) > 0; p++ {
		out = append(out, byPart[p]...)
		delete(byPart, p)
	}
	return out
}
