package observe

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func newCaptureDLQ(reg *prometheus.Registry) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_capture_dead_letters_total",
		Help: "Changes capture wrote to its dead-letter topic instead of their table's topic, by table and reason " +
			"(message_too_large, invalid_record, null_key, unhandled, unusable_relation, …)."}, []string{"table", "reason"})
	reg.MustRegister(c)
	return c
}

// CaptureDeadLetter counts a change that went to capture's dead-letter topic.
func (m *Metrics) CaptureDeadLetter(table, reason string) {
	if m == nil {
		return
	}
	m.captureDLQ.WithLabelValues(table, reason).Inc()
}

// captureDLQDepth counts the records in capture's dead-letter topic; 0 when it does not exist.
func captureDLQDepth(ctx context.Context, topic string, kopts []kgo.Opt) int64 {
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return -1
	}
	defer cl.Close()
	return topicDepth(ctx, kadm.NewClient(cl), topic)
}
