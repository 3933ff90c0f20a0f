package sink_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestTransactionalTopicReadCommitted: a topic written in Kafka transactions (Debezium with
// exactly-once delivery, Kafka Streams, Flink) holds the records of aborted transactions too,
// and those of open ones. A sink applies only what was committed, once it is.
func TestTransactionalTopicReadCommitted(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var recs []*kgo.Record
	for id := int32(1); id <= 4; id++ { // committed, aborted, committed, open
		ev := upsert(id, 1, "n")
		ev.Table = h.tbl
		key, val, err := h.enc.Encode(ctx, "wh.public.t", ev)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: "wh.public.t", Partition: id % 3, Key: key, Value: val})
	}
	txn, err := testenv.WriteTransactions(ctx, h.kf.Brokers(), testenv.EndsInTurn(recs...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()

	target := newMemTarget()
	h.start(h.sinkConfig(), target)
	waitFor(t, "the committed rows applied", func() bool {
		rows := target.snapshot()
		return rows["1"] != nil && rows["3"] != nil
	})
	time.Sleep(500 * time.Millisecond) // what the sink would apply of the rest, it has fetched by now
	for _, id := range []int32{2, 4} {
		if r := target.snapshot()[fmt.Sprint(id)]; r != nil {
			t.Errorf("row %d of an aborted or open transaction applied: %v", id, r)
		}
	}
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the row of the transaction committed last", func() bool { return target.snapshot()["4"] != nil })
}
