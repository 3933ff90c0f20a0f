package observe

import "github.com/prometheus/client_golang/prometheus"

// newKafkaLossCounter counts the partitions where Kafka lost records capture had written and
// been acknowledged; capture refreshes the topic's tables in full each time.
func newKafkaLossCounter(reg *prometheus.Registry) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_capture_kafka_lost_total",
		Help: "Times a broker told capture it had lost records capture wrote to a partition (an unclean leader election, a truncated log, " +
			"capture's producer state expired): capture refreshes the topic's tables in full."}, []string{"topic"})
	reg.MustRegister(c)
	return c
}

// KafkaLost counts a partition of topic where Kafka lost records capture wrote.
func (m *Metrics) KafkaLost(topic string) {
	if m == nil {
		return
	}
	m.kafkaLost.WithLabelValues(topic).Inc()
}
