package observe

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestModelMetrics: runs, changes by op, rows and the last success of a model.
func TestModelMetrics(t *testing.T) {
	m := NewMetrics()
	m.ModelRun("scores", 100, map[string]int64{"c": 2, "u": 3}, time.Second)
	m.ModelRun("scores", 101, map[string]int64{"c": 1}, time.Second)
	m.ModelFailed("scores")
	m.ModelSkipped("scores")
	checks := []struct {
		name      string
		got, want float64
	}{
		{"ok runs", testutil.ToFloat64(m.models.runs.WithLabelValues("scores", "ok")), 2},
		{"failed runs", testutil.ToFloat64(m.models.runs.WithLabelValues("scores", "failed")), 1},
		{"skipped runs", testutil.ToFloat64(m.models.runs.WithLabelValues("scores", "skipped")), 1},
		{"creates", testutil.ToFloat64(m.models.changes.WithLabelValues("scores", "c")), 3},
		{"updates", testutil.ToFloat64(m.models.changes.WithLabelValues("scores", "u")), 3},
		{"rows", testutil.ToFloat64(m.models.rows.WithLabelValues("scores")), 101},
		{"errors", testutil.ToFloat64(m.errors.WithLabelValues("model/scores")), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if testutil.ToFloat64(m.models.lastSuccess.WithLabelValues("scores")) < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Error("no recent last success")
	}
	var nilMetrics *Metrics
	nilMetrics.ModelRun("x", 1, nil, 0) // a nil *Metrics records nothing
}

// TestStatusOfModels: a model whose last run failed is a problem naming it.
func TestStatusOfModels(t *testing.T) {
	st := &Status{Healthy: true, Problems: []string{}}
	st.AddModels([]ModelStatus{{Name: "ok", Run: 3}, {Name: "bad", Error: "model bad: query: syntax error"}})
	if st.Healthy || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "model bad: last run failed") {
		t.Fatalf("status: %+v", st)
	}
}
