package observe

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSnapshotProgressAt(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	tests := []struct {
		name                      string
		estimate, startDone, done int64
		elapsed                   time.Duration
		percent, rate, eta        float64
		text                      string
	}{
		{"a quarter in 10s", 4000, 0, 1000, 10 * time.Second, 25, 100, 30,
			"public.t: 1000 of ~4000 rows (25.0%), 100 rows/s, ETA 30s"},
		{"resumed: the rate counts this run only", 10_000, 5000, 6000, 10 * time.Second, 60, 100, 40,
			"public.t: 6000 of ~10000 rows (60.0%), 100 rows/s, ETA 40s"},
		{"estimate too low: capped, nothing left", 1000, 0, 1500, 5 * time.Second, 100, 300, 0,
			"public.t: 1500 of ~1000 rows (100.0%), 300 rows/s, ETA 0s"},
		{"no estimate", 0, 0, 500, 5 * time.Second, 0, 100, -1,
			"public.t: 500 rows (no estimate), 100 rows/s"},
		{"nothing read yet", 1000, 0, 0, 0, 0, 0, -1,
			"public.t: 0 of ~1000 rows (0.0%), 0 rows/s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := SnapshotProgressAt("public.t", tt.estimate, tt.startDone, tt.done, start, start.Add(tt.elapsed))
			if p.Percent != tt.percent || p.RowsPerSec != tt.rate || p.ETASeconds != tt.eta {
				t.Errorf("percent %v rate %v eta %v, want %v %v %v", p.Percent, p.RowsPerSec, p.ETASeconds, tt.percent, tt.rate, tt.eta)
			}
			if got := p.String(); got != tt.text {
				t.Errorf("String() = %q, want %q", got, tt.text)
			}
		})
	}
}

func TestSnapshotMetrics(t *testing.T) {
	m := NewMetrics()
	m.SnapshotStarted("public.t", 1000, 200)
	m.SnapshotRows("public.t", 300)
	if got := testutil.ToFloat64(m.snap.rows.WithLabelValues("public.t")); got != 300 {
		t.Errorf("backflow_snapshot_rows_total = %v, want 300 (this process's rows)", got)
	}
	if got := testutil.ToFloat64(m.snap.remaining.WithLabelValues("public.t")); got != 500 {
		t.Errorf("backflow_snapshot_rows_remaining = %v, want 500", got)
	}
	if s := m.Snapshots(); len(s) != 1 || s[0].Table != "public.t" || s[0].Done != 500 || s[0].Estimated != 1000 {
		t.Errorf("snapshots = %+v", s)
	}
	m.SnapshotRows("public.t", 800) // past the estimate: remaining never goes below 0
	if got := testutil.ToFloat64(m.snap.remaining.WithLabelValues("public.t")); got != 0 {
		t.Errorf("remaining past the estimate = %v, want 0", got)
	}
	m.SnapshotDone("public.t")
	if s := m.Snapshots(); len(s) != 0 {
		t.Errorf("a finished table still shows: %+v", s)
	}
}
