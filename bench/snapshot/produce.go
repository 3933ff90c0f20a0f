package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/bench/internal/child"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// fetchRecords reads the want records of topic, keys and values only.
func fetchRecords(ctx context.Context, brokers []string, topic string, want int) ([]*kgo.Record, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, 0, want)
	for len(recs) < want {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return nil, fmt.Errorf("read back %s: %w", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			recs = append(recs, &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value})
		})
	}
	return recs, nil
}

// produceOnly times producing recs into a fresh broker with capture's producer options and
// in-flight bound: what the snapshot would take if reading and encoding the rows cost nothing.
func produceOnly(ctx context.Context, recs []*kgo.Record) (time.Duration, error) {
	kf, err := testenv.StartKafka()
	if err != nil {
		return 0, fmt.Errorf("start kafka: %w", err)
	}
	defer kf.Close()
	cl, err := kgo.NewClient(append(kafka.ProducerOpts(), kgo.SeedBrokers(kf.Brokers()...))...)
	if err != nil {
		return 0, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 6, 1, nil, topic); err != nil {
		return 0, fmt.Errorf("create %s: %w", topic, err)
	}
	inFlight := make(chan struct{}, config.DefaultMaxInFlight)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	t0, cpu0 := time.Now(), child.SelfCPU()
	for _, r := range recs {
		select {
		case inFlight <- struct{}{}:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		wg.Add(1)
		r.Timestamp = t0
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
			<-inFlight
			wg.Done()
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	child.Progress("produced %d records in %s, cpu %s (with the broker's)", len(recs), elapsed.Round(time.Millisecond), (child.SelfCPU() - cpu0).Round(time.Millisecond))
	if firstErr != nil {
		return 0, fmt.Errorf("produce: %w", firstErr)
	}
	return elapsed, nil
}
