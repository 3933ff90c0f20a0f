package observe

import (
	"fmt"
	"strings"
	"time"
)

// Default health thresholds of Collect and `backflow status`.
const (
	// DefaultMaxLag is the consumer lag, in records, above which a sink is unhealthy.
	DefaultMaxLag = 100_000
	// DefaultMaxLagBytes is the WAL an inactive slot may hold back before it is unhealthy: 1 GiB.
	DefaultMaxLagBytes = 1 << 30
)

// Status is a snapshot of a pipeline's health: its replication slot and each sink's consumer
// group, as PostgreSQL and Kafka see them. It never holds a secret.
type Status struct {
	Time time.Time `json:"time"`
	// SinkOnly is set for a pipeline without a source: Capture is then empty and not judged.
	SinkOnly bool          `json:"sink_only,omitempty"`
	Capture  CaptureStatus `json:"capture"`
	Kafka    KafkaStatus   `json:"kafka"`
	Sinks    []SinkStatus  `json:"sinks"`
	// Models are the pipeline's models and their last runs.
	Models   []ModelStatus `json:"models,omitempty"`
	Healthy  bool          `json:"healthy"`
	Problems []string      `json:"problems"`
	// Thresholds are the limits Problems were judged against.
	Thresholds Thresholds `json:"thresholds"`
}

// CaptureStatus is the replication slot as PostgreSQL reports it.
type CaptureStatus struct {
	Slot string `json:"slot"`
	// Exists is false when the slot is missing (capture never ran, or the slot was dropped).
	Exists bool `json:"exists"`
	// Active is true while a capture process is connected to the slot.
	Active bool `json:"active"`
	// Instance is the capture process that holds the slot's capture lock (its application_name,
	// "backflow capture <host>:<pid>"), or else the session streaming from the slot; "" when none.
	// Other capture processes for the slot are standbys. InstancePID is its server process id.
	Instance          string `json:"instance,omitempty"`
	InstancePID       int32  `json:"instance_pid,omitempty"`
	ConfirmedFlushLSN string `json:"confirmed_flush_lsn,omitempty"`
	// LagBytes is pg_current_wal_lsn() − confirmed_flush_lsn: the WAL the slot holds back.
	LagBytes  int64  `json:"lag_bytes"`
	WALStatus string `json:"wal_status,omitempty"`
	// MissingTables are tables the pipeline names (in source.postgres.tables, or a sink's from
	// that a schema.* entry captures) that do not exist (renamed away or dropped): capture cannot
	// follow them and their targets keep their last rows.
	MissingTables []string `json:"missing_tables,omitempty"`
	// Publication is the publication capture reads through.
	Publication string `json:"publication,omitempty"`
	// UnpublishedTables are configured tables that exist but are not in the publication (a table
	// replaced by one capture could not add, the publication altered by hand): PostgreSQL sends
	// none of their changes, and their targets are stale.
	UnpublishedTables []string `json:"unpublished_tables,omitempty"`
	// UnkeyedTables are tables the configured entries name (patterns too) that have neither a
	// primary key nor a configured key: capture leaves their changes out, and their targets are
	// stale (a dbt CREATE TABLE AS swapped in under the name).
	UnkeyedTables []string `json:"unkeyed_tables,omitempty"`
	// UnpublishedOperations are the operations (insert, update, delete, truncate) the publication
	// does not publish (its publish option): none of those changes reaches the targets.
	UnpublishedOperations []string `json:"unpublished_operations,omitempty"`
	// UnloggedTables are tables the configured entries name (patterns too) that are UNLOGGED, or
	// have UNLOGGED partitions ("table (partition p)"): PostgreSQL logs none of their changes, so
	// their targets are stale until they are LOGGED again (capture then refreshes them in full).
	UnloggedTables []string `json:"unlogged_tables,omitempty"`
	// UnfollowedTables are the tables the running capture process found replaced under their
	// name, or new, and cannot capture, with why; empty when none or no running process answered.
	UnfollowedTables []TableProblem `json:"unfollowed_tables,omitempty"`
	// DLQTopic is capture's dead-letter topic; DLQDepth the changes in it (end − start offsets),
	// -1 when Kafka could not be asked.
	DLQTopic string `json:"dlq_topic"`
	DLQDepth int64  `json:"dlq_depth"`
	// Error says why the slot could not be read (the database is unreachable, …).
	Error string `json:"error,omitempty"`
	// SpillFailed says why the running capture process's spill_dir failed, "" when it has not
	// (or no running process answered): it reads large transactions at their commit.
	SpillFailed string `json:"spill_failed,omitempty"`
	// Failing is set while the running capture process fails run after run without progress.
	Failing *CaptureFailure `json:"failing,omitempty"`
	// GrownTopics are the topics the running capture process saw gain partitions.
	GrownTopics []TopicGrowth `json:"grown_topics,omitempty"`
	// Snapshots are the tables the running capture process is snapshotting now, as its metrics
	// know them; empty when no snapshot runs or no running process answered.
	Snapshots []SnapshotProgress `json:"snapshots,omitempty"`
}

