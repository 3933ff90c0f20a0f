package replay

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/observe"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// RedriveName is the name under which a re-drive stores offsets in targets that keep them, so a
// re-drive never moves the live sink's position.
func RedriveName(sinkName string) string { return sinkName + ".redrive" }

// RedriveOptions says which dead letters a re-drive takes and how it reports.
type RedriveOptions struct {
	Select Selection
	// Batch is how many dead letters are held at once (default: the sink's max_records ×
	// concurrency). The dead-letter topic is read in batches of at most this many records.
	Batch int
	// OnBatch, when set, is called with the number of dead letters of each batch read.
	OnBatch func(n int)
	// OnFailure, when set, receives each dead letter that still fails, as soon as it is known.
	OnFailure func(sink.Failure)
	// DryRun selects and checks the dead letters but applies none: Redriven counts those that
	// would be given to the sink.
	DryRun bool
	Log    *zap.Logger
}

// RedriveSummary is what a re-drive did with the dead letters it read.
type RedriveSummary struct {
	Read             int // dead letters read
	Redriven         int // given to the sink again and not failing (applied, or skipped by its filter)
	SkippedNewer     int // left out: the source topic holds a newer record of the same key
	SkippedSelection int // left out by --key, --reason, --since or --until
	Lost             int // records of lost ranges: Kafka deleted them, nothing is left to re-drive
	StillFailing     int // given to the sink again and rejected again
	Counts           sink.Counts
	Duration         time.Duration
}

func (s RedriveSummary) String() string {
	lost := ""
	if s.Lost > 0 {
		lost = fmt.Sprintf(", %d record(s) of lost ranges (deleted from Kafka before they were applied: re-snapshot their tables)", s.Lost)
	}
	return fmt.Sprintf("read %d dead letters: %d re-driven, %d skipped-newer (a newer record of the key in the source topic), "+
		"%d skipped by selection, %d still fail%s, in %s",
		s.Read, s.Redriven, s.SkippedNewer, s.SkippedSelection, s.StillFailing, lost, s.Duration.Round(time.Millisecond))
}

