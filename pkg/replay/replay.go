package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// Summary is what a replay did.
type Summary struct {
	sink.Counts
	Lost     int64 // records of the ranges Kafka deleted before the replay read them (skipDeleted)
	Duration time.Duration
}

func (s Summary) String() string {
	lost := ""
	if s.Lost > 0 {
		lost = fmt.Sprintf("; %d record(s) Kafka deleted before the replay read them are lost to it (see the log)", s.Lost)
	}
	return fmt.Sprintf("read %d records: %d applied, %d skipped by filter or policy, %d sent to the dead-letter topic%s, in %s",
		s.Records, s.Applied, s.Filtered, s.DeadLettered, lost, s.Duration.Round(time.Millisecond))
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
	group := GroupName(s.Group(), from)
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
	if errors.Is(err, sink.ErrOffsetsNotKept) {
		return nil // nothing of this replay's progress is kept there
	}
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
// group after every applied round. It returns when every range is done, or when ctx ends (the
// committed progress lets the same command resume).
func Run(ctx context.Context, s *sink.Sink, adm *kadm.Client, plan *Plan, progress Progress, log *zap.Logger) (Summary, error) {
	start := time.Now()
	s.OrderTruncates()
	kopts, err := s.KafkaOpts()
	if err != nil {
		return Summary{}, err
	}
	src := newRanges(plan, s.BatchSize()*s.Concurrency(), newTruncates(s), adm, progress, log)
	if len(src.end) == 0 {
		return Summary{Duration: time.Since(start)}, nil
	}
	src.kopts = append(kopts, kgo.FetchMaxPartitionBytes(sink.FetchPartitionBytes))
	src.kopts = append(src.kopts, kafka.CommittedReadOpts()...)
	if err := src.open(); err != nil {
		return Summary{}, err
	}
	defer func() { src.cl.Close() }()
	err = s.ApplyRounds(ctx, src)
	sum := Summary{Counts: src.counts, Lost: src.lost, Duration: time.Since(start)}
	if err != nil {
		return sum, err
	}
	progress.Finish()
	log.Info("replay done", zap.String("group", plan.Group), zap.Stringer("summary", sum))
	return sum, nil
}

// ranges are a replay's rounds: the records of its offset ranges, with the progress committed to
// its group after each round. A round takes a batch per partition at most, for as many
// partitions as the sink applies at once: an interrupted replay re-applies at most what it had
// in hand.
type ranges struct {
	cl        *kgo.Client
	kopts     []kgo.Opt // the consumer's options, but the partitions it consumes
	adm       *kadm.Client
	group     string
	size      int
	progress  Progress
	log       *zap.Logger
	end       map[sink.TopicPartition]int64 // where each range ends
	polled    map[sink.TopicPartition]int64 // the offset each range is polled up to
	committed map[sink.TopicPartition]int64 // the offset each range is applied up to
	last      map[*kgo.Record]bool          // records after which their range ends
	counts    sink.Counts
	lost      int64 // records Kafka deleted before they were read (skipDeleted)
	// skips are the partitions skipDeleted took past records Kafka deleted, until that position
	// is committed (see skipped).
	skips map[sink.TopicPartition]skip
	trunc *truncates

	stallAfter time.Duration // see watch
	quietSince time.Time     // since when polls found nothing, though ranges wait for records
	reopened   int           // how many times watch reopened the consumer
	stuck      int           // how many of those in a row, without records since
}

// newRanges returns the ranges of plan with records left.
func newRanges(plan *Plan, size int, trunc *truncates, adm *kadm.Client, progress Progress, log *zap.Logger) *ranges {
	r := &ranges{adm: adm, group: plan.Group, size: size, progress: progress, log: log, trunc: trunc,
		end: map[sink.TopicPartition]int64{}, polled: map[sink.TopicPartition]int64{},
		committed: map[sink.TopicPartition]int64{}, last: map[*kgo.Record]bool{}, skips: map[sink.TopicPartition]skip{},
		stallAfter: stallAfter}
	for _, pr := range plan.Ranges {
		if pr.Count() > 0 {
			tp := sink.TopicPartition{Topic: pr.Topic, Partition: pr.Partition}
			r.end[tp], r.polled[tp], r.committed[tp] = pr.End, pr.Start, pr.Start
		}
	}
	return r
}

// open opens the consumer of the ranges at their positions: a range's next offset, or, for a
// partition held at a truncate's copy, the offset after the records kept aside (paused).
func (r *ranges) open() error {
	consume := map[string]map[int32]kgo.Offset{}
	paused := map[string][]int32{}
	for tp, end := range r.end {
		at := r.polled[tp]
		if h := r.trunc.held[tp]; h != nil {
			at = h.next()
			paused[tp.Topic] = append(paused[tp.Topic], tp.Partition)
		} else if at >= end {
			continue
		}
		if consume[tp.Topic] == nil {
			consume[tp.Topic] = map[int32]kgo.Offset{}
		}
		consume[tp.Topic][tp.Partition] = kgo.NewOffset().At(at)
	}
	// Records deleted before they are read are reported (skipDeleted), not skipped by the client.
	cl, err := kgo.NewClient(append(slices.Clone(r.kopts), kgo.ConsumePartitions(consume), kgo.ConsumeResetOffset(kgo.NoResetOffset()))...)
	if err != nil {
		return fmt.Errorf("replay consumer: %w", err)
	}
	cl.PauseFetchPartitions(paused)
	r.cl = cl
	return nil
}

// stallAfter is how long a replay polls without records, while partitions that have records
// left are not held at a truncate and nothing is being applied, before it takes its consumer for
// stuck: records up to each range's end were on the broker when the replay was planned.
const stallAfter = 30 * time.Second

// maxReopens is how many times in a row watch reopens a stuck consumer before the replay fails.
const maxReopens = 3

// watch notes whether a poll found records, and reopens the consumer at the ranges' positions,
// with a warning that names them, once polls found nothing for stallAfter while the ranges wait
// for records. A consumer whose fetches stopped for good then goes on, instead of a replay that
// polls once a second forever; one that still hands out nothing after maxReopens reopens fails
// the replay with the same names (run again, it resumes from its committed progress).
func (r *ranges) watch(found bool) error {
	if found {
		r.stuck = 0
	}
	if found || !r.waiting() {
		r.quietSince = time.Time{}
		return nil
	}
	if r.quietSince.IsZero() {
		r.quietSince = time.Now()
		return nil
	}
	quiet := time.Since(r.quietSince)
	if quiet < r.stallAfter {
		return nil
	}
	r.quietSince = time.Time{}
	var waiting []string
	for tp, end := range r.end {
		if r.polled[tp] < end && r.trunc.held[tp] == nil {
			waiting = append(waiting, fmt.Sprintf("%s/%d at %d of %d", tp.Topic, tp.Partition, r.polled[tp], end))
		}
	}
	slices.Sort(waiting)
	if r.stuck >= maxReopens {
		return fmt.Errorf("replay %s: no records from %s, which have records left, though the consumer was reopened %d times, %s apart",
			r.group, strings.Join(waiting, ", "), r.stuck, r.stallAfter)
	}
	r.stuck++
	r.reopened++
	r.log.Warn("replay: no records from partitions that have records left; reopening the consumer at the replay's positions",
		zap.String("group", r.group), zap.Duration("quiet", quiet), zap.Strings("waiting", waiting), zap.Int("reopened", r.reopened))
	old := r.cl
	if err := r.open(); err != nil {
		return err
	}
	old.Close()
	return nil
}

// waiting reports whether a poll should have found records: a partition not held at a truncate
// has records left in its range, and nothing is being applied.
func (r *ranges) waiting() bool {
	if len(r.trunc.inflight) > 0 {
		return false
	}
	for tp, end := range r.end {
		if r.polled[tp] < end && r.trunc.held[tp] == nil {
			return true
		}
	}
	return false
}

// idlePoll bounds a Poll that nothing else bounds.
const idlePoll = time.Second

// Poll returns the records of the next poll that lie within the ranges; io.EOF once every range
// is polled to its end. The records kept aside at a truncate go first, once it is applied.
func (r *ranges) Poll(ctx context.Context, wait time.Duration) (sink.Round, error) {
	if err := r.commitSkipped(ctx); err != nil {
		return nil, err
	}
	if err := r.trunc.settle(ctx, r); err != nil {
		return nil, err
	}
	open := false
	for tp, end := range r.end {
		open = open || r.polled[tp] < end
	}
	if !open {
		return nil, io.EOF
	}
	recs := r.trunc.released
	var gone []sink.TopicPartition
	if len(recs) > 0 {
		r.trunc.released = map[sink.TopicPartition][]*kgo.Record{}
	} else {
		var err error
		if recs, gone, err = r.poll(ctx, wait); err != nil {
			return nil, err
		}
		if err := r.watch(len(recs) > 0 || len(gone) > 0); err != nil {
			return nil, err
		}
	}
	round := sink.Round{}
	for tp, in := range recs {
		if take := r.take(tp, in); len(take) > 0 {
			round[tp] = take
		}
	}
	r.trunc.polled(round)
	if len(gone) > 0 { // after take: the consumer reopens where the records taken end
		if err := r.skipDeleted(ctx, gone); err != nil {
			return nil, err
		}
	}
	return round, nil
}

// poll returns the records of the next fetches, by partition, and the partitions whose next
// records Kafka deleted (OffsetOutOfRange).
func (r *ranges) poll(ctx context.Context, wait time.Duration) (map[sink.TopicPartition][]*kgo.Record, []sink.TopicPartition, error) {
	// Never wait for records for good: with every open partition held at a truncate's copy
	// (paused), none come, and only the next Poll's settle applies the truncate.
	if wait <= 0 {
		wait = idlePoll
	}
	pctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	fs := r.cl.PollRecords(pctx, r.size)
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	var ferr error
	var gone []sink.TopicPartition
	fs.EachError(func(t string, p int32, err error) {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
		case errors.Is(err, kerr.OffsetOutOfRange) && !slices.Contains(gone, sink.TopicPartition{Topic: t, Partition: p}):
			gone = append(gone, sink.TopicPartition{Topic: t, Partition: p})
		case !errors.Is(err, kerr.OffsetOutOfRange):
			ferr = errors.Join(ferr, fmt.Errorf("fetch %s/%d: %w", t, p, err))
		}
	})
	if ferr != nil {
		return nil, nil, ferr
	}
	out := map[sink.TopicPartition][]*kgo.Record{}
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		tp := sink.TopicPartition{Topic: p.Topic, Partition: p.Partition}
		if len(p.Records) > 0 && !r.trunc.keep(tp, p.Records) {
			out[tp] = append(out[tp], p.Records...)
		}
	})
	return out, gone, nil
}