// TableProblem is a table capture cannot follow and why.
type TableProblem struct {
	Table  string `json:"table"`
	Reason string `json:"reason"`
}

// KafkaStatus is the broker connection the sinks were read through.
type KafkaStatus struct {
	Brokers []string `json:"brokers"`
	// Error says why the brokers could not be reached; the sinks are then unknown.
	Error string `json:"error,omitempty"`
}

// SinkStatus is one sink's consumer group, lag and dead-letter topic.
type SinkStatus struct {
	Name    string   `json:"name"`
	Group   string   `json:"group"`
	State   string   `json:"state"`
	Members []string `json:"members"`
	// Lag is the total of Topics' lags: records not yet applied.
	Lag    int64      `json:"lag"`
	Topics []TopicLag `json:"topics"`
	// DLQTopic is the dead-letter topic; DLQDepth the records in it (end − start offsets).
	DLQTopic string `json:"dlq_topic"`
	DLQDepth int64  `json:"dlq_depth"`
	// LastApplied is when this process last saw the sink apply records, when known from its
	// metrics (status served by a running process); nil otherwise.
	LastApplied *time.Time `json:"last_applied,omitempty"`
	// Paused is set while the sink waits on its target for long (e.g. an API's daily limit).
	Paused *Pause `json:"paused,omitempty"`
	// Stalled lists the partitions whose lag has not moved for the sink's stall_after while its
	// target was reachable, as the running sink process saw them.
	Stalled []StalledPartition `json:"stalled,omitempty"`
	// Waiting lists the partitions whose batch has waited on an unavailable target (or schema
	// source) for stall_after or longer, as the running sink process saw them.
	Waiting []WaitingPartition `json:"waiting,omitempty"`
	// MappingHold is set while the sink holds a partition at a record whose event lacks a
	// column its mapping or filter reads.
	MappingHold *MappingHold `json:"mapping_hold,omitempty"`
	// Lost lists the records Kafka deleted before the sink applied them: those its dead-letter
	// topic records (the sink writes one dead letter per range before it moves past it) and those
	// its running process found.
	Lost []LostRange `json:"lost,omitempty"`
	// Error says why the group could not be read.
	Error string `json:"error,omitempty"`
}

// TopicLag is a sink's lag on one topic.
type TopicLag struct {
	Topic      string         `json:"topic"`
	Lag        int64          `json:"lag"`
	Partitions []PartitionLag `json:"partitions"`
	// Error says why the topic's offsets could not be listed (e.g. it does not exist yet).
	Error string `json:"error,omitempty"`
}

// PartitionLag is a sink's position in one partition. Committed is -1 when the group has not
// committed there yet; the lag then counts from the partition's start.
type PartitionLag struct {
	Partition int32 `json:"partition"`
	Committed int64 `json:"committed"`
	Start     int64 `json:"start"`
	End       int64 `json:"end"`
	Lag       int64 `json:"lag"`
	// Deleted counts the records from Committed up to Start that Kafka deleted (retention,
	// DeleteRecords) before the group applied them; 0 on a topic whose cleanup.policy is compact
	// alone, where only compaction moves Start (kafka.CompactOnly).
	Deleted int64 `json:"deleted,omitempty"`
	// DeletesAtRisk counts the records from Committed on that are older than the topic's
	// delete.retention.ms, on a compacted topic: compaction may remove the deletes among them,
	// tombstone and all, before the group applies them (kafka.DeleteHorizons).
	DeletesAtRisk int64 `json:"deletes_at_risk,omitempty"`
	// Markers counts the offsets after Committed that hold only transaction markers and aborted
	// records, which no sink is handed: they are not lag (Lag is 0 then).
	Markers int64 `json:"markers,omitempty"`
}

