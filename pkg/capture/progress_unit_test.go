package capture

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backflow-dev/backflow/pkg/observe"
)

// TestProgressLogCadence: a progress line every progressRows rows or progressEvery, whichever
// comes first, with the rate and the ETA.
func TestProgressLogCadence(t *testing.T) {
	tests := []struct {
		name  string
		chunk int
		every time.Duration // time between chunks
		n     int           // chunks
		lines int
	}{
		{"fast: by rows", 10_000, 100 * time.Millisecond, 25, 2},   // 250k rows in 2.5s
		{"slow: by time", 100, 3 * time.Second, 10, 2},             // 30s, 1000 rows
		{"short and quick: silent", 1000, time.Millisecond, 50, 0}, // 50k rows in 50ms
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.InfoLevel)
			p := newProgressLog("public.t", zap.New(core), observe.NewMetrics(), 1_000_000, 0)
			now, done := p.started, int64(0)
			for range tt.n {
				now, done = now.Add(tt.every), done+int64(tt.chunk)
				p.acked(tt.chunk, done, now)
			}
			lines := logs.FilterMessage("snapshot progress").AllUntimed()
			if len(lines) != tt.lines {
				t.Fatalf("%d progress lines, want %d", len(lines), tt.lines)
			}
			for _, l := range lines {
				f := l.ContextMap()
				if f["table"] != "public.t" || f["rows_estimated"] != int64(1_000_000) || f["rows_per_sec"].(float64) <= 0 || f["eta"] == nil {
					t.Errorf("progress line %v", f)
				}
			}
		})
	}
}
