// Package observe holds what shows a running pipeline: Prometheus metrics, health, and status.
package observe

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/backflow-dev/backflow/pkg/buildinfo"
)

// Metrics are the pipeline's Prometheus metrics, in a registry of their own (no global state).
// A nil *Metrics is valid and records nothing, so components take it as an optional dependency.
type Metrics struct {
	Registry *prometheus.Registry

	captureChanges *prometheus.CounterVec
	slotLag        *prometheus.GaugeVec
	captureActive  *prometheus.GaugeVec
	produceLatency prometheus.Histogram
	consumerLag    *prometheus.GaugeVec
	applied        *prometheus.CounterVec
	filtered       *prometheus.CounterVec
	applyLatency   *prometheus.HistogramVec
	e2eLatency     *prometheus.HistogramVec
	retries        *prometheus.CounterVec
	batchPaths     *prometheus.CounterVec
	rejoins        *prometheus.CounterVec
	dlq            *prometheus.CounterVec
	errors         *prometheus.CounterVec
	pausedUntil    *prometheus.GaugeVec
	tables         *tableMetrics
	spill          *spillMetrics
	captureDLQ     *prometheus.CounterVec
	grownTopics    *prometheus.CounterVec
	groupShare     *prometheus.GaugeVec
	holds          *holdMetrics
	lostRecords    *prometheus.CounterVec
	deletesAtRisk  *prometheus.CounterVec
	kafkaLost      *prometheus.CounterVec
	snap           *snapshotMetrics
	models         *modelMetrics

	mu       sync.Mutex
	progress map[string]time.Time          // component -> last progress, for readiness
	paused   map[string]Pause              // sink -> pause, while a target asked to wait a long time
	stalls   map[string][]StalledPartition // sink -> its stalled partitions
	waits    map[string][]WaitingPartition // sink -> its partitions waiting on their target for long
	// mappingHolds: sink -> the record whose event lacks a column its mapping reads
	mappingHolds map[string]MappingHold
	lost         map[string][]LostRange  // sink -> records Kafka deleted before it applied them
	snapshots    map[string]*snapshotRun // table -> its snapshot in progress
	active       map[string]bool         // slot -> this process captures it (see CaptureIsActive)
	// captureFailure is the last run of failures of capture (see CaptureFailing).
	captureFailure *CaptureFailure
	// grown are the topics capture saw gain partitions (see GrownTopics).
	grown map[string]TopicGrowth
}

// Pause is a sink waiting on its target for a long time (e.g. a daily API limit).
type Pause struct {
	Until  time.Time `json:"until"`
	Reason string    `json:"reason"`
}

