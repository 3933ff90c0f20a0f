package observe

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/kafka"
)

// LostRange is a run of records Kafka deleted from a partition before a sink applied them
// (retention, or DeleteRecords): the target misses their changes, and nothing in Kafka can bring
// them back. From is the first offset the sink had still to apply, To the partition's first
// offset when the sink found out (exclusive).
//
// With DeletesAtRisk, it is a run of records the sink resumed before that are older than their
// compacted topic's delete.retention.ms (To is the partition's delete horizon, see
// kafka.DeleteHorizons): compaction may have removed the deletes among them, tombstone and all,
// so the target may keep rows the warehouse deleted. Nothing in Kafka says which.
type LostRange struct {
	Topic         string    `json:"topic"`
	Partition     int32     `json:"partition"`
	From          int64     `json:"from"`
	To            int64     `json:"to"`
	At            time.Time `json:"at"`
	DeletesAtRisk bool      `json:"deletes_at_risk,omitempty"`
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

func newDeletesAtRiskCounter(reg *prometheus.Registry) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_sink_deletes_at_risk_records_total",
		Help: "Records older than their compacted topic's delete.retention.ms that the sink had not applied when it resumed: " +
			"compaction may have removed deletes among them, which the target then never applies."},
		[]string{"sink", "topic"})
	reg.MustRegister(c)
	return c
}

