package observe

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestCaptureFailing: failed runs of capture add up until capture makes progress; a failure
// after that starts a new row. Status names the row while it lasts.
func TestCaptureFailing(t *testing.T) {
	m := NewMetrics()
	if f := m.CaptureFailing(); f != nil {
		t.Fatalf("failing %+v before any failure", f)
	}
	m.CaptureFailed(errors.New("broker unreachable"))
	m.CaptureFailed(errors.New("TOPIC_AUTHORIZATION_FAILED"))
	f := m.CaptureFailing()
	if f == nil || f.Runs != 2 || f.Error != "TOPIC_AUTHORIZATION_FAILED" || f.At.Before(f.Since) {
		t.Fatalf("failing %+v, want 2 runs with the last error", f)
	}
	st := healthyStatus()
	st.Capture.Failing = f
	st.Evaluate(DefaultThresholds())
	if st.Healthy || !strings.Contains(strings.Join(st.Problems, "\n"), "capture: not capturing: 2 run(s) failed in a row") {
		t.Errorf("status while failing: %q", st.Problems)
	}
	time.Sleep(time.Millisecond) // the clock moves on between a failure and the progress after it
	m.Progress(ComponentCapture)
	if f := m.CaptureFailing(); f != nil {
		t.Fatalf("failing %+v after progress", f)
	}
	m.CaptureFailed(errors.New("connection reset"))
	if f := m.CaptureFailing(); f == nil || f.Runs != 1 || f.Error != "connection reset" {
		t.Fatalf("failing %+v, want a new row of 1", f)
	}
}
