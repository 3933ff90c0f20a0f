package replay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// Summary is what a replay did.
type Summary struct {
	sink.Counts
	Duration time.Duration
}

func (s Summary) String() string {
	return fmt.Sprintf("read %d records: %d applied, %d skipped by filter or policy, %d sent to the dead-letter topic, in %s",
		s.Records, s.Applied, s.Filtered, s.DeadLettered, s.Duration.Round(time.Millisecond))
}

// Progress receives the number of offsets done as a replay advances.
type Progress interface {
	Add(n int64)
	Finish()
}

// NewPlan plans a bounded backfill of s from from: its own group (named after the sink and the
// start, so running the same command again resumes), the ranges up to the high watermarks of
// now, or those of the interrupted run it resumes.
func NewPlan(ctx context.Context, adm *kadm.Client, s *sink.Sink, from From) (*Plan, error) {
	group := GroupName(s.Name(), from)
	ranges, err := Resolve(ctx, adm, s.Topics(), from)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Group: group, Ranges: ranges}
	committed, err := adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) || errors.Is(err, kadm.ErrEmpty) {
		err = nil // a first run: no progress yet
	}
	if err != nil {
		return nil, fmt.Errorf("read progress of replay group %s: %w", group, err)
	}
	for i, r := range plan.Ranges {
		c, ok := committed.Lookup(r.Topic, r.Partition)
		if !ok || c.Err != nil {
			continue
		}
		plan.Resume = true
		plan.Ranges[i].Start = c.At
		if end, ok := parseEnd(c.Metadata); ok {
			plan.Ranges[i].End = end
		}
	}
	if plan.Resume {
		return plan, resumeFromTarget(ctx, s, group, plan)
	}
	return plan, nil
}

// resumeFromTarget moves a resumed plan's starts to the offsets the target stored in the same
// transactions as the rows, when it is ahead of the group (a kill between the target's commit and
// Kafka's): the target is the truth, so nothing is applied twice.
func resumeFromTarget(ctx context.Context, s *sink.Sink, group string, plan *Plan) error {
	store, ok := s.Connector().(sink.OffsetStore)
	if !ok {
		return nil
	}
	stored, err := store.Offsets(ctx, group, s.Topics())
	if err != nil {
		return fmt.Errorf("read replay progress stored in the target: %w", err)
	}
	for i, r := range plan.Ranges {
		if next, ok := stored[r.Topic][r.Partition]; ok && next > r.Start {
			plan.Ranges[i].Start = min(next, r.End)
		}
	}
	return nil
}

// endMeta records a range's end in the commit metadata, so a resumed replay stops where the
// original would have.
func endMeta(end int64) string { return "end=" + strconv.FormatInt(end, 10) }

func parseEnd(meta string) (int64, bool) {
	v, ok := strings.CutPrefix(meta, "end=")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// Run applies the plan through s (which must be prepared) and commits progress to the plan's
// group after every applied poll. It returns when every range is done, or when ctx ends (the
// committed progress lets the same command resume).
func Run(ctx context.Context, s *sink.Sink, adm *kadm.Client, plan *Plan, progress Progress, log *zap.Logger) (Summary, error) {
	start := time.Now()
	var sum Summary
	remaining := map[string]Range{}
	consume := map[string]map[int32]kgo.Offset{}
	for _, r := range plan.Ranges {
		if r.Count() == 0 {
			continue
		}
		remaining[key(r.Topic, r.Partition)] = r
		if consume[r.Topic] == nil {
			consume[r.Topic] = map[int32]kgo.Offset{}
		}
		consume[r.Topic][r.Partition] = kgo.NewOffset().At(r.Start)
	}
	if len(remaining) == 0 {
		sum.Duration = time.Since(start)
		return sum, nil
	}
	kopts, err := s.KafkaOpts()
	if err != nil {
		return sum, err
	}
	cl, err := kgo.NewClient(append(kopts, kgo.ConsumePartitions(consume), kgo.FetchMaxPartitionBytes(sink.FetchPartitionBytes))...)
	if err != nil {
		return sum, fmt.Errorf("replay consumer: %w", err)
	}
	defer cl.Close()
	for len(remaining) > 0 {
		n, err := pollOnce(ctx, cl, s, adm, plan.Group, remaining, &sum.Counts)
		if err != nil {
			sum.Duration = time.Since(start)
			return sum, err
		}
		progress.Add(n)
	}
	progress.Finish()
	sum.Duration = time.Since(start)
	log.Info("replay done", zap.String("group", plan.Group), zap.Stringer("summary", sum))
	return sum, nil
}

// pollOnce applies one poll's records of the remaining ranges and commits the progress.
func pollOnce(ctx context.Context, cl *kgo.Client, s *sink.Sink, adm *kadm.Client, group string,
	remaining map[string]Range, total *sink.Counts) (int64, error) {
	// A batch per partition at most, for as many partitions as the sink applies at once: an
	// interrupted replay re-applies at most what it had in hand.
	fs := cl.PollRecords(ctx, s.BatchSize()*s.Concurrency())
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var ferr error
	fs.EachError(func(t string, p int32, err error) { ferr = errors.Join(ferr, fmt.Errorf("fetch %s/%d: %w", t, p, err)) })
	if ferr != nil {
		return 0, ferr
	}
	var work []partitionWork
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if r, ok := remaining[key(p.Topic, p.Partition)]; ok && len(p.Records) > 0 {
			work = append(work, partitionWork{r: r, fetched: p.Records})
		}
	})
	if err := applyParallel(ctx, s, work, total); err != nil {
		return 0, err
	}
	offsets := kadm.Offsets{}
	var done int64
	for _, w := range work {
		next := w.next()
		if next >= w.r.End {
			delete(remaining, key(w.r.Topic, w.r.Partition))
		} else {
			remaining[key(w.r.Topic, w.r.Partition)] = Range{Topic: w.r.Topic, Partition: w.r.Partition, Start: next, End: w.r.End}
		}
		done += next - w.r.Start
		offsets.Add(kadm.Offset{Topic: w.r.Topic, Partition: w.r.Partition, At: next, LeaderEpoch: -1, Metadata: endMeta(w.r.End)})
	}
	if len(offsets) > 0 {
		resp, err := adm.CommitOffsets(ctx, group, offsets)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return done, fmt.Errorf("commit replay progress to group %s: %w", group, err)
		}
	}
	return done, nil
}