// Redrive applies the selected records of the sink's dead-letter topic again, as they stand now,
// through s (built with sink.CollectFailures and prepared). Nothing is removed from the
// dead-letter topic.
//
// It reads the topic twice, partition by partition, in batches of at most opts.Batch records, so
// memory does not grow with the topic: a first pass notes the keys of the selected dead letters,
// the source partitions they came from are then read once from the smallest original offset to
// their end (newerIndex), and a second pass applies the selected dead letters whose key has no
// newer record in the source. A dead letter older than its key's last state would otherwise put
// that old state back over the newer one the target already has.
func Redrive(ctx context.Context, s *sink.Sink, adm *kadm.Client, opts RedriveOptions, progress Progress) (RedriveSummary, error) {
	start := time.Now()
	if opts.Batch <= 0 {
		opts.Batch = max(s.BatchSize()*s.Concurrency(), 1)
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	kopts, err := s.KafkaOpts()
	if err != nil {
		return RedriveSummary{}, err
	}
	dlq, err := Resolve(ctx, adm, []string{s.DLQTopic()}, From{Earliest: true, raw: "earliest"})
	if err != nil {
		return RedriveSummary{}, fmt.Errorf("dead-letter topic of sink %s: %w", s.Name(), err)
	}
	rd := &redrive{s: s, opts: opts, progress: progress, idx: newNewerIndex()}
	if err := rd.noteKeys(ctx, kopts, dlq); err != nil {
		return RedriveSummary{}, err
	}
	if err := rd.idx.readSource(ctx, kopts, adm, opts.Batch, opts.Log); err != nil {
		return RedriveSummary{}, err
	}
	for _, r := range dlq {
		if err := scan(ctx, kopts, []Range{r}, opts.Batch, rd.apply); err != nil {
			return rd.sum, fmt.Errorf("re-drive dead letters of %s/%d: %w", r.Topic, r.Partition, err)
		}
	}
	progress.Finish()
	rd.sum.Duration = time.Since(start)
	return rd.sum, nil
}

// redrive is the state of one re-drive.
type redrive struct {
	s        *sink.Sink
	opts     RedriveOptions
	progress Progress
	idx      *newerIndex
	sum      RedriveSummary
}

// noteKeys is the first pass: it enters the key of every selected dead letter in the index.
func (rd *redrive) noteKeys(ctx context.Context, kopts []kgo.Opt, dlq []Range) error {
	for _, r := range dlq {
		err := scan(ctx, kopts, []Range{r}, rd.opts.Batch, func(ctx context.Context, recs []*kgo.Record) error {
			for _, d := range recs {
				if _, lost := observe.LostRangeOf(d); !lost && rd.opts.Select.Match(ctx, rd.s, d) {
					rd.idx.want(origin(d))
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read dead letters of %s/%d: %w", r.Topic, r.Partition, err)
		}
	}
	return nil
}

// apply is the second pass over one batch of dead letters: it leaves out the unselected and the
// stale ones and applies the others, run by run of the same original partition.
func (rd *redrive) apply(ctx context.Context, recs []*kgo.Record) error {
	if rd.opts.OnBatch != nil {
		rd.opts.OnBatch(len(recs))
	}
	var keep []*kgo.Record
	for _, d := range recs {
		rd.sum.Read++
		o := origin(d)
		_, lost := observe.LostRangeOf(d)
		switch {
		case lost: // a record of records Kafka deleted: nothing to apply
			rd.sum.Lost++
		case !rd.opts.Select.Match(ctx, rd.s, d):
			rd.sum.SkippedSelection++
		case rd.idx.newer(o):
			rd.sum.SkippedNewer++
			rd.opts.Log.Info("dead letter skipped: its key has a newer record in the source topic",
				zap.String("topic", o.Topic), zap.Int32("partition", o.Partition), zap.Int64("offset", o.Offset),
				zap.Int64("newer_offset", rd.idx.last(o)))
		default:
			keep = append(keep, d)
		}
	}
	if rd.opts.DryRun {
		rd.sum.Redriven += len(keep)
		keep = nil
	}
	for _, run := range byOrigin(keep) {
		counts, err := rd.s.Process(ctx, run)
		if err != nil {
			return err
		}
		rd.sum.Counts.Add(counts)
		failed := rd.s.TakeFailures()
		rd.sum.StillFailing += len(failed)
		rd.sum.Redriven += len(run) - len(failed)
		for _, f := range failed {
			if rd.opts.OnFailure != nil {
				rd.opts.OnFailure(f)
			}
		}
	}
	rd.progress.Add(int64(len(recs)))
	return nil
}

// origin turns a dead letter back into the record it was: its key and value under its original
// topic, partition and offset (from the dead letter's headers).
func origin(d *kgo.Record) *kgo.Record {
	orig := &kgo.Record{Key: d.Key, Value: d.Value, Topic: header(d, sink.HeaderTopic), Offset: -1}
	p, err := strconv.ParseInt(header(d, sink.HeaderPartition), 10, 32)
	if err == nil {
		orig.Partition = int32(p)
	}
	if off, err := strconv.ParseInt(header(d, sink.HeaderOffset), 10, 64); err == nil {
		orig.Offset = off
	}
	return orig
}

// scan reads each range [Start, End) and hands its records to fn in offset order, in batches of
// at most size records: no more than one batch (and the client's buffered fetches) is held at
// once.
func scan(ctx context.Context, kopts []kgo.Opt, ranges []Range, size int, fn func(context.Context, []*kgo.Record) error) error {
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
		return nil
	}
	kopts = append(slices.Clone(kopts), kafka.CommittedReadOpts()...)
	cl, err := kgo.NewClient(append(kopts, kgo.ConsumePartitions(consume), kgo.FetchMaxPartitionBytes(sink.FetchPartitionBytes))...)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	defer cl.Close()
	for len(left) > 0 {
		fs := cl.PollRecords(ctx, size)
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fetchError(fs); err != nil {
			return err
		}
		var batch []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			k := key(r.Topic, r.Partition)
			end, ok := left[k]
			if !ok || r.Offset >= end {
				delete(left, k) // a record past the end: what lay before it is compacted away
				return
			}
			if !r.Attrs.IsControl() { // a transaction's marker only moves the range on
				batch = append(batch, r)
			}
			if r.Offset+1 >= end {
				delete(left, k)
			}
		})
		if len(batch) > 0 {
			if err := fn(ctx, batch); err != nil {
				return err
			}
		}
	}
	return nil
}

// fetchError returns the first fetch error the client gives up on; it retries the others itself
// (a moving leader, a broker restarting).
func fetchError(fs kgo.Fetches) error {
	var out error
	fs.EachError(func(t string, p int32, err error) {
		if out == nil && !kerr.IsRetriable(err) {
			out = fmt.Errorf("fetch %s/%d: %w", t, p, err)
		}
	})
	return out
}

func header(r *kgo.Record, k string) string {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

// byOrigin turns dead letters back into the records they were, grouped into runs of the same
// original topic partition in dead-letter order.
func byOrigin(dlq []*kgo.Record) [][]*kgo.Record {
	var runs [][]*kgo.Record
	for _, d := range dlq {
		orig := origin(d)
		n := len(runs)
		if n > 0 && runs[n-1][0].Topic == orig.Topic && runs[n-1][0].Partition == orig.Partition {
			runs[n-1] = append(runs[n-1], orig)
			continue
		}
		runs = append(runs, []*kgo.Record{orig})
	}
	return runs
}

// newerIndex knows, for the keys of the selected dead letters, the last offset at which their
// original partition holds each key. Keys are kept as 64-bit hashes: an entry costs some 40 bytes
// (hash, offset and map overhead) per distinct key and partition of the selection, about 40 MB for
// a million dead letters, whatever the size of the records or of the source topics. Two keys
// sharing a hash (odds about n²/2^65 for n keys) could only make a dead letter count as stale.
type newerIndex struct {
	seed  maphash.Seed
	keys  map[sink.TopicPartition]map[uint64]int64 // key hash -> last offset seen, -1 before the source is read
	start map[sink.TopicPartition]int64            // the smallest original offset of the partition's dead letters
}

func newNewerIndex() *newerIndex {
	return &newerIndex{seed: maphash.MakeSeed(), keys: map[sink.TopicPartition]map[uint64]int64{},
		start: map[sink.TopicPartition]int64{}}
}

// want enters the key of an original record. Records without a key, origin or offset cannot be
// told stale and are left out.
func (ix *newerIndex) want(orig *kgo.Record) {
	if len(orig.Key) == 0 || orig.Topic == "" || orig.Offset < 0 {
		return
	}
	tp := sink.TopicPartition{Topic: orig.Topic, Partition: orig.Partition}
	if ix.keys[tp] == nil {
		ix.keys[tp] = map[uint64]int64{}
		ix.start[tp] = orig.Offset
	}
	ix.keys[tp][maphash.Bytes(ix.seed, orig.Key)] = -1
	ix.start[tp] = min(ix.start[tp], orig.Offset)
}

// last returns the last offset of orig's key in its original partition, or -1.
func (ix *newerIndex) last(orig *kgo.Record) int64 {
	if len(orig.Key) == 0 {
		return -1
	}
	off, ok := ix.keys[sink.TopicPartition{Topic: orig.Topic, Partition: orig.Partition}][maphash.Bytes(ix.seed, orig.Key)]
	if !ok {
		return -1
	}
	return off
}

// newer reports whether the source partition holds a record of orig's key after orig.
func (ix *newerIndex) newer(orig *kgo.Record) bool {
	return orig.Offset >= 0 && ix.last(orig) > orig.Offset
}

// readSource reads each source partition of the index once, from its smallest original offset to
// the end it has now, and notes the last offset of each indexed key. A partition that cannot be
// listed (its topic deleted) is left out: its dead letters cannot be told stale.
func (ix *newerIndex) readSource(ctx context.Context, kopts []kgo.Opt, adm *kadm.Client, size int, log *zap.Logger) error {
	if len(ix.keys) == 0 {
		return nil
	}
	var topics []string
	seen := map[string]bool{}
	for tp := range ix.keys {
		if !seen[tp.Topic] {
			seen[tp.Topic] = true
			topics = append(topics, tp.Topic)
		}
	}
	ends, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("list end offsets of source topics %v: %w", topics, err)
	}
	var ranges []Range
	ends.Each(func(o kadm.ListedOffset) {
		tp := sink.TopicPartition{Topic: o.Topic, Partition: o.Partition}
		start, ok := ix.start[tp]
		switch {
		case !ok:
		case o.Err != nil:
			log.Warn("source partition of dead letters cannot be read; its dead letters are not checked for newer records",
				zap.String("topic", o.Topic), zap.Int32("partition", o.Partition), zap.Error(o.Err))
		default:
			ranges = append(ranges, Range{Topic: o.Topic, Partition: o.Partition, Start: start, End: o.Offset})
		}
	})
	err = scan(ctx, kopts, ranges, size, func(_ context.Context, recs []*kgo.Record) error {
		for _, r := range recs {
			keys := ix.keys[sink.TopicPartition{Topic: r.Topic, Partition: r.Partition}]
			h := maphash.Bytes(ix.seed, r.Key)
			if _, ok := keys[h]; ok {
				keys[h] = r.Offset
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read source partitions of dead letters to find newer records: %w", err)
	}
	return nil
}
