package replay

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// TestRecordsDeletedBeforeRead: records Kafka deletes before the replay reads them (retention,
// or a delete-records, before it starts or while it runs) are reported lost, with an error naming
// the partition and the offsets, and the replay goes on after them. The client, left to itself,
// skipped them without a word. In a compacted topic the log start moves only past records that
// later ones of their keys superseded: nothing is reported there. Either way the replay's group
// ends at the range's end, deleted records to the end included: run again, the replay has nothing
// left to read, and nothing to report again.
func TestRecordsDeletedBeforeRead(t *testing.T) {
	for _, tc := range []struct {
		name      string
		compacted bool
		midway    bool  // delete after the first round, rather than before the replay starts
		below     int64 // the records deleted: those below this offset
	}{
		{"deleted before the replay starts", false, false, 40},
		{"deleted while the replay reads", false, true, 70},
		{"deleted to the range's end while the replay reads", false, true, 100},
		{"compacted", true, false, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			const topic = "deleted"
			plan, adm, brokers := replayTopic(ctx, t, topic, [][]string{values(100, -1)}, 10)
			if tc.compacted {
				setConfig(ctx, t, adm, topic, "cleanup.policy", "compact")
			}
			deleteTo := func(o int64) {
				del := kadm.Offsets{}
				del.Add(kadm.Offset{Topic: topic, Partition: 0, At: o})
				if resp, err := adm.DeleteRecords(ctx, del); err != nil || resp.Error() != nil {
					t.Fatalf("delete records below %d: %v %v", o, err, resp.Error())
				}
			}
			if !tc.midway {
				deleteTo(tc.below)
			}
			core, logs := observer.New(zap.WarnLevel)
			r := newRanges(plan, 10, newTruncates(&copies{}), adm, NewProgress(plan.Total(), false, nil, zap.NewNop(), "replay"), zap.New(core))
			// A batch a fetch: what is not fetched yet when the records are deleted is gone.
			r.kopts = append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.FetchMaxPartitionBytes(1)}, kafka.CommittedReadOpts()...)
			if err := r.open(); err != nil {
				t.Fatal(err)
			}
			defer func() { r.cl.Close() }()
			read := map[int64]int{}
			err := pollAll(ctx, t, r, func(round sink.Round) {
				for _, recs := range round {
					for _, rec := range recs {
						read[rec.Offset]++
					}
				}
				if tc.midway && len(read) > 0 && len(read) < 40 {
					deleteTo(tc.below) // before the next round's commit and poll
				}
			})
			if err != nil {
				t.Fatalf("poll: %v", err)
			}
			errs := logs.FilterMessageSnippet("Kafka deleted records of the range before the replay read them").All()
			var lost int64
			for _, e := range errs {
				from, to := e.ContextMap()["from_offset"].(int64), e.ContextMap()["to_offset"].(int64)
				for o := from; o < to; o++ {
					read[o]++ // each offset is read or reported lost, once
				}
				lost += to - from
			}
			for o := range int64(100) {
				want := 1
				if tc.compacted && o < tc.below {
					want = 0 // superseded: neither read nor lost
				}
				if read[o] != want {
					t.Errorf("offset %d read or reported lost %d times, want %d (lost %d, reported %d)", o, read[o], want, r.lost, lost)
				}
			}
			if lost != r.lost {
				t.Errorf("errors report %d records lost, the summary %d", lost, r.lost)
			}
			if tc.compacted != (r.lost == 0) {
				t.Errorf("%d records reported lost; a compaction loses none, a deletion some", r.lost)
			}
			committed, err := adm.FetchOffsets(ctx, plan.Group)
			if err != nil {
				t.Fatal(err)
			}
			if at, ok := committed.Lookup(topic, 0); !ok || at.At != 100 {
				t.Errorf("the replay's group is at %v (committed: %v), want the range's end, 100: run again, it would report the deleted records again", at.At, ok)
			}
		})
	}
}

// setConfig sets a configuration entry of topic.
func setConfig(ctx context.Context, t *testing.T, adm *kadm.Client, topic, key, value string) {
	t.Helper()
	rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: key, Value: kadm.StringPtr(value)}}, topic)
	if err == nil {
		err = rs[0].Err
	}
	if err != nil {
		t.Fatalf("set %s=%s on %s: %v", key, value, topic, err)
	}
}
