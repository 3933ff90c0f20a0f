package observe

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestGroupShareGauge(t *testing.T) {
	var none *Metrics
	none.GroupShare("crm", 0.5) // a nil *Metrics records nothing
	m := NewMetrics()
	for _, share := range []float64{0.5, 0, 1} {
		m.GroupShare("crm", share)
		if got := testutil.ToFloat64(m.groupShare.WithLabelValues("crm")); got != share {
			t.Errorf("backflow_sink_group_share = %v, want %v", got, share)
		}
	}
}
