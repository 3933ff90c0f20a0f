package observe

import (
	"fmt"
	"time"
)

// CaptureFailure is capture failing run after run: since the first failure of the row, how many
// runs failed, and the last one's error. A run that makes progress (changes acknowledged, the
// slot read, a snapshot chunk, a standby waiting) ends the row.
type CaptureFailure struct {
	Since time.Time `json:"since"`
	Runs  int       `json:"runs"`
	Error string    `json:"error"`
	At    time.Time `json:"at"` // the last failure
}

// String says what the failure is, for status.
func (f CaptureFailure) String() string {
	return fmt.Sprintf("capture: not capturing: %d run(s) failed in a row since %s, each restarted from the slot with backoff; last error (%s): %s",
		f.Runs, f.Since.UTC().Format(time.RFC3339), f.At.UTC().Format(time.RFC3339), f.Error)
}

// CaptureFailed records that a run of capture failed with err.
func (m *Metrics) CaptureFailed(err error) {
	if m == nil {
		return
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if f := m.captureFailure; f != nil && !m.progress[ComponentCapture].After(f.At) {
		f.Runs, f.Error, f.At = f.Runs+1, err.Error(), now
		return
	}
	m.captureFailure = &CaptureFailure{Since: now, Runs: 1, Error: err.Error(), At: now}
}

// CaptureFailing returns capture's failures since it last made progress, nil when it has made
// progress since its last failure (or never failed).
func (m *Metrics) CaptureFailing() *CaptureFailure {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.captureFailure
	if f == nil || m.progress[ComponentCapture].After(f.At) {
		return nil
	}
	out := *f
	return &out
}
