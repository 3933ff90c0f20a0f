package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestReadTopicsCommittedOnly: tail and map test read what sinks apply of a topic written in
// Kafka transactions (committed records only), and reading until the end stops although the
// topic ends in markers and an open transaction.
func TestReadTopicsCommittedOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kf := testenv.NewKafka(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kf.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "eos"); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for _, v := range []string{"a", "b", "c", "d"} { // committed, aborted, committed, open
		recs = append(recs, &kgo.Record{Topic: "eos", Value: []byte(v)})
	}
	txn, err := testenv.WriteTransactions(ctx, kf.Brokers(), testenv.EndsInTurn(recs...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	var got []string
	spec := readSpec{topics: []string{"eos"}, from: kgo.NewOffset().AtStart(), untilEnd: true}
	err = readTopics(ctx, config.Kafka{Brokers: kf.Brokers()}, spec, func(r *kgo.Record) bool {
		got = append(got, string(r.Value))
		return true
	})
	if err != nil || ctx.Err() != nil {
		t.Fatalf("read: %v, %v: want it to stop at the end by itself", err, ctx.Err())
	}
	if want := []string{"a", "c"}; !slices.Equal(got, want) {
		t.Errorf("read %q, want %q", got, want)
	}
}