// partitionWork is one partition's records of a poll.
type partitionWork struct {
	r       Range
	fetched []*kgo.Record
	counts  sink.Counts
}

// next is where the partition continues: after the fetched records, or its end when reached.
func (w *partitionWork) next() int64 {
	next := w.fetched[len(w.fetched)-1].Offset + 1
	if next >= w.r.End || len(within(w.fetched, w.r.End)) < len(w.fetched) {
		return w.r.End
	}
	return next
}

// applyParallel applies the partitions' records side by side, each partition in order (in
// batches of the sink's size, see sink.Process).
func applyParallel(ctx context.Context, s *sink.Sink, work []partitionWork, total *sink.Counts) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.Concurrency())
	for i := range work {
		w := &work[i]
		g.Go(func() error {
			c, err := s.Process(gctx, within(w.fetched, w.r.End))
			w.counts.Add(c)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, w := range work {
		total.Add(w.counts)
	}
	return nil
}

// within returns the records before end.
func within(recs []*kgo.Record, end int64) []*kgo.Record {
	for i, r := range recs {
		if r.Offset >= end {
			return recs[:i]
		}
	}
	return recs
}

func key(topic string, p int32) string { return topic + "/" + strconv.Itoa(int(p)) }

// Reset moves the sink's own group to the plan's start offsets (and the offsets the target
// stores, for targets that keep them). It refuses while the group has live members, unless
// force is set.
func Reset(ctx context.Context, adm *kadm.Client, s *sink.Sink, ranges []Range, force bool) error {
	described, err := adm.DescribeGroups(ctx, s.Name())
	if err != nil {
		return fmt.Errorf("describe group %s: %w", s.Name(), err)
	}
	if g, ok := described[s.Name()]; ok && len(g.Members) > 0 && !force {
		return fmt.Errorf("sink group %s has %d live member(s): stop its workers first, or pass --force", s.Name(), len(g.Members))
	}
	offsets := kadm.Offsets{}
	stored := map[string]map[int32]int64{}
	for _, r := range ranges {
		offsets.Add(kadm.Offset{Topic: r.Topic, Partition: r.Partition, At: r.Start, LeaderEpoch: -1})
		if stored[r.Topic] == nil {
			stored[r.Topic] = map[int32]int64{}
		}
		stored[r.Topic][r.Partition] = r.Start
	}
	resp, err := adm.CommitOffsets(ctx, s.Name(), offsets)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("reset group %s: %w", s.Name(), err)
	}
	if rs, ok := s.Connector().(sink.OffsetResetter); ok {
		if err := rs.ResetOffsets(ctx, s.Name(), stored); err != nil {
			return fmt.Errorf("reset offsets stored in the target: %w", err)
		}
	}
	return nil
}
