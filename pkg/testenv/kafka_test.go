package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestKafkaProduceConsumeRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k := NewKafka(t)
	createTopic(ctx, t, k.Brokers(), "t1", 3)
	produce(ctx, t, k.Brokers(), "t1", 0, 30)

	got, err := ConsumeAll(ctx, k.Brokers(), "t1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 30 {
		t.Fatalf("consumed %d records, want 30", len(got))
	}

	addr := k.Addr()
	if err := k.Restart(); err != nil {
		t.Fatal(err)
	}
	if k.Addr() != addr {
		t.Fatalf("address changed from %s to %s", addr, k.Addr())
	}
	produce(ctx, t, k.Brokers(), "t1", 30, 10)
	got, err = ConsumeAll(ctx, k.Brokers(), "t1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 40 {
		t.Fatalf("after restart consumed %d records, want 40", len(got))
	}
	seen := map[string]bool{}
	for _, r := range got {
		seen[string(r.Value)] = true
	}
	for i := range 40 {
		if !seen[fmt.Sprint(i)] {
			t.Errorf("record %d missing after restart", i)
		}
	}
}

func TestKafkaStoppedIsDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k := NewKafka(t)
	createTopic(ctx, t, k.Brokers(), "t", 1)
	k.Stop()
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	defer cancelShort()
	if _, err := ConsumeAll(short, k.Brokers(), "t"); err == nil {
		t.Fatal("ConsumeAll succeeded with the broker down")
	}
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	if got, err := ConsumeAll(ctx, k.Brokers(), "t"); err != nil || len(got) != 0 {
		t.Fatalf("empty topic after start: %d records, %v", len(got), err)
	}
}

func TestConsumeAllUnknownTopic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := NewKafka(t)
	if _, err := ConsumeAll(ctx, k.Brokers(), "nope"); err == nil {
		t.Fatal("ConsumeAll of a missing topic succeeded")
	}
}

func createTopic(ctx context.Context, t *testing.T, brokers []string, topic string, parts int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, parts, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

func produce(ctx context.Context, t *testing.T, brokers []string, topic string, from, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := from; i < from+n; i++ {
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint(i))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}
