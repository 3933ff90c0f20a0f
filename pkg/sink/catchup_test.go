package sink

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// TestCatchUpCommitSurvivesAFailedCommit: the offsets a target is ahead at are committed to the
// group on an idle poll; when that commit fails (a rebalance in progress, say) they are kept and
// committed by the next one, so the group's lag does not stay behind forever.
func TestCatchUpCommitSurvivesAFailedCommit(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("t"),
		kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for joined := false; !joined; { // an empty topic: poll until the group has assigned it
		pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		cl.PollFetches(pctx)
		pcancel()
		if ctx.Err() != nil {
			t.Fatal("the consumer never joined its group")
		}
		_, gen := cl.GroupMetadata()
		joined = gen > 0
	}

	failures := 1
	c.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if failures == 0 {
			return nil, nil, false
		}
		failures--
		r := req.(*kmsg.OffsetCommitRequest)
		resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.RebalanceInProgress.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})

	behind := &catchUp{}
	behind.add("t", 0, 42)
	committed := func() int64 {
		offs, err := kadm.NewClient(cl).FetchOffsets(ctx, "g")
		if err != nil {
			t.Fatal(err)
		}
		o, _ := offs.Lookup("t", 0)
		return o.At
	}
	behind.commit(ctx, cl, zap.NewNop())
	if got := committed(); got == 42 {
		t.Fatal("the first commit was to fail")
	}
	behind.commit(ctx, cl, zap.NewNop())
	if got := committed(); got != 42 {
		t.Fatalf("committed offset %d after the retry, want 42", got)
	}
}
