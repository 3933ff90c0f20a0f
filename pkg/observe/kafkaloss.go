package observe

import "github.com/prometheus/client_golang/prometheus"

// newKafkaLossCounter counts the partitions where Kafka lost records backflow wrote after
// acknowledging them (kafka.OffsetWatch): capture refreshes the topic's tables in full, a model
// rebuilds its state from its topic.
func newKafkaLossCounter(reg *prometheus.Registry) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_kafka_lost_total",
		Help: "Times Kafka handed out again the offsets of records capture or a model wrote and it had acknowledged (an unclean leader " +
			"election, a truncated log): capture refreshes the topic's tables in full, a model rebuilds its state from its topic."}, []string{"topic"})
	reg.MustRegister(c)
	return c
}

// KafkaLost counts a partition of topic where Kafka lost records capture or a model wrote.
func (m *Metrics) KafkaLost(topic string) {
	if m == nil {
		return
	}
	m.kafkaLost.WithLabelValues(topic).Inc()
}