// take returns the data records of a partition's next records (markers included) that a round
// takes: those within its range, up to a truncate's copy.
func (r *ranges) take(tp sink.TopicPartition, recs []*kgo.Record) []*kgo.Record {
	end, ok := r.end[tp]
	if !ok || len(recs) == 0 {
		return nil
	}
	if r.polled[tp] >= end {
		r.finish(tp) // records past the end, fetched before it was paused
		return nil
	}
	in := within(recs, end)
	// The range ends in this round past its last record, or before its last offsets
	// (compacted away); a transaction's marker counts as a record here, and goes no further.
	ended := len(in) < len(recs) || (len(in) > 0 && in[len(in)-1].Offset+1 >= end)
	next := end
	if len(in) > 0 {
		next = in[len(in)-1].Offset + 1
	}
	data, at := r.trunc.cut(r.cl, tp, recs, len(in))
	switch {
	case at != nil:
		r.polled[tp] = at.Offset // the range goes on after the truncate
	case ended:
		r.polled[tp] = end
		r.finish(tp)
		if len(data) > 0 {
			r.last[data[len(data)-1]] = true
		}
	default:
		r.polled[tp] = next
	}
	return data
}

// finish pauses a partition polled to its range's end. Fetching it on would only bring records
// the replay drops, and worse: once it reached the log's end, the client's next fetch would wait
// there for new records (up to the fetch's max wait, 5 s), and a partition resumed after a
// truncate meanwhile would get nothing until that fetch returned.
func (r *ranges) finish(tp sink.TopicPartition) {
	r.cl.PauseFetchPartitions(map[string][]int32{tp.Topic: {tp.Partition}})
}

