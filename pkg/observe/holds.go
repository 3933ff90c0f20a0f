package observe

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// StalledPartition is a partition where a sink holds lag that has not moved for the sink's
// stall_after while its target was reachable: no retry, pause or hold explains it.
type StalledPartition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Committed is the group's committed offset (-1: none); End the partition's end offset.
	Committed int64 `json:"committed"`
	End       int64 `json:"end"`
	// Since is when the committed offset last moved (or the lag appeared).
	Since time.Time `json:"since"`
}

// String names the partition and its position, e.g. "wh.public.t/2 (committed 10, end 15, since …)".
func (p StalledPartition) String() string {
	return fmt.Sprintf("%s/%d (committed %d, end %d, since %s)", p.Topic, p.Partition, p.Committed, p.End, p.Since.UTC().Format(time.RFC3339))
}

// WaitingPartition is a partition whose batch has waited on an unavailable target (or schema
// source) for the sink's stall_after or longer: retried until it succeeds, with nothing else of
// the partition applied meanwhile.
type WaitingPartition struct {
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Since     time.Time `json:"since"`
	Error     string    `json:"error"`
}

// String names the partition and why it waits.
func (p WaitingPartition) String() string {
	return fmt.Sprintf("%s/%d since %s: %s", p.Topic, p.Partition, p.Since.UTC().Format(time.RFC3339), p.Error)
}

// MappingHold is a sink holding a partition at a record whose event lacks a column the mapping
// or the filter reads: it retries under the sink's retry policy, then dead-letters the record.
type MappingHold struct {
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Field     string    `json:"field"` // "map.<field>" or "filter"
	Column    string    `json:"column"`
	Error     string    `json:"error"`
	Since     time.Time `json:"since"`
}

// holdMetrics are the gauges and counters of stalls and mapping holds.
type holdMetrics struct {
	stalled       *prometheus.GaugeVec
	mappingErrors *prometheus.CounterVec
	mappingHeld   *prometheus.GaugeVec
	waiting       *prometheus.GaugeVec
}

func newHoldMetrics(reg *prometheus.Registry) *holdMetrics {
	h := &holdMetrics{
		stalled: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backflow_sink_stalled",
			Help: "1 while a partition holds lag that has not moved for the sink's stall_after with its target reachable."},
			[]string{"sink", "topic", "partition"}),
		mappingErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_sink_mapping_errors_total",
			Help: "Tries of records whose event lacks a column a map field or the filter reads, by field and column."},
			[]string{"sink", "field", "column"}),
		mappingHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backflow_sink_mapping_held",
			Help: "1 while a sink holds a partition at a record whose event lacks a column its mapping reads."},
			[]string{"sink"}),
	}
	h.waiting = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backflow_sink_waiting",
		Help: "1 while a partition's batch has waited on an unavailable target or schema source for the sink's stall_after or longer."},
		[]string{"sink", "topic", "partition"})
	reg.MustRegister(h.stalled, h.mappingErrors, h.mappingHeld, h.waiting)
	return h
}

// Stalled records the partitions of a sink that are stalled now; partitions it reported before
// and are not in parts are no longer stalled.
func (m *Metrics) Stalled(sink string, parts []StalledPartition) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	flagParts(m.holds.stalled, m.stalls, sink, parts, func(p StalledPartition) (string, int32) { return p.Topic, p.Partition })
}

// Waiting records the partitions of a sink that have waited on their target for long now;
// partitions it reported before and are not in parts no longer do.
func (m *Metrics) Waiting(sink string, parts []WaitingPartition) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	flagParts(m.holds.waiting, m.waits, sink, parts, func(p WaitingPartition) (string, int32) { return p.Topic, p.Partition })
}

// flagParts sets gauge to 1 for the partitions of sink in parts and to 0 for those in byName
// that are not, and keeps parts in byName.
func flagParts[P any](gauge *prometheus.GaugeVec, byName map[string][]P, sink string, parts []P, tp func(P) (string, int32)) {
	set := func(p P, v float64) {
		topic, partition := tp(p)
		gauge.WithLabelValues(sink, topic, strconv.Itoa(int(partition))).Set(v)
	}
	for _, p := range byName[sink] {
		set(p, 0)
	}
	for _, p := range parts {
		set(p, 1)
	}
	if len(parts) == 0 {
		delete(byName, sink)
		return
	}
	byName[sink] = slices.Clone(parts)
}

