package kafkasink_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	kafkasink "github.com/backflow-dev/backflow/connectors/kafka"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

func newConnector(t *testing.T, brokers []string, with map[string]any) sink.Connector {
	t.Helper()
	c, err := kafkasink.New(context.Background(), sink.Params{Sink: "out", With: with, Key: []string{"sku", "warehouse"},
		Kafka: []kgo.Opt{kgo.SeedBrokers(brokers...)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		with map[string]any
		key  []string
		want string // "" for valid
	}{
		{"minimal", map[string]any{"topic": "out"}, []string{"id"}, ""},
		{"all", map[string]any{"topic": "out", "brokers": []any{"b:9092"}, "key": []any{"id"}, "format": "json", "timeout": "5s"}, nil, ""},
		{"no topic", map[string]any{}, []string{"id"}, "with.topic: required"},
		{"bad topic", map[string]any{"topic": "a b"}, []string{"id"}, "not a valid topic name"},
		{"avro", map[string]any{"topic": "out", "format": "avro"}, []string{"id"}, "with.format: avro is not supported"},
		{"no key", map[string]any{"topic": "out"}, nil, "with.key: required"},
		{"empty broker", map[string]any{"topic": "out", "brokers": []any{""}}, []string{"id"}, "with.brokers: empty entry"},
		{"typo", map[string]any{"topic": "out", "keys": []any{"id"}}, []string{"id"}, "with.keys: unknown setting"},
		{"bad timeout", map[string]any{"topic": "out", "timeout": "soon"}, []string{"id"}, "with.timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := kafkasink.New(context.Background(), sink.Params{Sink: "s", With: tt.with, Key: tt.key,
				Kafka: []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				_ = c.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func upsert(sku, wh string, qty int64, off int64) sink.Record {
	return sink.Record{Op: sink.OpUpsert, Key: map[string]any{"sku": sku, "warehouse": wh},
		Fields: map[string]any{"sku": sku, "warehouse": wh, "available": qty}, Topic: "wh.public.inventory", Partition: 1, Offset: off}
}

// TestApplyWrites checks keys, values, tombstones, the truncate's copies and the headers.
func TestApplyWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k := testenv.NewKafka(t)
	c := newConnector(t, k.Brokers(), map[string]any{"topic": "stock.out"})
	b := &sink.Batch{Sink: "out", Topic: "wh.public.inventory", Partition: 1, Records: []sink.Record{
		upsert("A-1", "ams", 5, 10),
		upsert("B-2", "ber", 0, 11),
		{Op: sink.OpDelete, Key: map[string]any{"sku": "C-3", "warehouse": "ams"}, Topic: "wh.public.inventory", Partition: 1, Offset: 12},
		{Op: sink.OpTruncate, Topic: "wh.public.inventory", Partition: 1, Offset: 13},
	}}
	if err := c.Apply(ctx, b); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	recs, err := testenv.ConsumeAll(ctx, k.Brokers(), "stock.out")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*kgo.Record{}
	copies := map[int32]kafka.TruncateCopy{}
	for _, r := range recs {
		got[string(r.Key)] = r
		if c, ok := kafka.TruncateCopyOf(r); ok && string(r.Key) == kafkasink.TruncateKey && r.Value == nil {
			copies[r.Partition] = c
		}
	}
	tests := []struct {
		key, value, op, offset string
	}{
		{`{"sku":"A-1","warehouse":"ams"}`, `{"available":5,"sku":"A-1","warehouse":"ams"}`, "upsert", "10"},
		{`{"sku":"B-2","warehouse":"ber"}`, `{"available":0,"sku":"B-2","warehouse":"ber"}`, "upsert", "11"},
		{`{"sku":"C-3","warehouse":"ams"}`, ``, "delete", "12"},
		{kafkasink.TruncateKey, ``, "truncate", "13"},
	}
	// The truncate: a copy in every partition, as capture writes them, one id on all.
	adm, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	n, err := kafka.TopicPartitions(ctx, kadm.NewClient(adm), "stock.out")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(tests)-1+int(n) || len(copies) != int(n) {
		t.Fatalf("%d records on stock.out with %d truncate copies, want %d and a copy in each of its %d partitions", len(recs), len(copies), len(tests)-1+int(n), n)
	}
	for p, c := range copies {
		if c.ID != "wh.public.inventory/1@13" || c.Partitions != n {
			t.Errorf("truncate copy in partition %d: %+v, want id wh.public.inventory/1@13 of %d partitions", p, c, n)
		}
	}
	for _, tt := range tests {
		r, ok := got[tt.key]
		if !ok {
			t.Errorf("no record with key %s", tt.key)
			continue
		}
		if string(r.Value) != tt.value || (tt.value == "" && r.Value != nil) {
			t.Errorf("key %s: value %q, want %q", tt.key, r.Value, tt.value)
		}
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		if h["backflow.op"] != tt.op || h["backflow.offset"] != tt.offset || h["backflow.topic"] != "wh.public.inventory" || h["backflow.partition"] != "1" {
			t.Errorf("key %s: headers %v", tt.key, h)
		}
	}
}

// TestApplyWithKey keys records by with.key, taken from the mapped fields.
func TestApplyWithKey(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k := testenv.NewKafka(t)
	c := newConnector(t, k.Brokers(), map[string]any{"topic": "by-sku", "key": []any{"sku"}})
	if err := c.Apply(ctx, &sink.Batch{Records: []sink.Record{upsert("A-1", "ams", 5, 1)}}); err != nil {
		t.Fatal(err)
	}
	recs, err := testenv.ConsumeAll(ctx, k.Brokers(), "by-sku")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || string(recs[0].Key) != `{"sku":"A-1"}` {
		t.Fatalf("records %v, want one keyed {\"sku\":\"A-1\"}", recs)
	}
}

// TestApplySpellsInfinity: PostgreSQL's infinite timestamps, which package mapping gives as
// extreme instants (encoding/json refuses years past 9999), go out as PostgreSQL spells them, in
// the value and in a key.
func TestApplySpellsInfinity(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k := testenv.NewKafka(t)
	c := newConnector(t, k.Brokers(), map[string]any{"topic": "valid", "key": []any{"sku", "until"}})
	r := upsert("A-1", "ams", 5, 1)
	r.Fields["until"] = time.UnixMicro(math.MaxInt64)
	r.Fields["since"] = []any{time.Unix(math.MinInt32*24*60*60, 0)}
	if err := c.Apply(ctx, &sink.Batch{Records: []sink.Record{r}}); err != nil {
		t.Fatal(err)
	}
	recs, err := testenv.ConsumeAll(ctx, k.Brokers(), "valid")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || string(recs[0].Key) != `{"sku":"A-1","until":"infinity"}` ||
		!strings.Contains(string(recs[0].Value), `"since":["-infinity"],`) || !strings.Contains(string(recs[0].Value), `"until":"infinity"`) {
		t.Fatalf("records %v, want one keyed {\"sku\":\"A-1\",\"until\":\"infinity\"} with until and since spelled", recs)
	}
}

// refuseProduce makes the broker answer every produce request with code.
func refuseProduce(k *testenv.Kafka, code int16) {
	k.Cluster.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		k.Cluster.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

// TestApplyFailures: a broker that is down or refuses for the moment fails the batch as
// retryable, within the timeout.
func TestApplyFailures(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(*testenv.Kafka)
		check   func(error) bool
	}{
		{"broker down", func(k *testenv.Kafka) { k.Stop() }, sink.IsRetryable},
		{"not enough replicas", func(k *testenv.Kafka) { refuseProduce(k, kerr.NotEnoughReplicas.Code) }, sink.IsRetryable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			k := testenv.NewKafka(t)
			c := newConnector(t, k.Brokers(), map[string]any{"topic": "out", "timeout": "2s"})
			b := &sink.Batch{Records: []sink.Record{upsert("A-1", "ams", 5, 1)}}
			if err := c.Apply(ctx, b); err != nil { // the topic exists and the client knows it
				t.Fatal(err)
			}
			tt.breakIt(k)
			start := time.Now()
			err := c.Apply(ctx, b)
			if !tt.check(err) {
				t.Fatalf("Apply = %v (retryable %v)", err, sink.IsRetryable(err))
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("Apply took %s with a 2s timeout", d)
			}
		})
	}
}