// Commit commits where each partition of an applied round continues (with the range's end in
// the metadata) to the replay's group, and reports the progress.
func (r *ranges) Commit(ctx context.Context, round sink.Round, c sink.Counts) error {
	offsets := kadm.Offsets{}
	var done int64
	for tp, recs := range round {
		end := r.end[tp]
		next := end
		if n := len(recs); n > 0 && !r.last[recs[n-1]] {
			next = recs[n-1].Offset + 1
		}
		if n := len(recs); n > 0 {
			delete(r.last, recs[n-1])
		}
		done += next - r.committed[tp]
		r.committed[tp] = next
		offsets.Add(kadm.Offset{Topic: tp.Topic, Partition: tp.Partition, At: next, LeaderEpoch: -1, Metadata: endMeta(end)})
	}
	done += r.skipped(offsets)
	if err := r.commit(ctx, offsets); err != nil {
		return err
	}
	r.counts.Add(c)
	r.progress.Add(done)
	r.trunc.committed(round)
	return nil
}

func (r *ranges) commit(ctx context.Context, offsets kadm.Offsets) error {
	resp, err := r.adm.CommitOffsets(ctx, r.group, offsets)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("commit replay progress to group %s: %w", r.group, err)
	}
	return nil
}

// skip is where the records Kafka deleted before a replay read them begin and end on a
// partition (see skipDeleted).
type skip struct{ from, to int64 }