// Stalls returns the stalled partitions by sink.
func (m *Metrics) Stalls() map[string][]StalledPartition {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return cloneLists(m.stalls)
}

// cloneLists copies a map of lists by sink, lists included, for readers outside the lock.
func cloneLists[V any](m map[string][]V) map[string][]V {
	out := make(map[string][]V, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

// MappingError counts a try of a record whose event lacks column, read by field.
func (m *Metrics) MappingError(sink, field, column string) {
	if m == nil {
		return
	}
	m.holds.mappingErrors.WithLabelValues(sink, field, column).Inc()
}

// MappingHeld records that a sink holds a partition at such a record.
func (m *Metrics) MappingHeld(sink string, h MappingHold) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mappingHolds[sink] = h
	m.holds.mappingHeld.WithLabelValues(sink).Set(1)
}

// MappingReleased records that the sink no longer holds h's record (mapped after all, or
// dead-lettered). A hold of another partition recorded since stays.
func (m *Metrics) MappingReleased(sink string, h MappingHold) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.mappingHolds[sink]
	if !ok || cur.Topic != h.Topic || cur.Partition != h.Partition || cur.Offset != h.Offset {
		return
	}
	delete(m.mappingHolds, sink)
	m.holds.mappingHeld.WithLabelValues(sink).Set(0)
}

// MappingHolds returns the sinks holding a partition at a record their mapping cannot map.
func (m *Metrics) MappingHolds() map[string]MappingHold {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]MappingHold, len(m.mappingHolds))
	for k, v := range m.mappingHolds {
		out[k] = v
	}
	return out
}

// Running is what a running process's metrics know of its sinks and Kafka does not, by sink.
type Running struct {
	Pauses map[string]Pause
	Stalls map[string][]StalledPartition
	Waits  map[string][]WaitingPartition
	Holds  map[string]MappingHold
	Lost   map[string][]LostRange
}

// Running returns what m knows of the sinks of this process.
func (m *Metrics) Running() Running {
	if m == nil {
		return Running{}
	}
	r := Running{Pauses: m.Pauses(), Stalls: m.Stalls(), Holds: m.MappingHolds(), Lost: m.LostRanges()}
	m.mu.Lock()
	defer m.mu.Unlock()
	r.Waits = cloneLists(m.waits)
	return r
}

// AddRunning copies into st what a running process knows of each sink (r): pauses, stalls, long
// waits, mapping holds and lost records; then it judges st again.
func (st *Status) AddRunning(r Running) {
	for i := range st.Sinks {
		name := st.Sinks[i].Name
		if p, ok := r.Pauses[name]; ok {
			st.Sinks[i].Paused = &p
		}
		if s, ok := r.Stalls[name]; ok {
			st.Sinks[i].Stalled = slices.Clone(s)
		}
		if w, ok := r.Waits[name]; ok {
			st.Sinks[i].Waiting = slices.Clone(w)
		}
		if h, ok := r.Holds[name]; ok {
			st.Sinks[i].MappingHold = &h
		}
		if l, ok := r.Lost[name]; ok {
			st.Sinks[i].Lost = mergeLost(slices.Clone(st.Sinks[i].Lost), l)
		}
	}
	st.Evaluate(st.Thresholds)
}

// runningProblems are the problems of a sink that its running process reported.
func runningProblems(k SinkStatus) []string {
	var out []string
	if len(k.Stalled) > 0 {
		parts := make([]string, len(k.Stalled))
		for i, p := range k.Stalled {
			parts[i] = p.String()
		}
		out = append(out, fmt.Sprintf("sink %s: stalled: lag has not moved while the target is reachable on %s", k.Name, strings.Join(parts, ", ")))
	}
	if len(k.Waiting) > 0 {
		parts := make([]string, len(k.Waiting))
		for i, p := range k.Waiting {
			parts[i] = p.String()
		}
		out = append(out, fmt.Sprintf("sink %s: waiting on its target (retried until it succeeds; nothing after it in the partition is applied) on %s",
			k.Name, strings.Join(parts, "; ")))
	}
	if h := k.MappingHold; h != nil {
		out = append(out, fmt.Sprintf("sink %s: holds %s/%d at offset %d since %s: %s (retried under the retry policy, then dead-lettered)",
			k.Name, h.Topic, h.Partition, h.Offset, h.Since.UTC().Format(time.RFC3339), h.Error))
	}
	return append(out, lostProblems(k)...)
}
