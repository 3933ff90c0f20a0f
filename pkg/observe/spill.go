package observe

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// spillMetrics say whether capture gave up streaming transactions in progress because its
// spill_dir failed (removed, full, unwritable): it then reads every transaction at its commit
// (protocol 1) until it is restarted.
type spillMetrics struct {
	mu     sync.Mutex
	reason string
	failed prometheus.Gauge
}

func newSpillMetrics(reg *prometheus.Registry) *spillMetrics {
	m := &spillMetrics{failed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "backflow_capture_spill_failed",
		Help: "1 once capture's spill_dir failed: it reads large transactions at their commit (protocol 1) until restarted."})}
	reg.MustRegister(m.failed)
	return m
}

// SpillFailed records that capture's spill_dir failed for reason.
func (m *Metrics) SpillFailed(reason string) {
	if m == nil {
		return
	}
	m.spill.mu.Lock()
	m.spill.reason = reason
	m.spill.mu.Unlock()
	m.spill.failed.Set(1)
}

// SpillFailure is why capture's spill_dir failed, "" while it has not.
func (m *Metrics) SpillFailure() string {
	if m == nil {
		return ""
	}
	m.spill.mu.Lock()
	defer m.spill.mu.Unlock()
	return m.spill.reason
}
