package capture_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// TestKafkaLostRecordsAreRefreshed: a broker that loses records capture wrote after
// acknowledging them (an unclean leader election, a truncated log) hands their offsets out
// again. Here the broker acknowledges the next records of the topic at offset 0 of their
// partitions without keeping them: the topic misses changes the slot has moved past. Capture
// says so (an error naming the topic, a metric) and refreshes the table in full, so that the
// topic holds every row again. franz-go alone goes on producing.
func TestKafkaLostRecordsAreRefreshed(t *testing.T) {
	e := newEnv(t, "public.s")
	core, logs := observer.New(zap.InfoLevel)
	m := observe.NewMetrics()
	e.opts = append(e.opts, capture.WithLogger(zap.New(core)), capture.WithMetrics(m))
	e.exec(`CREATE TABLE public.s (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO public.s SELECT g, 'v' || g FROM generate_series(1, 200) g`)
	e.start()
	const topic = "wh.public.s"
	e.converges(topic, "public.s")

	lost, err := e.kf.LoseNextProduce(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; !lost.Load(); i++ {
		if i == 100 {
			t.Fatal("no produce request of the table's topic alone reached the broker")
		}
		e.exec(fmt.Sprintf(`UPDATE public.s SET v = 'after%d' WHERE id = %d`, i, 1+i%200))
		time.Sleep(50 * time.Millisecond)
	}

	e.converges(topic, "public.s")
	if n := logs.FilterMessageSnippet("re-snapshot queued").FilterField(zap.String("reason", capture.ReasonKafkaLost)).Len(); n != 1 {
		t.Errorf("%d refreshes queued for the lost records, want 1: %v", n, logs.FilterMessageSnippet("re-snapshot queued").All())
	}
	if n := logs.FilterMessageSnippet("Kafka lost records capture wrote").FilterField(zap.String("topic", topic)).Len(); n != 1 {
		t.Errorf("%d errors naming the topic whose records Kafka lost, want 1", n)
	}
	if got := metricSum(t, m, "backflow_kafka_lost_total"); got != 1 {
		t.Errorf("backflow_kafka_lost_total = %v, want 1 (one partition)", got)
	}
}

// TestKafkaLossFoundAtStart: Kafka loses records capture wrote and it acknowledged, and capture
// does not write again before it restarts, so no later record shows the loss. The next start
// finds the topic's log ending at or below the offsets capture saved as acknowledged: it says so
// and refreshes the table in full, once (a third start finds nothing).
func TestKafkaLossFoundAtStart(t *testing.T) {
	e := newEnv(t, "public.s")
	e.exec(`CREATE TABLE public.s (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO public.s SELECT g, 'v' || g FROM generate_series(1, 200) g`)
	const topic = "wh.public.s"
	stop := e.start()
	e.converges(topic, "public.s")
	if err := stop(); err != nil { // a clean stop saves the offsets acknowledged
		t.Fatalf("first run: %v", err)
	}

	emptied := e.kf.EmptyNextLogEnds(topic)
	core, logs := observer.New(zap.InfoLevel)
	m := observe.NewMetrics()
	e.opts = []capture.Opt{capture.WithLogger(zap.New(core)), capture.WithMetrics(m)}
	stop = e.start()
	eventually(t, "a refresh queued for the lost records", func() error {
		if n := logs.FilterMessageSnippet("re-snapshot queued").FilterField(zap.String("reason", capture.ReasonKafkaLost)).Len(); n != 1 {
			return notYet("%d refreshes queued (the log ends asked: %v)", n, emptied.Load())
		}
		return nil
	})
	e.converges(topic, "public.s")
	if n := logs.FilterMessageSnippet("Kafka lost records capture wrote").FilterField(zap.String("topic", topic)).Len(); n != 1 {
		t.Errorf("%d errors naming the topic whose records Kafka lost, want 1", n)
	}
	if got := metricSum(t, m, "backflow_kafka_lost_total"); got != 3 {
		t.Errorf("backflow_kafka_lost_total = %v, want 3 (the topic's partitions)", got)
	}
	if err := stop(); err != nil {
		t.Fatalf("second run: %v", err)
	}

	core, logs = observer.New(zap.InfoLevel)
	e.opts = []capture.Opt{capture.WithLogger(zap.New(core))}
	e.start()
	e.exec(`UPDATE public.s SET v = 'again' WHERE id = 1`)
	e.converges(topic, "public.s")
	if n := logs.FilterMessageSnippet("Kafka lost records capture wrote").Len(); n != 0 {
		t.Errorf("the third start found %d losses; the one loss was found by the second", n)
	}
}
