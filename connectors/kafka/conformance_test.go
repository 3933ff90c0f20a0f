package kafkasink_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	kafkasink "github.com/backflow-dev/backflow/connectors/kafka"
	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/sink/sinktest"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

var kitTopics atomic.Int64

// TestConformance runs the connector kit, each case writing a topic of its own; the target's
// rows are what a consumer mirroring the topic holds (upserts merged, tombstones deleting,
// truncate records clearing).
func TestConformance(t *testing.T) {
	k := testenv.NewKafka(t)
	sinktest.Run(t, sinktest.Adapter{
		Open: func(t *testing.T, p sink.Params) sinktest.Opened {
			topic := fmt.Sprintf("kit.out.%d", kitTopics.Add(1))
			createTopic(t, k.Brokers(), topic)
			p.With = map[string]any{"topic": topic}
			p.Kafka = []kgo.Opt{kgo.SeedBrokers(k.Brokers()...)}
			c, err := kafkasink.New(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			return sinktest.Opened{Conn: c, Rows: func(t testing.TB) map[string]map[string]any {
				return mirror(t, k.Brokers(), topic)
			}}
		},
		// NaN is not JSON: that record alone is rejected.
		Poison: func(r *sink.Record) { r.Fields[sinktest.Qty] = math.NaN() },
	})
}

// createTopic makes a one-partition topic, so that a truncate record is ordered with every row's.
func createTopic(t *testing.T, brokers []string, topic string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// mirror reads the topic from its start as a consumer that keeps the latest row of each key.
func mirror(t testing.TB, brokers []string, topic string) map[string]map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs, err := testenv.ConsumeAll(ctx, brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]map[string]any{}
	for _, r := range recs {
		if string(r.Key) == kafkasink.TruncateKey {
			clear(rows)
			continue
		}
		var key map[string]any
		if err := decode(r.Key, &key); err != nil {
			t.Fatalf("record key %q: %v", r.Key, err)
		}
		id := fmt.Sprint(key[sinktest.KeyField])
		if r.Value == nil {
			delete(rows, id)
			continue
		}
		var fields map[string]any
		if err := decode(r.Value, &fields); err != nil {
			t.Fatalf("record value %q: %v", r.Value, err)
		}
		if rows[id] == nil {
			rows[id] = map[string]any{}
		}
		for f, v := range fields { // absent fields (unchanged TOAST) keep the mirrored value
			rows[id][f] = v
		}
	}
	return rows
}

func decode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}
