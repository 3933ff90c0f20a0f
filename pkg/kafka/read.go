package kafka

import (
	"context"
	"fmt"
	"slices"
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

// scanWait bounds scanRanges: what a partition has not yielded by then is not read.
const scanWait = 5 * time.Second

// rangeScan is what reading a partition from one offset up to another found.
type rangeScan struct {
	first    int64 // the offset of the first record read; -1 when none was
	gap      bool  // an offset of the range read holds no record (compaction removed it, or a transaction marker)
	complete bool  // every offset of the range was read
}

// decided says whether reading more of the range up to to can change what s tells of deletes
// (rangeScan.risk): not after its end, nor after a gap behind a record of the range.
func (s rangeScan) decided(to int64) bool {
	return s.complete || (s.gap && s.first >= 0 && s.first < to)
}

// scanRanges reads, for each partition p of topic in from, its records from from[p] up to
// to[p] (exclusive), for at most scanWait, and says what it found (rangeScan). It stops reading
// a partition at the first gap after a record of the range. opts are the connection options
// (brokers, TLS, SASL).
func scanRanges(ctx context.Context, opts []kgo.Opt, topic string, from, to map[int32]int64) (map[int32]rangeScan, error) {
	out := map[int32]rangeScan{}
	want := map[int32]kgo.Offset{}
	next := map[int32]int64{} // the offset each partition's next record has when nothing is missing
	for p, at := range from {
		out[p] = rangeScan{first: -1}
		if at < to[p] {
			want[p], next[p] = kgo.NewOffset().At(at), at
		}
	}
	if len(want) == 0 {
		return out, nil
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", topic, err)
	}
	defer cl.Close()
	wait, cancel := context.WithTimeout(ctx, scanWait)
	defer cancel()
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: want})
	for left := len(want); left > 0; {
		fs := cl.PollFetches(wait)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if wait.Err() != nil {
			return out, nil // the rest is not read
		}
		if err := fs.Err0(); err != nil {
			return nil, fmt.Errorf("read %s: %w", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			s, ok := out[r.Partition]
			if !ok || s.decided(to[r.Partition]) {
				return
			}
			if s.first < 0 {
				s.first = r.Offset
			}
			s.gap = s.gap || r.Offset != next[r.Partition]
			next[r.Partition] = r.Offset + 1
			s.complete = r.Offset+1 >= to[r.Partition]
			out[r.Partition] = s
			if s.decided(to[r.Partition]) {
				left--
				cl.PauseFetchPartitions(map[string][]int32{topic: {r.Partition}})
			}
		})
	}
	return out, nil
}

// CommittedReadOpts are the options of a client that reads topics up to offsets listed
// beforehand (ListCommittedOffsets: replays, re-drives, tail): it reads the records of committed
// transactions only, as sinks apply them, and keeps the transactions' control records (markers),
// so that a partition whose last offsets are markers still reaches its end. Readers skip those
// (Record.Attrs.IsControl). A topic written without transactions has neither.
func CommittedReadOpts() []kgo.Opt {
	return []kgo.Opt{kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords()}
}

// DataRecords returns recs without the control records CommittedReadOpts keeps, in the same
// backing array when there are none.
func DataRecords(recs []*kgo.Record) []*kgo.Record {
	if !slices.ContainsFunc(recs, isControl) {
		return recs
	}
	return slices.DeleteFunc(slices.Clone(recs), isControl)
}

func isControl(r *kgo.Record) bool { return r.Attrs.IsControl() }

// OnlyMarkers reports, for each partition p of topic in from, whether it holds nothing a
// committed reader is handed from offset from[p] up to to[p] (exclusive): only transaction
// markers, and the records of aborted transactions. A consumer of a topic written in
// transactions commits the offset after its last record, so its group stays short of the end by
// the markers and aborted records after it. One client reads every partition, for at most
// scanWait; a partition not decided by then is false (it counts as data). On an error it returns
// what it found before it. opts are the connection options (brokers, TLS, SASL).
func OnlyMarkers(ctx context.Context, opts []kgo.Opt, topic string, from, to map[int32]int64) (map[int32]bool, error) {
	out := map[int32]bool{}
	want := map[int32]kgo.Offset{}
	for p, at := range from {
		if at >= to[p] {
			out[p] = true
		} else {
			want[p] = kgo.NewOffset().At(at)
		}
	}
	if len(want) == 0 {
		return out, nil
	}
	cl, err := kgo.NewClient(append(slices.Clone(opts), CommittedReadOpts()...)...)
	if err != nil {
		return out, fmt.Errorf("read %s: %w", topic, err)
	}
	defer cl.Close()
	wait, cancel := context.WithTimeout(ctx, scanWait)
	defer cancel()
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: want})
	for len(want) > 0 {
		fs := cl.PollFetches(wait)
		if wait.Err() != nil {
			return out, ctx.Err() // the rest counts as data
		}
		if err := fs.Err0(); err != nil {
			return out, fmt.Errorf("read %s: %w", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if _, open := want[r.Partition]; !open {
				return
			}
			switch {
			case r.Offset >= to[r.Partition]:
				out[r.Partition] = true
			case !r.Attrs.IsControl():
				out[r.Partition] = false
			case r.Offset+1 >= to[r.Partition]:
				out[r.Partition] = true
			default:
				return
			}
			delete(want, r.Partition)
			cl.PauseFetchPartitions(map[string][]int32{topic: {r.Partition}})
		})
	}
	return out, nil
}