// Lost records that a sink found r deleted before it applied it, or (r.DeletesAtRisk) the
// deletes in it at risk.
func (m *Metrics) Lost(sink string, r LostRange) {
	if m == nil {
		return
	}
	counter := m.lostRecords
	if r.DeletesAtRisk {
		counter = m.deletesAtRisk
	}
	counter.WithLabelValues(sink, r.Topic).Add(float64(r.To - r.From))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lost[sink] = keepNewest(append(m.lost[sink], r))
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

// LostRangeOf returns the lost range a sink's dead letter stands for, when it is one (it has the
// kafka.DLQHeaderLostTo header): a sink writes one before it moves past records Kafka deleted,
// so that status finds them after the sink restarted.
func LostRangeOf(r *kgo.Record) (LostRange, bool) {
	if !slices.ContainsFunc(r.Headers, func(x kgo.RecordHeader) bool { return x.Key == kafka.DLQHeaderLostTo }) {
		return LostRange{}, false // a dead letter of a record, as most are
	}
	h := map[string]string{}
	for _, x := range r.Headers {
		h[x.Key] = string(x.Value)
	}
	to, err := strconv.ParseInt(h[kafka.DLQHeaderLostTo], 10, 64)
	if err != nil {
		return LostRange{}, false
	}
	from, err1 := strconv.ParseInt(h[kafka.DLQHeaderOffset], 10, 64)
	part, err2 := strconv.ParseInt(h[kafka.DLQHeaderPartition], 10, 32)
	at, err3 := time.Parse(time.RFC3339Nano, h[kafka.DLQHeaderTime])
	if err1 != nil || err2 != nil || from < 0 || part < 0 || from >= to {
		return LostRange{}, false
	}
	if err3 != nil {
		at = r.Timestamp
	}
	return LostRange{Topic: h[kafka.DLQHeaderTopic], Partition: int32(part), From: from, To: to, At: at,
		DeletesAtRisk: h[kafka.DLQHeaderLostKind] == kafka.DLQLostDeletes}, true
}

// lostScanMax is the most dead letters status reads from one sink's dead-letter topic for lost
// ranges; a larger topic is not read (its depth is in the status all the same).
const lostScanMax = 1_000_000

// LostScans remembers, per dead-letter topic, the lost ranges read from it and the offsets it had
// then, so that a status collected again reads the topic again only once it has changed. A nil
// *LostScans remembers nothing. It is safe for concurrent use.
type LostScans struct {
	mu    sync.Mutex
	scans map[string]lostScan
}

type lostScan struct {
	at     string // the topic's start and end offsets when read
	ranges []LostRange
}

// NewLostScans returns an empty LostScans.
func NewLostScans() *LostScans { return &LostScans{scans: map[string]lostScan{}} }

// read returns the lost ranges recorded in the dead-letter topic whose partitions start and end
// at starts and ends: the newest maxLostRanges, oldest first.
func (l *LostScans) read(ctx context.Context, kopts []kgo.Opt, topic string, starts, ends map[int32]int64) ([]LostRange, error) {
	var depth int64
	parts := make([]int32, 0, len(ends))
	for p, end := range ends {
		depth += end - starts[p]
		parts = append(parts, p)
	}
	if depth <= 0 || depth > lostScanMax {
		return nil, nil
	}
	slices.Sort(parts)
	var at strings.Builder
	for _, p := range parts {
		fmt.Fprintf(&at, "%d:%d-%d ", p, starts[p], ends[p])
	}
	if l != nil {
		l.mu.Lock()
		s, ok := l.scans[topic]
		l.mu.Unlock()
		if ok && s.at == at.String() {
			return slices.Clone(s.ranges), nil
		}
	}
	var out []LostRange
	err := kafka.ReadToEnd(ctx, kopts, topic, func(r *kgo.Record) {
		if lr, ok := LostRangeOf(r); ok {
			out = append(out, lr)
		}
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b LostRange) int { return a.At.Compare(b.At) })
	out = keepNewest(out)
	if l != nil {
		l.mu.Lock()
		l.scans[topic] = lostScan{at: at.String(), ranges: out}
		l.mu.Unlock()
	}
	return slices.Clone(out), nil
}

// mergeLost adds to have the ranges of more it does not hold yet (the same topic, partition and
// first offset, and kind: a range found again by a process that stopped before it moved past it).
func mergeLost(have, more []LostRange) []LostRange {
	for _, r := range more {
		if !slices.ContainsFunc(have, func(h LostRange) bool {
			return h.Topic == r.Topic && h.Partition == r.Partition && h.From == r.From && h.DeletesAtRisk == r.DeletesAtRisk
		}) {
			have = append(have, r)
		}
	}
	return keepNewest(have)
}

func keepNewest(l []LostRange) []LostRange {
	if len(l) > maxLostRanges {
		return l[len(l)-maxLostRanges:]
	}
	return l
}

// lostProblems are the status problems of a sink that lost records, or may have lost deletes;
// none when it did neither.
func lostProblems(k SinkStatus) []string {
	var lost, atRisk []LostRange
	for _, r := range k.Lost {
		if r.DeletesAtRisk {
			atRisk = append(atRisk, r)
		} else {
			lost = append(lost, r)
		}
	}
	kept := ""
	if k.DLQTopic != "" {
		kept = fmt.Sprintf(" (this shows while the dead-letter topic %s keeps its record of them)", k.DLQTopic)
	}
	var out []string
	if n, ranges := countRanges(lost); n > 0 {
		out = append(out, fmt.Sprintf("sink %s: %d record(s) were deleted from Kafka before the sink applied them, and the target misses their changes: %s; "+
			"re-snapshot their tables (backflow snapshot --table …) to repair, and keep topics longer than a sink may stay behind%s",
			k.Name, n, ranges, kept))
	}
	if n, ranges := countRanges(atRisk); n > 0 {
		out = append(out, fmt.Sprintf("sink %s: resumed before %d record(s) older than their topic's delete.retention.ms: %s; "+
			"compaction may have removed deletes among them, and the target may keep rows the warehouse deleted. %s%s",
			k.Name, n, ranges, DeletesAtRiskRepair, kept))
	}
	return out
}

// DeletesAtRiskRepair says how to repair a target that may have missed deletes that compaction
// removed: a re-snapshot cannot send them again, the topic no longer holds their keys.
const DeletesAtRiskRepair = "To repair, empty the target and replay the topic from earliest (backflow replay --from earliest), " +
	"which writes every live row back; keep delete.retention.ms longer than a sink may stay behind"

func countRanges(rs []LostRange) (int64, string) {
	var n int64
	parts := make([]string, len(rs))
	for i, r := range rs {
		n += r.To - r.From
		parts[i] = r.String()
	}
	return n, strings.Join(parts, ", ")
}