// Thresholds are the limits above which a pipeline is unhealthy.
type Thresholds struct {
	// MaxLag is the most records a sink may lag behind.
	MaxLag int64 `json:"max_lag"`
	// MaxLagBytes is the most WAL an inactive slot may hold back.
	MaxLagBytes int64 `json:"max_lag_bytes"`
}

// DefaultThresholds returns DefaultMaxLag and DefaultMaxLagBytes.
func DefaultThresholds() Thresholds {
	return Thresholds{MaxLag: DefaultMaxLag, MaxLagBytes: DefaultMaxLagBytes}
}

// Evaluate judges the status against th: it sets Thresholds, Problems and Healthy. Problems
// found while collecting (an unreachable database or broker) are kept.
func (s *Status) Evaluate(th Thresholds) {
	s.Thresholds = th
	s.Problems = []string{}
	if !s.SinkOnly {
		s.Problems = append(s.Problems, captureProblems(s.Capture, th)...)
	}
	if s.Kafka.Error != "" {
		s.Problems = append(s.Problems, fmt.Sprintf("kafka: brokers %s unreachable: %s", strings.Join(s.Kafka.Brokers, ","), s.Kafka.Error))
	} else {
		if n := s.Capture.DLQDepth; n > 0 {
			s.Problems = append(s.Problems, fmt.Sprintf("capture: %d change(s) in the dead-letter topic %s: rows capture could not publish "+
				"(too large even compressed, refused by Kafka, a NULL key, or undecodable); their headers say why, and the sinks never saw them", n, s.Capture.DLQTopic))
		}
		s.Problems = append(s.Problems, s.sinkProblems(th)...)
	}
	s.Healthy = len(s.Problems) == 0
}

func captureProblems(c CaptureStatus, th Thresholds) []string {
	var out []string
	for _, t := range c.MissingTables {
		out = append(out, fmt.Sprintf("capture: table %s no longer exists (renamed away or dropped); its topic and targets keep their last rows", t))
	}
	unfollowed := map[string]bool{}
	for _, t := range c.UnfollowedTables {
		unfollowed[t.Table] = true
		out = append(out, fmt.Sprintf("capture: cannot follow table %s: %s; its targets are stale until this is fixed", t.Table, t.Reason))
	}
	for _, t := range c.UnkeyedTables {
		if !unfollowed[t] {
			unfollowed[t] = true
			out = append(out, fmt.Sprintf("capture: table %s has no primary key and no key in source.postgres.keys, so none of its changes are captured "+
				"and its targets are stale until it has one (a dbt CREATE TABLE AS swapped in under its name?)", t))
		}
	}
	if ops := c.UnpublishedOperations; len(ops) > 0 {
		out = append(out, fmt.Sprintf("capture: publication %s does not publish %s, so those changes in the warehouse never reach the targets "+
			"(ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate'); a sink's on_delete or on_truncate: ignore keeps a target from applying them)",
			c.Publication, strings.Join(ops, ", "), c.Publication))
	}
	for _, t := range c.UnloggedTables {
		table, parts, ok := strings.Cut(t, " (partitions ")
		what := fmt.Sprintf("table %s is UNLOGGED", table)
		if ok {
			what = fmt.Sprintf("table %s has UNLOGGED partitions %s", table, strings.TrimSuffix(parts, ")"))
		}
		if !unfollowed[table] {
			unfollowed[table] = true
			out = append(out, fmt.Sprintf("capture: %s: PostgreSQL logs none of their changes, so none are captured "+
				"and its targets are stale until ALTER TABLE … SET LOGGED (capture then refreshes it in full)", what))
		}
	}
	for _, t := range c.UnpublishedTables {
		if !unfollowed[t] {
			out = append(out, fmt.Sprintf("capture: table %s is not in publication %s, so none of its changes are captured and its targets are stale "+
				"(replaced by a table capture could not add, such as one without a primary key, or the publication was altered)", t, c.Publication))
		}
	}
	if c.Failing != nil {
		out = append(out, c.Failing.String())
	}
	for _, g := range c.GrownTopics {
		out = append(out, g.String())
	}
	if c.SpillFailed != "" {
		out = append(out, fmt.Sprintf("capture: spill_dir failed (%s); large transactions reach capture only at their commit "+
			"(protocol 1) until it is fixed and capture restarted", c.SpillFailed))
	}
	return append(out, slotProblems(c, th)...)
}

