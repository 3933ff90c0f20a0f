package replay_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/backflow-dev/backflow/pkg/replay"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestResolveFailsOnAPartitionItCannotStart: a partition whose start offset the broker does not
// give (an error in its ListOffsets answer) fails the plan, naming it, rather than being planned
// as an empty range: a replay from earliest would have skipped the partition and reported
// success.
func TestResolveFailsOnAPartitionItCannotStart(t *testing.T) {
	ctx := context.Background()
	kf := testenv.NewKafka(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kf.Brokers()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	for p := range int32(2) {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Partition: p, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	from, err := replay.ParseFrom("earliest")
	if err != nil {
		t.Fatal(err)
	}
	kf.Cluster.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kf.Cluster.KeepControl()
		r := req.(*kmsg.ListOffsetsRequest)
		if len(r.Topics) == 0 || len(r.Topics[0].Partitions) == 0 || r.Topics[0].Partitions[0].Timestamp != -2 {
			return nil, nil, false // only the earliest offsets fail
		}
		resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition, sp.Offset, sp.LeaderEpoch = rp.Partition, 0, -1
				if rp.Partition == 1 {
					sp.ErrorCode, sp.Offset = kerr.UnknownServerError.Code, -1
				}
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	ranges, err := replay.Resolve(ctx, adm, []string{"t"}, from)
	if err == nil {
		t.Fatalf("Resolve planned %+v, want an error for partition 1", ranges)
	}
}
