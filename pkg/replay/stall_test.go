package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// copies takes a record whose value is "copy" for a copy of one truncate over two partitions,
// and counts the truncates applied.
type copies struct{ applied int }

func (c *copies) TruncateBarrier(r *kgo.Record) (kafka.TruncateCopy, bool) {
	return kafka.TruncateCopy{ID: "0/1", Partitions: 2}, string(r.Value) == "copy"
}

func (c *copies) ApplyTruncate(context.Context, *kgo.Record) error {
	c.applied++
	return nil
}

// TestStalledConsumerIsReopened: a consumer that stops handing out a partition's records midway
// (here paused behind the replay's back) is taken for stuck once polls found nothing for
// stallAfter, and reopened at the replay's positions with a warning that names the partition:
// the replay then reads every record of its ranges once, instead of polling forever. A
// partition held at a truncate's copy meanwhile stays held in the new consumer, and goes on
// after the records it kept aside once the truncate is applied.
func TestStalledConsumerIsReopened(t *testing.T) {
	for _, tc := range []struct {
		name   string
		copyAt [2]int // offset of the truncate's copy in partitions 0 and 1; -1: none
	}{
		{"no truncate", [2]int{-1, -1}},
		{"a partition held at a truncate", [2]int{5, 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trunc := &copies{}
			seen, reopened, err := replayStalled(t, tc.copyAt, trunc, false)
			if err != nil {
				t.Fatalf("poll: %v (records seen by partition: %v)", err, seen)
			}
			if reopened != 1 {
				t.Errorf("reopened %d times, want once", reopened)
			}
			for p, at := range tc.copyAt {
				var want []int64
				for o := range int64(30) {
					if o != int64(at) {
						want = append(want, o)
					}
				}
				if got := seen[int32(p)]; !slices.Equal(got, want) {
					t.Errorf("partition %d: offsets %v, want %v", p, got, want)
				}
			}
			want := 0
			if tc.copyAt[0] >= 0 {
				want = 1
			}
			if trunc.applied != want {
				t.Errorf("truncates applied: %d, want %d", trunc.applied, want)
			}
		})
	}
}

// replayStalled replays two partitions of 30 records (a copy at copyAt[p] in partition p),
// pausing partition 1 behind the replay's back once it handed out its first records (with
// always, in every consumer the replay reopens too), and returns the offsets of the records each
// partition's rounds took, how many times the consumer was reopened, and the error that ended
// the replay, if any. It checks that every reopening logged a warning naming partition 1.
func replayStalled(t *testing.T, copyAt [2]int, trunc truncateSink, always bool) (map[int32][]int64, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "stall"
	plan, adm, brokers := replayTopic(ctx, t, topic, [][]string{values(30, copyAt[0]), values(30, copyAt[1])}, 1)
	core, logs := observer.New(zap.WarnLevel)
	r := newRanges(plan, 10, newTruncates(trunc), adm, NewProgress(plan.Total(), false, nil, zap.NewNop(), "replay"), zap.New(core))
	r.stallAfter = 300 * time.Millisecond
	r.kopts = append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, kafka.CommittedReadOpts()...)
	if err := r.open(); err != nil {
		t.Fatal(err)
	}
	defer func() { r.cl.Close() }()
	seen := map[int32][]int64{}
	var stalled *kgo.Client // the consumer partition 1 was paused in
	ended := pollAll(ctx, t, r, func(round sink.Round) {
		for tp, recs := range round {
			for _, rec := range recs {
				seen[tp.Partition] = append(seen[tp.Partition], rec.Offset)
			}
		}
		if len(seen[1]) > 0 && (stalled == nil || always && stalled != r.cl) {
			r.cl.PauseFetchPartitions(map[string][]int32{topic: {1}})
			stalled = r.cl
		}
	})
	warned := logs.FilterMessageSnippet("reopening the consumer").All()
	for _, w := range warned {
		if !strings.Contains(fmt.Sprint(w.ContextMap()["waiting"]), "stall/1 at 10 of 30") {
			t.Errorf("warning %v: want it naming stall/1 at 10 of 30", w.ContextMap())
		}
	}
	if len(warned) != r.reopened {
		t.Errorf("%d warnings for %d reopenings", len(warned), r.reopened)
	}
	return seen, r.reopened, ended
}

// TestStuckConsumerFailsTheReplay: a consumer that hands out nothing of a partition with records
// left, however often it is reopened, fails the replay after maxReopens reopenings, with an error
// that names the partition and its position, rather than reopening it forever.
func TestStuckConsumerFailsTheReplay(t *testing.T) {
	seen, reopened, err := replayStalled(t, [2]int{-1, -1}, &copies{}, true)
	if err == nil || !strings.Contains(err.Error(), "no records from stall/1 at 10 of 30") {
		t.Fatalf("replay ended with %v (records seen by partition: %v), want an error naming stall/1 at 10 of 30", err, seen)
	}
	if reopened != maxReopens {
		t.Errorf("reopened %d times, want %d", reopened, maxReopens)
	}
}

// threeCopies is copies for a truncate over three partitions.
type threeCopies struct{ copies }