func slotProblems(c CaptureStatus, th Thresholds) []string {
	switch {
	case c.Error != "":
		return []string{fmt.Sprintf("database: cannot read replication slot %q: %s", c.Slot, c.Error)}
	case !c.Exists:
		return []string{fmt.Sprintf("capture: replication slot %q does not exist (capture never ran, or the slot was dropped)", c.Slot)}
	case c.WALStatus == "lost":
		return []string{fmt.Sprintf("capture: replication slot %q lost WAL it needed (wal_status lost); re-snapshot required", c.Slot)}
	case !c.Active && c.Instance == "":
		// Not even a capture holding the slot's capture lock (which it does from its start, through
		// an initial snapshot, while the slot is not read yet): nothing captures.
		return []string{fmt.Sprintf("capture: no capture process holds or reads replication slot %q: changes wait in the WAL (%s held back); "+
			"start backflow capture (or run)", c.Slot, FormatBytes(c.LagBytes))}
	case !c.Active && c.LagBytes > th.MaxLagBytes:
		return []string{fmt.Sprintf("capture: replication slot %q is inactive and holds back %s of WAL (above %s): is capture running?",
			c.Slot, FormatBytes(c.LagBytes), FormatBytes(th.MaxLagBytes))}
	}
	return nil
}

func (s *Status) sinkProblems(th Thresholds) []string {
	var out []string
	for _, k := range s.Sinks {
		switch {
		case k.Error != "":
			out = append(out, fmt.Sprintf("sink %s: %s", k.Name, k.Error))
			continue
		case len(k.Members) == 0:
			out = append(out, fmt.Sprintf("sink %s: consumer group %q has no members (state %s): no sink process is running", k.Name, k.Group, orUnknown(k.State)))
		}
		if k.Lag > th.MaxLag {
			out = append(out, fmt.Sprintf("sink %s: lag %d records is above --max-lag %d", k.Name, k.Lag, th.MaxLag))
		}
		if p := deletedProblem(k); p != "" {
			out = append(out, p)
		}
		if p := deletesAtRiskProblem(k); p != "" {
			out = append(out, p)
		}
		out = append(out, runningProblems(k)...)
	}
	return out
}

// deletedProblem is the status problem of a sink whose group's position is before the first
// record Kafka still has, "" when there is none. A running sink finds out when it resumes the
// partition and reports the records lost (lostProblems); this says so before, for a sink that is
// stopped or behind.
func deletedProblem(k SinkStatus) string {
	n, parts := committedRanges(k, func(p PartitionLag) int64 { return p.Deleted })
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("sink %s: Kafka deleted %d record(s) its group had not applied yet (%s): the target misses their changes, "+
		"and the sink reports them lost when it resumes; re-snapshot their tables (backflow snapshot --table …) to repair, "+
		"and keep topics longer than a sink may stay behind", k.Name, n, parts)
}

// deletesAtRiskProblem is the status problem of a sink whose group's position is before records
// older than their compacted topic's delete.retention.ms, "" when there is none: stopped or
// behind for that long, the sink may never see deletes that compaction removes meanwhile. The
// sink reports it again when it resumes (lostProblems).
func deletesAtRiskProblem(k SinkStatus) string {
	n, parts := committedRanges(k, func(p PartitionLag) int64 { return p.DeletesAtRisk })
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("sink %s: its group has not applied %d record(s) older than their topic's delete.retention.ms (%s): "+
		"compaction may remove deletes among them, tombstone and all, before the sink reads them, and the target would keep rows "+
		"the warehouse deleted. %s", k.Name, n, parts, DeletesAtRiskRepair)
}

// committedRanges sums count over a sink's partitions and names, for each where it is not 0, the
// offsets from the group's commit on that it counts ("orders/0 offsets 2-4, …").
func committedRanges(k SinkStatus, count func(PartitionLag) int64) (int64, string) {
	var n int64
	var parts []string
	for _, t := range k.Topics {
		for _, p := range t.Partitions {
			if c := count(p); c > 0 {
				n += c
				parts = append(parts, fmt.Sprintf("%s/%d offsets %d-%d", t.Topic, p.Partition, p.Committed, p.Committed+c-1))
			}
		}
	}
	return n, strings.Join(parts, ", ")
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// FormatBytes writes n bytes with a binary unit: "512 B", "1.5 MiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