var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewMetrics registers every metric (and the Go and process collectors) in a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry(), progress: map[string]time.Time{}, paused: map[string]Pause{},
		stalls: map[string][]StalledPartition{}, waits: map[string][]WaitingPartition{}, mappingHolds: map[string]MappingHold{}, lost: map[string][]LostRange{},
		snapshots: map[string]*snapshotRun{}, active: map[string]bool{}}
	m.pausedUntil = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backflow_sink_paused_until_seconds",
		Help: "Unix time until which a sink waits on its target (0 when not paused)."}, []string{"sink"})
	m.captureChanges = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_capture_changes_total",
		Help: "Row changes captured and acknowledged by Kafka, by table and op."}, []string{"table", "op"})
	m.slotLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backflow_capture_slot_lag_bytes",
		Help: "WAL bytes between the server's current position and the slot's confirmed flush position."}, []string{"slot"})
	m.captureActive = newCaptureActive()
	m.produceLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "backflow_capture_produce_latency_seconds",
		Help: "Time from handing a record to Kafka to its acknowledgement.", Buckets: latencyBuckets})
	m.consumerLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backflow_sink_consumer_lag",
		Help: "Records in a partition not yet applied by the sink."}, []string{"sink", "topic", "partition"})
	m.applied = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_sink_records_applied_total",
		Help: "Records applied to the target."}, []string{"sink"})
	m.filtered = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_sink_records_filtered_total",
		Help: "Records skipped by the filter or the delete policy."}, []string{"sink"})
	m.applyLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "backflow_sink_apply_latency_seconds",
		Help: "Time to apply one batch to the target, retries included.", Buckets: latencyBuckets}, []string{"sink"})
	m.e2eLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "backflow_e2e_latency_seconds",
		Help: "Time from commit in the warehouse to applied in the target.", Buckets: latencyBuckets}, []string{"sink"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_sink_retries_total",
		Help: "Batch retries after transient target failures."}, []string{"sink"})
	m.batchPaths = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_sink_batches_total",
		Help: "Batches applied, by the path they took: " + PathRows + " (loaded directly by the connector), " + PathRecords +
			" (applied as records), " + PathFallback + " (a direct load failed, then applied as records); " + PathBisect +
			" counts batches the target refused whole that were split to find the records at fault."}, []string{"sink", "path"})
	m.rejoins = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_sink_fenced_total",
		Help: "Times a sink worker left its group and rejoined because another worker had written its partition, a rebalance could not wait for its applies, " +
			"or a partition's log changed under it (records deleted past its position, the topic created again)."}, []string{"sink"})
	m.dlq = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_sink_dlq_records_total",
		Help: "Records sent to the dead-letter topic."}, []string{"sink"})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_errors_total",
		Help: "Failures that restarted a component, by component."}, []string{"component"})
	m.grownTopics = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_topic_partitions_grown_total",
		Help: "Times capture or a model run saw a topic it writes gain partitions: keys move to other partitions, and sinks behind then can apply rows out of order."},
		[]string{"topic"})
	m.tables = newTableMetrics(m.Registry)
	m.spill = newSpillMetrics(m.Registry)
	m.captureDLQ = newCaptureDLQ(m.Registry)
	m.groupShare = newGroupShare(m.Registry)
	m.holds = newHoldMetrics(m.Registry)
	m.lostRecords = newLostCounter(m.Registry)
	m.deletesAtRisk = newDeletesAtRiskCounter(m.Registry)
	m.kafkaLost = newKafkaLossCounter(m.Registry)
	m.snap = newSnapshotMetrics(m.Registry)
	m.models = newModelMetrics(m.Registry)
	m.Registry.MustRegister(m.captureChanges, m.slotLag, m.captureActive, m.produceLatency, m.consumerLag, m.applied, m.filtered,
		m.applyLatency, m.e2eLatency, m.retries, m.batchPaths, m.rejoins, m.dlq, m.errors, m.grownTopics, m.pausedUntil,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(buildinfo.Read()))
	return m
}

// buildInfo is backflow_build_info: 1, labelled with the build that runs (see package buildinfo).
func buildInfo(i buildinfo.Info) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backflow_build_info",
		Help: "Always 1; its labels name the running build."}, []string{"version", "commit", "date", "goversion"})
	g.WithLabelValues(i.Version, i.Commit, i.Date, i.GoVersion).Set(1)
	return g
}

// CaptureChange counts an acknowledged change.
func (m *Metrics) CaptureChange(table, op string, produceLatency time.Duration) {
	if m == nil {
		return
	}
	m.captureChanges.WithLabelValues(table, op).Inc()
	m.produceLatency.Observe(produceLatency.Seconds())
	m.Progress("capture")
}

// CaptureChanges counts the acknowledged changes of one table and op, like CaptureChange, for
// capture's per-record path: the counter is looked up once, not per change, and progress is
// noted at most every captureProgressEvery. A nil *CaptureChanges records nothing.
type CaptureChanges struct {
	m       *Metrics
	changes prometheus.Counter
	// progressed is when progress was last noted, in Unix nanoseconds.
	progressed atomic.Int64
}

// captureProgressEvery is how often CaptureChanges notes progress at most: far below any
// staleness threshold, and a clock read and a lock per change less.
const captureProgressEvery = 100 * time.Millisecond

// CaptureChangesOf returns the recorder of table's changes of op (nil when m is nil).
func (m *Metrics) CaptureChangesOf(table, op string) *CaptureChanges {
	if m == nil {
		return nil
	}
	return &CaptureChanges{m: m, changes: m.captureChanges.WithLabelValues(table, op)}
}

// Acked counts a change Kafka acknowledged at now, produceLatency after it was handed over.
func (c *CaptureChanges) Acked(now time.Time, produceLatency time.Duration) {
	if c == nil {
		return
	}
	c.changes.Inc()
	c.m.produceLatency.Observe(produceLatency.Seconds())
	c.progress(now)
}

