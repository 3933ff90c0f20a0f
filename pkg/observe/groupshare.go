package observe

import "github.com/prometheus/client_golang/prometheus"

func newGroupShare(reg *prometheus.Registry) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backflow_sink_group_share",
		Help: "Share of the sink's rate limit and API budgets this worker takes: the partitions it holds over all partitions of the sink's topics."},
		[]string{"sink"})
	reg.MustRegister(g)
	return g
}

// GroupShare records the share of the sink's rate limit and API budgets this worker takes.
func (m *Metrics) GroupShare(sink string, share float64) {
	if m == nil {
		return
	}
	m.groupShare.WithLabelValues(sink).Set(share)
}
