package observe

import (
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Metric names the history reads back from the registry.
const (
	metricCaptureChanges = "backflow_capture_changes_total"
	metricSlotLag        = "backflow_capture_slot_lag_bytes"
	metricApplied        = "backflow_sink_records_applied_total"
	metricConsumerLag    = "backflow_sink_consumer_lag"
	metricDLQ            = "backflow_sink_dlq_records_total"
)

// Sample is the pipeline at one moment, as this process's metrics saw it.
type Sample struct {
	// Time is in Unix milliseconds, for the status page's charts.
	Time int64 `json:"t"`
	// Capture is nil in a process that does not capture.
	Capture *CaptureSample        `json:"capture,omitempty"`
	Sinks   map[string]SinkSample `json:"sinks"`
}

// CaptureSample is capture's throughput and slot lag at one moment.
type CaptureSample struct {
	ChangesPerSec float64 `json:"changes_per_sec"`
	SlotLagBytes  int64   `json:"slot_lag_bytes"`
}

// SinkSample is one sink's throughput, consumer lag and dead letters at one moment.
type SinkSample struct {
	AppliedPerSec float64 `json:"applied_per_sec"`
	Lag           int64   `json:"lag"`
	// DLQ counts the records this process sent to the dead-letter topic since it started.
	DLQ int64 `json:"dlq"`
}

// History keeps the last samples of the metrics in memory, for the status page.
type History struct {
	m       *Metrics
	keep    int
	mu      sync.Mutex
	capture bool     // capture shown even before it records anything
	sinks   []string // sinks shown even before they record anything
	prev    totals
	prevAt  time.Time
	buf     []Sample
	// lastApplied is when each sink's applied counter was last seen to grow, to seenApplied.
	lastApplied map[string]time.Time
	seenApplied map[string]float64
}

// totals are the counters and gauges read from the registry at one moment.
type totals struct {
	capture     bool
	changes     float64
	slotLag     float64
	applied     map[string]float64
	lag, dlq    map[string]float64
	sinksInRegs []string
}

// NewHistory keeps up to keep samples of m. The components this process runs ("capture",
// "sink/<name>") are included from the first sample on, at zero until they record anything.
func NewHistory(m *Metrics, keep int, components ...string) *History {
	h := &History{m: m, keep: max(keep, 2), lastApplied: map[string]time.Time{}, seenApplied: map[string]float64{}}
	for _, c := range components {
		if c == ComponentCapture {
			h.capture = true
		} else if name, ok := strings.CutPrefix(c, sinkComponentPrefix); ok {
			h.sinks = append(h.sinks, name)
		}
	}
	return h
}

// Sample reads the metrics now and appends a sample; rates are per second since the previous one.
func (h *History) Sample(now time.Time) {
	cur := h.read()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.noteApplied(cur, now)
	dt := now.Sub(h.prevAt).Seconds()
	first := h.prevAt.IsZero() || dt <= 0
	s := Sample{Time: now.UnixMilli(), Sinks: map[string]SinkSample{}}
	if cur.capture || h.capture {
		s.Capture = &CaptureSample{SlotLagBytes: int64(cur.slotLag)}
		if !first {
			s.Capture.ChangesPerSec = max(cur.changes-h.prev.changes, 0) / dt
		}
	}
	for _, name := range h.sinkNames(cur) {
		ss := SinkSample{Lag: int64(cur.lag[name]), DLQ: int64(cur.dlq[name])}
		if grew := cur.applied[name] - h.prev.applied[name]; !first && grew > 0 {
			ss.AppliedPerSec = grew / dt
		}
		s.Sinks[name] = ss
	}
	h.prev, h.prevAt = cur, now
	h.buf = append(h.buf, s)
	if len(h.buf) > h.keep {
		h.buf = append(h.buf[:0:0], h.buf[len(h.buf)-h.keep:]...)
	}
}

func (h *History) sinkNames(cur totals) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range append(append([]string{}, h.sinks...), cur.sinksInRegs...) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Samples returns a copy of the kept samples, oldest first.
func (h *History) Samples() []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Sample{}, h.buf...)
}

// LastApplied returns when the sink's applied count was last seen to grow, if ever. It reads
// the metrics now, so a batch applied since the last sample counts.
func (h *History) LastApplied(sink string) (time.Time, bool) {
	cur := h.read()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.noteApplied(cur, time.Now())
	t, ok := h.lastApplied[sink]
	return t, ok
}

// noteApplied records now as the last applied time of each sink whose count grew since it was
// last seen. Callers hold h.mu.
func (h *History) noteApplied(cur totals, now time.Time) {
	for name, n := range cur.applied {
		if n > h.seenApplied[name] {
			h.lastApplied[name] = now
			h.seenApplied[name] = n
		}
	}
}

// read gathers the registry and sums the metrics the history keeps.
func (h *History) read() totals {
	t := totals{applied: map[string]float64{}, lag: map[string]float64{}, dlq: map[string]float64{}}
	if h.m == nil {
		return t
	}
	families, err := h.m.Registry.Gather()
	if err != nil && len(families) == 0 {
		return t
	}
	sinks := map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			t.add(f.GetName(), m, sinks)
		}
	}
	for n := range sinks {
		t.sinksInRegs = append(t.sinksInRegs, n)
	}
	return t
}

func (t *totals) add(name string, m *dto.Metric, sinks map[string]bool) {
	sink := label(m, "sink")
	switch name {
	case metricCaptureChanges:
		t.capture, t.changes = true, t.changes+m.GetCounter().GetValue()
	case metricSlotLag:
		t.capture, t.slotLag = true, t.slotLag+m.GetGauge().GetValue()
	case metricApplied:
		t.applied[sink] += m.GetCounter().GetValue()
	case metricConsumerLag:
		t.lag[sink] += m.GetGauge().GetValue()
	case metricDLQ:
		t.dlq[sink] += m.GetCounter().GetValue()
	default:
		return
	}
	if sink != "" {
		sinks[sink] = true
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
