package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// noTruncates is a topic without truncate copies.
type noTruncates struct{}

func (noTruncates) TruncateBarrier(*kgo.Record) (kafka.TruncateCopy, bool) {
	return kafka.TruncateCopy{}, false
}
func (noTruncates) ApplyTruncate(context.Context, *kgo.Record) error { return nil }

type noProgress struct{}

func (noProgress) Add(int64) {}
func (noProgress) Finish()   {}

// TestStalledConsumerIsReopened: a consumer that stops handing out a partition's records midway
// (here paused behind the replay's back) is taken for stuck once polls found nothing for stallAfter,
// and reopened at the replay's positions with a warning that names the partition: the replay
// then reads every record of its ranges once, instead of polling forever.
func TestStalledConsumerIsReopened(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kf := testenv.NewKafka(t)
	const topic, perPartition = "stall", 30
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(kf.Brokers()...), kgo.RecordPartitioner(kgo.ManualPartitioner())}, kafka.ProducerOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := kafka.EnsureTopics(ctx, adm, []string{topic}, config.Topics{Partitions: 2, ReplicationFactor: 1, CleanupPolicy: "delete"}, nil); err != nil {
		t.Fatal(err)
	}
	plan := &Plan{Group: "stall-replay"}
	for p := range int32(2) {
		for i := range perPartition {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		plan.Ranges = append(plan.Ranges, Range{Topic: topic, Partition: p, End: perPartition})
	}
	core, logs := observer.New(zap.WarnLevel)
	r := newRanges(plan, 10, newTruncates(noTruncates{}), adm, noProgress{}, zap.New(core))
	r.stallAfter = 300 * time.Millisecond
	r.kopts = append([]kgo.Opt{kgo.SeedBrokers(kf.Brokers()...)}, kafka.CommittedReadOpts()...)
	if err := r.open(); err != nil {
		t.Fatal(err)
	}
	defer func() { r.cl.Close() }()
	seen := map[int32][]int64{}
	stalled := false
	for {
		round, err := r.Poll(ctx, 0)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("poll: %v (records seen by partition: %v)", err, seen)
		}
		for tp, recs := range round {
			for _, rec := range recs {
				seen[tp.Partition] = append(seen[tp.Partition], rec.Offset)
			}
		}
		if err := r.Commit(ctx, round, sink.Counts{}); err != nil {
			t.Fatal(err)
		}
		if !stalled && len(seen[1]) > 0 {
			r.cl.PauseFetchPartitions(map[string][]int32{topic: {1}})
			stalled = true
		}
	}
	for p := range int32(2) {
		if got := seen[p]; len(got) != perPartition || got[0] != 0 || got[len(got)-1] != perPartition-1 {
			t.Errorf("partition %d: offsets %v, want 0 to %d once each", p, got, perPartition-1)
		}
	}
	warned := logs.FilterMessageSnippet("reopening the consumer").All()
	if r.reopened != 1 || len(warned) != 1 || !strings.Contains(fmt.Sprint(warned[0].ContextMap()["waiting"]), "stall/1 at 10 of 30") {
		t.Errorf("reopened %d times, warnings %v: want one, naming stall/1 at 10 of 30", r.reopened, warned)
	}
}
