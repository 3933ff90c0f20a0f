package replay

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// RedriveName is the name under which a re-drive stores offsets in targets that keep them, so a
// re-drive never moves the live sink's position.
func RedriveName(sinkName string) string { return sinkName + ".redrive" }

// Redrive applies every record of the sink's dead-letter topic again, as it stands now, through
// s (built with sink.CollectFailures and prepared). Nothing is removed from the dead-letter
// topic; the records that still fail are returned with their reasons.
func Redrive(ctx context.Context, s *sink.Sink, adm *kadm.Client, progress Progress) (Summary, []sink.Failure, error) {
	start := time.Now()
	topic := s.DLQTopic()
	ranges, err := Resolve(ctx, adm, []string{topic}, From{Earliest: true, raw: "earliest"})
	if err != nil {
		return Summary{}, nil, err
	}
	recs, err := readRanges(ctx, s, ranges)
	if err != nil {
		return Summary{}, nil, err
	}
	var sum Summary
	for _, run := range byOrigin(recs) {
		counts, err := s.Process(ctx, run)
		if err != nil {
			return sum, nil, err
		}
		sum.Add(counts)
		progress.Add(int64(len(run)))
	}
	progress.Finish()
	sum.Duration = time.Since(start)
	return sum, s.Failures(), nil
}

// readRanges reads the given ranges completely.
func readRanges(ctx context.Context, s *sink.Sink, ranges []Range) ([]*kgo.Record, error) {
	consume := map[string]map[int32]kgo.Offset{}
	left := map[string]int64{}
	for _, r := range ranges {
		if r.Count() == 0 {
			continue
		}
		if consume[r.Topic] == nil {
			consume[r.Topic] = map[int32]kgo.Offset{}
		}
		consume[r.Topic][r.Partition] = kgo.NewOffset().At(r.Start)
		left[key(r.Topic, r.Partition)] = r.End
	}
	if len(left) == 0 {
		return nil, nil
	}
	kopts, err := s.KafkaOpts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(kopts, kgo.ConsumePartitions(consume))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := left[key(r.Topic, r.Partition)]
			if !ok || r.Offset >= end {
				return
			}
			out = append(out, r)
			if r.Offset+1 >= end {
				delete(left, key(r.Topic, r.Partition))
			}
		})
	}
	return out, nil
}

// byOrigin turns dead letters back into the records they were, grouped into runs of the same
// original topic partition in dead-letter order.
func byOrigin(dlq []*kgo.Record) [][]*kgo.Record {
	var runs [][]*kgo.Record
	for _, d := range dlq {
		orig := &kgo.Record{Key: d.Key, Value: d.Value, Topic: header(d, sink.HeaderTopic)}
		p, _ := strconv.ParseInt(header(d, sink.HeaderPartition), 10, 32)
		orig.Partition = int32(p)
		orig.Offset, _ = strconv.ParseInt(header(d, sink.HeaderOffset), 10, 64)
		n := len(runs)
		if n > 0 && runs[n-1][0].Topic == orig.Topic && runs[n-1][0].Partition == orig.Partition {
			runs[n-1] = append(runs[n-1], orig)
			continue
		}
		runs = append(runs, []*kgo.Record{orig})
	}
	return runs
}

func header(r *kgo.Record, k string) string {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

// DryRun describes a plan for people: one line per partition, then the total.
func DryRun(p *Plan) string {
	out := fmt.Sprintf("replay group %s", p.Group)
	if p.Resume {
		out += " (resuming an interrupted run)"
	}
	out += "\n"
	for _, r := range p.Ranges {
		out += fmt.Sprintf("  %s/%d  start %d  end %d  records %d\n", r.Topic, r.Partition, r.Start, r.End, r.Count())
	}
	return out + fmt.Sprintf("total %d records\n", p.Total())
}
