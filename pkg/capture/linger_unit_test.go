package capture

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// A full tracker waits for Kafka's acknowledgements, and nothing joins the batches lingering in
// the producer meanwhile: they go at once rather than after their linger. So do those a drain,
// or a record that must go alone, waits for. Here the linger is a minute (franz-go allows no
// more), as long as the test's deadline: a wait that did not send what lingers fails it.
func TestWaitsDoNotWaitForTheLinger(t *testing.T) {
	kf := testenv.NewKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic = "linger"
	cl, err := kgo.NewClient(append(kafka.ProducerOpts(), kgo.SeedBrokers(kf.Brokers()...), kgo.ProducerLinger(time.Minute))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		run  func(e *emitter) error
	}{
		{"full tracker", func(e *emitter) error {
			for i := range 40 { // ten times the tracker's room
				if err := e.produce(ctx, topic, fmt.Appendf(nil, "k%d", i), []byte("v"), &change.Event{}, false, false); err != nil {
					return err
				}
			}
			return e.drain(ctx)
		}},
		{"drain", func(e *emitter) error {
			if err := e.produce(ctx, topic, []byte("k"), []byte("v"), &change.Event{}, false, false); err != nil {
				return err
			}
			return e.drain(ctx)
		}},
		{"record alone", func(e *emitter) error {
			if err := e.produce(ctx, topic, []byte("k"), []byte("v"), &change.Event{}, false, false); err != nil {
				return err
			}
			// A record alone waits for everything in flight before it, then goes by the
			// oversize producer (which never lingers).
			return e.produce(ctx, topic, []byte("k"), []byte("alone"), &change.Event{}, false, true)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := &emitter{
				client: cl, tr: newTracker(4), loss: kafka.NewOffsetWatch(), limits: newTopicLimits(1 << 20),
				onWait: func() error { return nil }, log: zaptest.NewLogger(t),
				oversize: func() (*kgo.Client, error) {
					return kgo.NewClient(append(kafka.OversizeProducerOpts(), kgo.SeedBrokers(kf.Brokers()...))...)
				},
			}
			defer e.close()
			if err := tc.run(e); err != nil {
				t.Fatalf("records not acknowledged: %v (a wait held up by the producer's linger)", err)
			}
			if n := e.tr.inFlight(); n != 0 {
				t.Errorf("%d record(s) still in flight after the wait", n)
			}
		})
	}
}