// AckedMany counts n changes Kafka acknowledged by now, untimed: a snapshot's chunk, counted
// once Kafka has all of it (the produce latency is that of changes streamed one by one).
func (c *CaptureChanges) AckedMany(now time.Time, n int) {
	if c == nil || n == 0 {
		return
	}
	c.changes.Add(float64(n))
	c.progress(now)
}

func (c *CaptureChanges) progress(now time.Time) {
	if last := c.progressed.Load(); now.UnixNano()-last >= int64(captureProgressEvery) && c.progressed.CompareAndSwap(last, now.UnixNano()) {
		c.m.Progress(ComponentCapture)
	}
}

// SlotLag sets the slot's lag in bytes.
func (m *Metrics) SlotLag(slot string, bytes int64) {
	if m == nil {
		return
	}
	m.slotLag.WithLabelValues(slot).Set(float64(bytes))
}

// ConsumerLag sets a partition's lag.
func (m *Metrics) ConsumerLag(sink, topic string, partition int32, lag int64) {
	if m == nil {
		return
	}
	m.consumerLag.WithLabelValues(sink, topic, strconv.Itoa(int(partition))).Set(float64(max(lag, 0)))
}

// Batch records an applied batch: counts, how long it took, and each record's commit time.
func (m *Metrics) Batch(sink string, applied, filtered, dlq int, took time.Duration, commitTimes []time.Time) {
	if m == nil {
		return
	}
	m.applied.WithLabelValues(sink).Add(float64(applied))
	m.filtered.WithLabelValues(sink).Add(float64(filtered))
	m.dlq.WithLabelValues(sink).Add(float64(dlq))
	m.applyLatency.WithLabelValues(sink).Observe(took.Seconds())
	now := time.Now()
	h := m.e2eLatency.WithLabelValues(sink)
	for _, t := range commitTimes {
		if !t.IsZero() {
			h.Observe(now.Sub(t).Seconds())
		}
	}
	m.Progress("sink/" + sink)
}

// The paths a sink batch takes, for BatchPath.
const (
	PathRows     = "rows"     // scanned into the connector's RowBuffer and loaded directly (COPY)
	PathRecords  = "records"  // decoded, mapped and applied as records
	PathFallback = "fallback" // scanned for a direct load that failed, then applied as records
	PathBisect   = "bisect"   // refused whole by the target and split to find the records at fault
)

// BatchPath counts a batch of sink by the path it took (PathRows, PathRecords, PathFallback), or
// a batch that had to be bisected (PathBisect, counted besides its path): which path batches
// take says whether a sink gets the fast path, and how often its target refuses batches.
func (m *Metrics) BatchPath(sink, path string) {
	if m == nil {
		return
	}
	m.batchPaths.WithLabelValues(sink, path).Inc()
}

// Retry counts a batch retry.
func (m *Metrics) Retry(sink string) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(sink).Inc()
}

// Fenced counts a sink worker's rejoin of its group after it was fenced (see sink.ErrFenced).
func (m *Metrics) Fenced(sink string) {
	if m == nil {
		return
	}
	m.rejoins.WithLabelValues(sink).Inc()
}

// Error counts a failure of a component.
func (m *Metrics) Error(component string) {
	if m == nil {
		return
	}
	m.errors.WithLabelValues(component).Inc()
}

// Progress notes that a component made progress (or is healthy and idle) now.
func (m *Metrics) Progress(component string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.progress[component] = time.Now()
	m.mu.Unlock()
}

// LastProgress returns when each component last made progress.
func (m *Metrics) LastProgress() map[string]time.Time {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]time.Time, len(m.progress))
	for k, v := range m.progress {
		out[k] = v
	}
	return out
}

// Paused records that a sink waits on its target until until (zero time: no longer paused).
func (m *Metrics) Paused(sink string, until time.Time, reason string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if until.IsZero() {
		delete(m.paused, sink)
		m.pausedUntil.WithLabelValues(sink).Set(0)
		return
	}
	m.paused[sink] = Pause{Until: until, Reason: reason}
	m.pausedUntil.WithLabelValues(sink).Set(float64(until.Unix()))
}

// Pauses returns the sinks paused now.
func (m *Metrics) Pauses() map[string]Pause {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]Pause{}
	for k, v := range m.paused {
		if time.Now().Before(v.Until) {
			out[k] = v
		}
	}
	return out
}
