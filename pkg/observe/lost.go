package observe

import (
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LostRange is a run of records Kafka deleted from a partition before a sink applied them
// (retention, or DeleteRecords): the target misses their changes, and nothing in Kafka can bring
// them back. From is the first offset the sink had still to apply, To the partition's first
// offset when the sink found out (exclusive).
type LostRange struct {
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	From      int64     `json:"from"`
	To        int64     `json:"to"`
	At        time.Time `json:"at"`
}

// String names the range, e.g. "wh.public.t/2 offsets 10-14 (5 records, at …)".
func (r LostRange) String() string {
	return fmt.Sprintf("%s/%d offsets %d-%d (%d records, at %s)", r.Topic, r.Partition, r.From, r.To-1, r.To-r.From,
		r.At.UTC().Format(time.RFC3339))
}

// maxLostRanges bounds the ranges a process keeps per sink for its status (the counter keeps
// the total): the oldest go first.
const maxLostRanges = 20

func newLostCounter(reg *prometheus.Registry) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_sink_lost_records_total",
		Help: "Records Kafka deleted (retention, DeleteRecords) before the sink applied them: changes the target misses."},
		[]string{"sink", "topic"})
	reg.MustRegister(c)
	return c
}

// Lost records that a sink found r deleted before it applied it.
func (m *Metrics) Lost(sink string, r LostRange) {
	if m == nil {
		return
	}
	m.lostRecords.WithLabelValues(sink, r.Topic).Add(float64(r.To - r.From))
	m.mu.Lock()
	defer m.mu.Unlock()
	l := append(m.lost[sink], r)
	if len(l) > maxLostRanges {
		l = l[len(l)-maxLostRanges:]
	}
	m.lost[sink] = l
}

// LostRanges returns, by sink, the ranges this process found lost.
func (m *Metrics) LostRanges() map[string][]LostRange {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return cloneLists(m.lost)
}

// lostProblem is the status problem of a sink that lost records, "" when it lost none.
func lostProblem(k SinkStatus) string {
	if len(k.Lost) == 0 {
		return ""
	}
	var n int64
	parts := make([]string, len(k.Lost))
	for i, r := range k.Lost {
		n += r.To - r.From
		parts[i] = r.String()
	}
	return fmt.Sprintf("sink %s: %d record(s) were deleted from Kafka before the sink applied them, and the target misses their changes: %s; "+
		"re-snapshot their tables (backflow snapshot --table …) to repair, and keep topics longer than a sink may stay behind",
		k.Name, n, strings.Join(parts, ", "))
}