// skipped adds to offsets the partitions whose deleted records are now behind everything applied
// of them, at the end of those records, and returns how many offsets that moves them on. Without
// it, a replay that went past deleted records and found none after them in its range (or was
// interrupted before it applied any) committed no position past them: run again, it reported
// them lost again.
func (r *ranges) skipped(offsets kadm.Offsets) int64 {
	var done int64
	for tp, s := range r.skips {
		c := r.committed[tp]
		if c < s.from { // records before the deleted ones are still being applied
			continue
		}
		if c < s.to {
			done += s.to - c
			r.committed[tp] = s.to
			offsets.Add(kadm.Offset{Topic: tp.Topic, Partition: tp.Partition, At: s.to, LeaderEpoch: -1, Metadata: endMeta(r.end[tp])})
		}
		delete(r.skips, tp)
	}
	return done
}

// commitSkipped commits the positions past deleted records that no round's commit took (see
// skipped): a round without records of the partition is never committed.
func (r *ranges) commitSkipped(ctx context.Context) error {
	if len(r.skips) == 0 {
		return nil
	}
	offsets := kadm.Offsets{}
	done := r.skipped(offsets)
	if len(offsets) == 0 {
		return nil
	}
	if err := r.commit(ctx, offsets); err != nil {
		return err
	}
	r.progress.Add(done)
	return nil
}

// Idle does nothing: a replay is in no consumer group.
func (r *ranges) Idle() {}

// Ahead is always true: no rebalance waits for a replay.
func (r *ranges) Ahead() bool { return true }

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
	described, err := adm.DescribeGroups(ctx, s.Group())
	if err != nil {
		return fmt.Errorf("describe group %s: %w", s.Group(), err)
	}
	if g, ok := described[s.Group()]; ok && len(g.Members) > 0 && !force {
		return fmt.Errorf("sink group %s has %d live member(s): stop its workers first, or pass --force", s.Group(), len(g.Members))
	}
	offsets := kadm.Offsets{}
	stored := map[string]map[int32]int64{}
	for _, r := range ranges {
		offsets.Add(kadm.Offset{Topic: r.Topic, Partition: r.Partition, At: r.Start, LeaderEpoch: -1, Metadata: kafka.ResetCommitMetadata})
		if stored[r.Topic] == nil {
			stored[r.Topic] = map[int32]int64{}
		}
		stored[r.Topic][r.Partition] = r.Start
	}
	resp, err := adm.CommitOffsets(ctx, s.Group(), offsets)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("reset group %s: %w", s.Group(), err)
	}
	if rs, ok := s.Connector().(sink.OffsetResetter); ok {
		if err := rs.ResetOffsets(ctx, s.Name(), stored); err != nil {
			return fmt.Errorf("reset offsets stored in the target: %w", err)
		}
	}
	return nil
}
