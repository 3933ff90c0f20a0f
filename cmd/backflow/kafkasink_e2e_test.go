package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// produceConfluentItems writes n inserts (ids 1..n) to topic as capture does with kafka.format
// avro-confluent: schemas in wh._schemas, records in the Confluent wire format.
func produceConfluentItems(t *testing.T, brokers []string, topic string, n int) {
	t.Helper()
	ctx := context.Background()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, kafka.ProducerOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := kafka.EnsureTopics(ctx, adm, []string{"wh._schemas"}, config.Topics{Partitions: 1, ReplicationFactor: 1, CleanupPolicy: "compact"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := kafka.EnsureTopics(ctx, adm, []string{topic}, config.Topics{Partitions: 3, ReplicationFactor: 1, CleanupPolicy: "delete"}, nil); err != nil {
		t.Fatal(err)
	}
	enc, err := codec.NewEncoder(codec.Format(codec.FormatAvroConfluent), codec.TopicPrefix("wh"),
		codec.SchemaPublisher(func(ctx context.Context, fp uint64, schema []byte) error {
			return cl.ProduceSync(ctx, &kgo.Record{Topic: "wh._schemas", Key: codec.FingerprintKey(fp), Value: schema}).FirstErr()
		}))
	if err != nil {
		t.Fatal(err)
	}
	tbl := &change.Table{Schema: "public", Name: "items", Columns: []change.Column{
		{Name: "id", Kind: change.KindInt32, Key: true}, {Name: "v", Kind: change.KindInt32}}}
	recs := make([]*kgo.Record, 0, n)
	for id := int32(1); id <= int32(n); id++ {
		k, v, err := enc.Encode(ctx, topic, &change.Event{Op: change.OpCreate, Table: tbl, After: change.Row{"id": id, "v": id * 10}})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: k, Value: v})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// targetIDs reads the target topic and returns how many records it holds and the ids among them,
// checking each record's key and value.
func targetIDs(t *testing.T, brokers []string, topic string) (int, map[int]bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	recs, err := testenv.ConsumeAll(ctx, brokers, topic)
	if err != nil && !strings.Contains(err.Error(), "UNKNOWN_TOPIC") {
		t.Fatal(err)
	}
	ids := map[int]bool{}
	for _, r := range recs {
		var v struct{ ID, V int }
		if err := json.Unmarshal(r.Value, &v); err != nil || v.V != v.ID*10 || string(r.Key) != fmt.Sprintf(`{"id":%d}`, v.ID) {
			t.Fatalf("record key %s value %s: want {\"id\":N} and {\"id\":N,\"v\":N*10} (%v)", r.Key, r.Value, err)
		}
		ids[v.ID] = true
	}
	return len(recs), ids
}

// TestKafkaSinkKillLosesNothing runs a sink from an avro-confluent topic into the kafka
// connector, SIGKILLs it mid-stream, restarts it, and finds every source record on the target
// topic: offsets are committed only after the target acknowledged, so a kill may duplicate,
// never drop.
func TestKafkaSinkKillLosesNothing(t *testing.T) {
	const n = 3000
	bin := buildBinary(t)
	kf := testenv.NewKafka(t)
	produceConfluentItems(t, kf.Brokers(), "wh.public.items", n)
	cfg := writeConfig(t, fmt.Sprintf(`kafka:
  brokers: [%s]
  topic_prefix: wh
  session_timeout: 6s
log: {format: json, level: warn}
sinks:
  - name: items-out
    topics: [wh.public.items]
    connector: kafka
    with: {topic: items.out, timeout: 10s}
    key: [id]
    map: {id: after.id, v: after.v}
    batch: {max_records: 50, max_wait: 20ms}
    rate_limit: 600/s
`, strings.Join(kf.Brokers(), ", ")))

	p := startProcess(t, bin, "sink", "-c", cfg)
	deadline := time.Now().Add(time.Minute)
	for {
		if got, _ := targetIDs(t, kf.Brokers(), "items.out"); got >= n/4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress before the kill; log:\n%s", p.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.kill(t)
	before, _ := targetIDs(t, kf.Brokers(), "items.out")
	if before >= n {
		t.Fatalf("the sink finished (%d records) before it was killed: raise n or lower rate_limit", before)
	}

	p = startProcess(t, bin, "sink", "-c", cfg)
	deadline = time.Now().Add(2 * time.Minute)
	for {
		total, ids := targetIDs(t, kf.Brokers(), "items.out")
		if len(ids) == n {
			t.Logf("killed at %d records on the target; after the restart %d records for %d ids (%d duplicates)", before, total, n, total-n)
			return
		}
		if time.Now().After(deadline) {
			var missing []int
			for id := 1; id <= n && len(missing) < 20; id++ {
				if !ids[id] {
					missing = append(missing, id)
				}
			}
			t.Fatalf("%d of %d ids on the target, missing e.g. %v; log:\n%s", len(ids), n, missing, p.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
