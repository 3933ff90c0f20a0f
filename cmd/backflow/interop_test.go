package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestInteropIndependentClient reads the change topics with an independent Kafka client
// (segmentio/kafka-go) and decodes keys and envelopes with nothing but the documented contract
// (schemas/README.md): the default format's Confluent header, whose schema id is derived from the
// fingerprint that keys the <prefix>._schemas topic as 16 hex characters, and hamba/avro on the
// published schema. It also checks that every key
// sits in the partition Kafka's Java client (murmur2) would choose.
func TestInteropIndependentClient(t *testing.T) {
	bin := buildBinary(t)
	pg := testenv.NewPostgres(t)
	kf := testenv.NewKafka(t)
	ctx := context.Background()
	if err := pg.Exec(ctx, `CREATE TABLE public.w (id int PRIMARY KEY, v int NOT NULL, note text, at timestamptz)`); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, `INSERT INTO public.w SELECT g, g * 10, 'n' || g, '2024-01-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 200) g`); err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, bin, "capture", "-c", writeConfig(t, pipelineYAML(pg.URL("postgres"), kf.Brokers(), "")))
	waitTopicRecords(t, kf.Brokers(), "wh.public.w", 200, p)
	if err := pg.Exec(ctx, `UPDATE public.w SET v = -1 WHERE id = 7; DELETE FROM public.w WHERE id = 8`); err != nil {
		t.Fatal(err)
	}
	waitTopicRecords(t, kf.Brokers(), "wh.public.w", 203, p)

	schemas := map[string]avro.Schema{}
	for _, m := range readAll(t, kf.Addr(), "wh._schemas") {
		s, err := avro.Parse(string(m.Value))
		if err != nil {
			t.Fatalf("schema %s: %v", m.Key, err)
		}
		schemas[string(m.Key)] = s
	}
	// The default format's Confluent framing names the schema by id: the low 31 bits of its
	// fingerprint (0 becoming 1), as schemas/README.md says.
	byID := map[uint32]string{}
	for fp := range schemas {
		var v uint64
		if _, err := fmt.Sscanf(fp, "%016x", &v); err != nil {
			t.Fatalf("schema topic key %q: %v", fp, err)
		}
		id := uint32(v & 0x7fffffff)
		if id == 0 {
			id = 1
		}
		byID[id] = fp
	}
	decode := func(b []byte) map[string]any {
		if len(b) < 5 || b[0] != 0x00 {
			t.Fatalf("not in the Confluent wire format: % x", b[:min(len(b), 10)])
		}
		fp, ok := byID[binary.BigEndian.Uint32(b[1:5])]
		if !ok {
			t.Fatalf("schema id %d is no schema's of the schema topic", binary.BigEndian.Uint32(b[1:5]))
		}
		var out map[string]any
		if err := avro.Unmarshal(schemas[fp], b[5:], &out); err != nil {
			t.Fatalf("decode with schema %s: %v", fp, err)
		}
		return out
	}

	msgs := readAll(t, kf.Addr(), "wh.public.w")
	parts := partitionsOf(t, kf.Addr(), "wh.public.w")
	ops := map[string]int{}
	var update map[string]any
	for _, m := range msgs {
		want := kafkago.Murmur2Balancer{}.Balance(kafkago.Message{Key: m.Key}, parts...)
		if m.Partition != want {
			t.Errorf("key % x in partition %d, murmur2 says %d", m.Key, m.Partition, want)
		}
		key := decode(m.Key)
		if m.Value == nil {
			ops["tombstone"]++
			continue
		}
		env := decode(m.Value)
		op := env["op"].(string)
		ops[op]++
		after := unwrapUnion(env["after"])
		if op == "u" {
			update = after
		}
		if op != "d" && after["id"] != key["id"] {
			t.Errorf("key %v does not match after.id %v", key, after["id"])
		}
	}
	if ops["r"] != 200 || ops["u"] != 1 || ops["d"] != 1 || ops["tombstone"] != 1 {
		t.Errorf("ops read by kafka-go = %v, want 200 r, 1 u, 1 d, 1 tombstone", ops)
	}
	if update == nil || fmt.Sprint(update["v"]) != "-1" || update["note"] != "n7" || update["at"] != "2024-01-01T07:00:00.000000Z" {
		t.Errorf("update read by kafka-go: %v", update)
	}
}

// unwrapUnion returns the branch of a decoded Avro union: hamba, like Avro's JSON encoding, keys
// a union's non-null value by its type name.
func unwrapUnion(v any) map[string]any {
	m, _ := v.(map[string]any)
	for name, inner := range m {
		if im, ok := inner.(map[string]any); ok && len(m) == 1 && strings.HasSuffix(name, ".Value") {
			return im
		}
	}
	return m
}

// readAll reads every message of a topic with kafka-go, partition by partition.
func readAll(t *testing.T, broker, topic string) []kafkago.Message {
	t.Helper()
	var out []kafkago.Message
	for _, p := range partitionsOf(t, broker, topic) {
		out = append(out, readPartition(t, broker, topic, p)...)
	}
	return out
}

func partitionsOf(t *testing.T, broker, topic string) []int {
	t.Helper()
	conn, err := kafkago.Dial("tcp", broker)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ps, err := conn.ReadPartitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	out := make([]int, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	slices.Sort(out) // the balancer indexes this list by hash
	return out
}

func readPartition(t *testing.T, broker, topic string, partition int) []kafkago.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := kafkago.DialLeader(ctx, "tcp", broker, topic, partition)
	if err != nil {
		t.Fatal(err)
	}
	last, err := conn.ReadLastOffset()
	conn.Close()
	if err != nil || last == 0 {
		return nil
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: partition, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	var out []kafkago.Message
	for int64(len(out)) < last {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s/%d: read %d of %d messages", topic, partition, len(out), last)
			}
			t.Fatal(err)
		}
		if bytes.Equal(m.Value, []byte{}) {
			m.Value = nil
		}
		out = append(out, m)
	}
	return out
}
