package observe

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPausedSinkShowsInMetricsAndStatus(t *testing.T) {
	m := NewMetrics()
	until := time.Now().Add(2 * time.Hour).Truncate(time.Second)
	m.Paused("crm", until, "HubSpot daily limit reached")
	if got := testutil.ToFloat64(m.pausedUntil.WithLabelValues("crm")); got != float64(until.Unix()) {
		t.Errorf("backflow_sink_paused_until_seconds = %v, want %d", got, until.Unix())
	}
	if p, ok := m.Pauses()["crm"]; !ok || p.Reason == "" || !p.Until.Equal(until) {
		t.Errorf("pauses = %v", m.Pauses())
	}
	m.Paused("crm", time.Time{}, "")
	if len(m.Pauses()) != 0 || testutil.ToFloat64(m.pausedUntil.WithLabelValues("crm")) != 0 {
		t.Error("a resumed sink still shows as paused")
	}
}