func (c *threeCopies) TruncateBarrier(r *kgo.Record) (kafka.TruncateCopy, bool) {
	return kafka.TruncateCopy{ID: "0/1", Partitions: 3}, string(r.Value) == "copy"
}

// TestResumedPartitionsFetchAtOnce: a partition whose range is read to its end no longer keeps
// the consumer fetching. Before, it was fetched on at the log's end, where the broker holds a
// fetch that finds nothing for its max wait (5 s): partitions resumed after a truncate meanwhile
// got nothing until it returned, and the replay's polls came back empty, one after another,
// while they had records left. Here partition 2's range ends early, partitions 0 and 1 are held
// at the truncate's copy (1 last), and the polls after the truncate must find their records.
func TestResumedPartitionsFetchAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	records := [3]int{300, 300, 3}
	copyAt := [3]int{5, 250, -1}
	plan, adm, brokers := replayTopic(ctx, t, "resume", [][]string{values(records[0], copyAt[0]),
		values(records[1], copyAt[1]), values(records[2], copyAt[2])}, 0)
	trunc := &threeCopies{}
	r := newRanges(plan, 10, newTruncates(trunc), adm, NewProgress(plan.Total(), false, nil, zap.NewNop(), "replay"), zap.NewNop())
	r.kopts = append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, kafka.CommittedReadOpts()...)
	if err := r.open(); err != nil {
		t.Fatal(err)
	}
	defer func() { r.cl.Close() }()
	seen := map[int32]int{}
	empty := 0
	finished := sink.TopicPartition{Topic: "resume", Partition: 2}
	fetched := false // partition 2 is fetched after its range's end
	err := pollAll(ctx, t, r, func(round sink.Round) {
		if !r.quietSince.IsZero() { // watch saw a poll without records while ranges had some left
			empty++
		}
		for tp, recs := range round {
			seen[tp.Partition] += len(recs)
		}
		if r.polled[finished] >= r.end[finished] && !slices.Contains(r.cl.PauseFetchPartitions(nil)["resume"], 2) {
			fetched = true
		}
	})
	if err != nil {
		t.Fatalf("poll: %v", err)
	}
	if fetched {
		t.Error("partition 2, read to its range's end, is still fetched")
	}
	// Each such poll waits a second (idlePoll); the broker held the fetch 5 s. One may come from
	// a slow machine rather than from a held fetch.
	if empty > 1 {
		t.Errorf("%d polls found no records while partitions not held had records left", empty)
	}
	for p, n := range records {
		want := n
		if copyAt[p] >= 0 {
			want-- // the copy is applied as the truncate, not as a record
		}
		if seen[int32(p)] != want {
			t.Errorf("partition %d: %d records, want %d", p, seen[int32(p)], want)
		}
	}
	if trunc.applied != 1 {
		t.Errorf("truncates applied: %d, want 1", trunc.applied)
	}
}

// values are n record values, the offsets as text, but "copy" (a truncate's copy) at copyAt.
func values(n, copyAt int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	if copyAt >= 0 {
		out[copyAt] = "copy"
	}
	return out
}

// replayTopic creates topic on a new broker with a partition per entry of vals, each holding
// records of those values, and returns the plan of a replay of all of them, with the broker's
// admin client and address. The records are written in batches of at most batch records (0: a
// partition's in one).
func replayTopic(ctx context.Context, t *testing.T, topic string, vals [][]string, batch int) (*Plan, *kadm.Client, []string) {
	t.Helper()
	kf := testenv.NewKafka(t)
	cl, err := kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(kf.Brokers()...)}, kafka.ProducerOpts()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	if err := kafka.EnsureTopics(ctx, adm, []string{topic}, config.Topics{Partitions: int32(len(vals)), ReplicationFactor: 1, CleanupPolicy: "delete"}, nil); err != nil {
		t.Fatal(err)
	}
	plan := &Plan{Group: topic + "-replay"}
	for p, vs := range vals {
		recs := make([]*kgo.Record, len(vs))
		for i, v := range vs {
			recs[i] = &kgo.Record{Topic: topic, Partition: int32(p), Value: []byte(v)}
		}
		for len(recs) > 0 {
			n := len(recs)
			if batch > 0 {
				n = min(n, batch)
			}
			if err := cl.ProduceSync(ctx, recs[:n]...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			recs = recs[n:]
		}
		plan.Ranges = append(plan.Ranges, Range{Topic: topic, Partition: int32(p), End: int64(len(vs))})
	}
	return plan, adm, kf.Brokers()
}

// pollAll polls r until its ranges are done, calls each with every round and commits it (but an
// empty one), and returns the error that ended the polls early, if any.
func pollAll(ctx context.Context, t *testing.T, r *ranges, each func(sink.Round)) error {
	t.Helper()
	for {
		round, err := r.Poll(ctx, 0)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		each(round)
		if len(round) == 0 {
			continue // as sink.ApplyRounds: an empty round is not committed
		}
		if err := r.Commit(ctx, round, sink.Counts{}); err != nil {
			t.Fatal(err)
		}
	}
}
