package observe

import (
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// tableMetrics show what capture noticed about the captured tables themselves: tables replaced
// under their name (and re-snapshotted), tables gone or that cannot be followed, and the deletes
// full refreshes emitted.
type tableMetrics struct {
	replaced *prometheus.CounterVec
	missing  *prometheus.GaugeVec
	deletes  *prometheus.CounterVec
	slotLost *prometheus.CounterVec
	ops      *prometheus.GaugeVec

	mu         sync.Mutex
	unfollowed map[string]string // table -> why capture cannot follow it
}

func newTableMetrics(reg *prometheus.Registry) *tableMetrics {
	m := &tableMetrics{
		replaced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_capture_tables_replaced_total",
			Help: "Times a captured table name was found pointing to another relation (rename swap, DROP and CREATE) and re-snapshotted."}, []string{"table"}),
		missing: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backflow_capture_table_missing",
			Help: "1 while a configured table does not exist, or exists but capture cannot follow it (no key, not publishable): its targets are stale."}, []string{"table"}),
		deletes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_capture_refresh_deletes_total",
			Help: "Deletes emitted by full refreshes for keys the table no longer has."}, []string{"table"}),
		slotLost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backflow_capture_slot_lost_total",
			Help: "Times capture found the replication slot it was reading gone or invalidated."}, []string{"slot"}),
		ops: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backflow_capture_unpublished_operations",
			Help: "1 for each operation (insert, update, delete, truncate) the publication does not publish: those changes never reach the targets."}, []string{"op"}),
	}
	reg.MustRegister(m.replaced, m.missing, m.deletes, m.slotLost, m.ops)
	m.unfollowed = map[string]string{}
	return m
}

// TableReplaced counts a table found replaced under its name.
func (m *Metrics) TableReplaced(table string) {
	if m != nil {
		m.tables.replaced.WithLabelValues(table).Inc()
	}
}

// TableMissing sets whether a configured table is missing.
func (m *Metrics) TableMissing(table string, missing bool) {
	if m == nil {
		return
	}
	v := 0.0
	if missing {
		v = 1
	}
	m.tables.missing.WithLabelValues(table).Set(v)
}

// RefreshDeletes counts the deletes a full refresh of table emitted.
func (m *Metrics) RefreshDeletes(table string, n int) {
	if m != nil {
		m.tables.deletes.WithLabelValues(table).Add(float64(n))
	}
}

// SlotLost counts a replication slot found gone or invalidated at start.
func (m *Metrics) SlotLost(slot string) {
	if m != nil {
		m.tables.slotLost.WithLabelValues(slot).Inc()
	}
}

// TableUnfollowed records why capture cannot follow table, found replaced under its name or new
// (a CREATE TABLE AS without a primary key, a publication it may not extend), or that it can
// again (reason ""). It also sets the table's missing gauge.
func (m *Metrics) TableUnfollowed(table, reason string) {
	if m == nil {
		return
	}
	m.tables.mu.Lock()
	if reason == "" {
		delete(m.tables.unfollowed, table)
	} else {
		m.tables.unfollowed[table] = reason
	}
	m.tables.mu.Unlock()
	m.TableMissing(table, reason != "")
}

// UnfollowedTables are the tables capture cannot follow now, with why, by name.
func (m *Metrics) UnfollowedTables() []TableProblem {
	if m == nil {
		return nil
	}
	m.tables.mu.Lock()
	defer m.tables.mu.Unlock()
	out := make([]TableProblem, 0, len(m.tables.unfollowed))
	for t, why := range m.tables.unfollowed {
		out = append(out, TableProblem{Table: t, Reason: why})
	}
	slices.SortFunc(out, func(a, b TableProblem) int { return strings.Compare(a.Table, b.Table) })
	return out
}

// PublicationOperations are the operations capture's publication publishes (insert, update,
// delete, truncate), and those it does not.
var PublicationOperations = []string{"insert", "update", "delete", "truncate"}

// UnpublishedOperations sets which of PublicationOperations the publication does not publish.
func (m *Metrics) UnpublishedOperations(ops []string) {
	if m == nil {
		return
	}
	for _, op := range PublicationOperations {
		v := 0.0
		if slices.Contains(ops, op) {
			v = 1
		}
		m.tables.ops.WithLabelValues(op).Set(v)
	}
}
