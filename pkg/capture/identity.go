package capture

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/config"
)

// relationWatch keeps capture on the relations the configured table names point to now.
//
// Its invariant: every table a configured entry names is captured as the relation (pg_class oid)
// the name points to now, and the targets hold that relation's rows. A name found pointing to
// another relation (dbt's rename swap, DROP and CREATE, CREATE TABLE AS and a rename) is added to
// the publication and fully refreshed, deletes included; a name that points to nothing is
// reported (log, metric, status) for as long as it is configured and gone. A relation that gains
// a column or sees one change type (ALTER TABLE ADD COLUMN, ALTER COLUMN TYPE … USING), which
// PostgreSQL fills or rewrites in every row without a change in the log, is re-snapshotted
// (on_column_change: resnapshot) or reported (warn). The relations and their columns are kept in
// the state topic, so a swap or an ALTER made while capture was down is found at its next start.
type relationWatch struct {
	c       *Capture
	cat     *catalog
	known   map[string]uint32 // schema.table -> oid being captured
	missing map[string]bool
	failing map[string]string            // table -> the error that keeps it from being followed, logged once
	columns map[string][]string          // schema.table -> its published columns, "name type", in order
	files   map[string]uint32            // schema.table -> its relfilenode at the last check (0: unknown)
	natts   map[string]int               // schema.table -> its highest column number at the last check (0: unknown)
	parts   map[string]map[uint32]uint32 // partitioned schema.table -> its leaf partitions' relfilenodes, by oid
	// unlogged: schema.table -> its UNLOGGED relations (itself or partitions) at the last check
	unlogged map[string][]string
	filters  map[string]pubFilter         // schema.table -> the publication's column list and row filter for it
	enums    map[string]map[uint32]string // schema.table -> the labels of its columns' enum types, by pg_enum oid
	// ops are the operations the publication did not publish at the last check (or in the saved
	// state); opsChecked tells whether this process has checked them yet.
	ops        []string
	opsChecked bool
	every      time.Duration
	next       time.Time
	save       func(context.Context, *relationState) error
	enqueue    func(context.Context, *SnapshotRequest) error
}

// relationRow is one table an entry resolves to.
type relationRow struct {
	Name string // schema.table
	OID  int64
}

// relationState is what the watch keeps in the state topic.
type relationState struct {
	Tables  map[string]uint32   `json:"tables"`
	Missing []string            `json:"missing,omitempty"`
	Columns map[string][]string `json:"columns,omitempty"` // added later: absent in older states
	Files   map[string]uint32   `json:"files,omitempty"`   // relfilenodes, with the columns
	Natts   map[string]int      `json:"natts,omitempty"`   // highest column numbers (added later)
	// Partitions holds the leaf partitions' relfilenodes of partitioned tables (added later).
	Partitions map[string]map[uint32]uint32 `json:"partitions,omitempty"`
	// Unlogged holds the tables that were UNLOGGED, or had UNLOGGED partitions (added later): one
	// made logged again while capture is down is refreshed at its next start.
	Unlogged map[string][]string `json:"unlogged,omitempty"`
	// Filters holds the publication's column lists and row filters of the tables (added later;
	// a table without either has the zero pubFilter): one changed while capture is down is
	// refreshed at its next start.
	Filters map[string]pubFilter `json:"filters,omitempty"`
	// UnpublishedOps are the operations the publication did not publish (added later): once it
	// publishes them again, even across a restart, every table is refreshed in full.
	UnpublishedOps []string `json:"unpublished_ops,omitempty"`
	// Enums holds the labels of the tables' enum columns by pg_enum oid (added later): a label
	// renamed while capture is down is found at its next start.
	Enums map[string]map[uint32]string `json:"enums,omitempty"`
}

// minRelationCheck bounds how often the catalog is asked.
const minRelationCheck = time.Second

// start compares the relations saved by the previous run with those the names point to now and
// re-snapshots what changed meanwhile. A first run (nothing saved) only records those of the
// tables capture reads: the initial snapshot reads them all. A table left out (without a key) is
// new to the first check, which reports it, and refreshes it in full once it has a key.
func (w *relationWatch) start(ctx context.Context, saved *relationState, tables [][2]string, leftOut []string, republished []unpublishedTable) error {
	w.known, w.missing, w.failing = map[string]uint32{}, map[string]bool{}, map[string]string{}
	w.columns, w.files, w.parts = map[string][]string{}, map[string]uint32{}, map[string]map[uint32]uint32{}
	w.unlogged, w.natts, w.filters = map[string][]string{}, map[string]int{}, map[string]pubFilter{}
	w.enums = map[string]map[uint32]string{}
	if len(saved.Tables) == 0 {
		now, _, err := w.current(ctx)
		if err != nil {
			return err
		}
		for _, t := range tables {
			if oid, ok := now[t[0]+"."+t[1]]; ok {
				w.known[t[0]+"."+t[1]] = oid
			}
		}
		if _, err := w.checkColumns(ctx, nil); err != nil {
			return err
		}
		if _, err := w.checkUnlogged(ctx, map[string]bool{}); err != nil {
			return err
		}
		if _, err := w.checkPartitions(ctx, nil); err != nil {
			return err
		}
		if _, err := w.checkFilters(ctx, nil); err != nil {
			return err
		}
		if _, err := w.checkOps(ctx, nil); err != nil {
			return err
		}
		if _, err := w.checkEnums(ctx, nil); err != nil {
			return err
		}
		return w.persist(ctx)
	}
	w.known = saved.Tables
	maps.Copy(w.columns, saved.Columns)
	maps.Copy(w.files, saved.Files)
	maps.Copy(w.natts, saved.Natts)
	maps.Copy(w.parts, saved.Partitions)
	maps.Copy(w.unlogged, saved.Unlogged)
	maps.Copy(w.filters, saved.Filters)
	maps.Copy(w.enums, saved.Enums)
	w.ops = saved.UnpublishedOps
	for _, name := range leftOut {
		delete(w.known, name)
	}
	for _, m := range saved.Missing {
		w.missing[m] = true
	}
	for _, t := range republished {
		if _, ok := w.known[t.name]; ok && !w.missing[t.name] {
			w.unpublished(ctx, t)
		}
	}
	return w.check(ctx)
}

// tick checks the relations when the interval has passed; the replication loop calls it.
func (w *relationWatch) tick(ctx context.Context) error {
	if w == nil || time.Now().Before(w.next) {
		return nil
	}
	return w.check(ctx)
}

// check compares every configured name with the relation it points to now.
func (w *relationWatch) check(ctx context.Context) error {
	w.next = time.Now().Add(max(w.every, minRelationCheck))
	now, missing, err := w.current(ctx)
	if err != nil {
		w.c.log.Warn("cannot check the captured tables' identity; trying again", zap.Error(err))
		return nil
	}
	changed := false
	fresh := map[string]bool{} // relations followed by this check: refreshed in full already
	for name, oid := range now {
		old, ok := w.known[name]
		switch {
		case ok && old == oid && !w.missing[name]:
			continue
		case ok && old == oid:
			// Renamed away and back: what changed meanwhile went out under the other name.
			w.c.log.Warn("missing table is back under its name; refreshing it in full", zap.String("table", name))
		case ok:
			w.c.log.Warn("table replaced under its name (rename swap, DROP and CREATE); adding it to the publication and refreshing it in full",
				zap.String("table", name), zap.Uint32("old_oid", old), zap.Uint32("new_oid", oid))
		default:
			w.c.log.Info("new table to capture; snapshotting it", zap.String("table", name))
		}
		reason := ReasonAdded
		if ok {
			reason = ReasonReplaced
		}
		if !w.follow(ctx, name, reason) {
			continue // known keeps the old oid: the next check tries again
		}
		w.known[name], changed = oid, true
		fresh[name] = true
		delete(w.missing, name)
		w.c.metrics.TableMissing(name, false)
	}
	// A table gone (dbt's keyless __dbt_tmp renamed in) has nothing left to follow.
	for name := range w.failing {
		if _, ok := now[name]; !ok {
			delete(w.failing, name)
		}
	}
	for _, u := range w.c.metrics.UnfollowedTables() { // the stream's reports too (skipUnkeyed)
		if _, ok := now[u.Table]; !ok {
			w.c.metrics.TableUnfollowed(u.Table, "")
		}
	}
	for _, name := range missing {
		if !w.missing[name] {
			w.c.log.Error("captured table no longer exists (renamed away or dropped): its topic and targets keep their last rows until it comes back",
				zap.String("table", name))
			w.missing[name], changed = true, true
		}
		w.c.metrics.TableMissing(name, true)
	}
	// In this order: each check leaves out the tables an earlier one refreshed in full (fresh).
	for _, c := range []struct {
		what  string
		check func(context.Context, map[string]bool) (bool, error)
	}{
		{"the captured tables' columns", w.checkColumns},
		{"whether the captured tables are logged", w.checkUnlogged},
		{"the publication's tables", func(ctx context.Context, fresh map[string]bool) (bool, error) {
			return false, w.checkPublished(ctx, fresh)
		}},
		{"the operations the publication publishes", w.checkOps},
		{"the publication's column lists and row filters", w.checkFilters},
		{"the captured tables' partitions", w.checkPartitions},
		{"the captured tables' enum labels", w.checkEnums},
	} {
		if ctx.Err() != nil {
			break // stopping: what was found so far is still saved below
		}
		got, err := c.check(ctx, fresh)
		if err != nil && ctx.Err() == nil {
			w.c.log.Warn("cannot check "+c.what+"; trying again", zap.Error(err))
		}
		changed = changed || got
	}
	if !changed {
		return nil
	}
	// What a check found is saved even when capture is stopping meanwhile: the checks change the
	// state in memory and report it (an UNLOGGED table) at once, so a stop between the report and
	// the save would have the next start compare with the state before it, and take a table
	// logged again while capture was stopped as never unlogged.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), persistTimeout)
	defer cancel()
	return w.persist(sctx)
}

// persistTimeout bounds the save of the relations at a stop.
const persistTimeout = 10 * time.Second

// checkColumns reads the published columns of the relations being captured and acts on those
// that gained a column or saw one change type since the last check (see columnsChanged), except
// relations seen for the first time and those in fresh. It reports whether any columns changed.
func (w *relationWatch) checkColumns(ctx context.Context, fresh map[string]bool) (bool, error) {
	now, err := w.cat.publishedColumns(ctx, w.known)
	if err != nil {
		return false, err
	}
	files, err := w.cat.relationFiles(ctx, w.known)
	if err != nil {
		return false, err
	}
	changed := false
	for name, cols := range now {
		old, seen := w.columns[name]
		file, was, natts := files[name].file, w.files[name], w.natts[name]
		w.files[name], w.natts[name] = file, files[name].natts
		if slices.Equal(old, cols) {
			continue
		}
		w.columns[name], changed = cols, true
		if seen && !fresh[name] {
			// A new relfilenode since the last check: the table was rewritten (0: unknown, as
			// for a partitioned table, which has no storage of its own).
			w.columnsChanged(ctx, name, old, cols, file == 0 || was == 0 || file != was, natts)
		}
	}
	return changed, nil
}

// columnsChanged re-snapshots (or, with on_column_change: warn, reports) a table whose columns
// went from old to now, when a column was added with a default or changed type: PostgreSQL fills
// a new column in every row (its default) and rewrites a retyped one (USING) without a change in
// the log, so the targets keep the rows as they were until each row changes. A column added
// without a default (NULL everywhere) or dropped needs nothing, and neither does one retyped
// without a rewrite of the table (varchar(50) to varchar(100): every value as it was). A column
// renamed is one added with every row's value (natts: see columnsWithValues).
func (w *relationWatch) columnsChanged(ctx context.Context, name string, old, now []string, rewritten bool, natts int) {
	added, retyped := columnChanges(old, now)
	if len(retyped) > 0 && !rewritten {
		w.c.log.Info("columns retyped without a rewrite of the table: every value as it was, nothing to send",
			zap.String("table", name), zap.Strings("retyped", retyped))
		retyped = nil
	}
	if len(added) > 0 {
		// A column added without a default is NULL in every row: nothing to send (dbt's
		// append_new_columns, for one). Only one with a value in the rows is.
		filled, err := w.cat.columnsWithValues(ctx, w.known[name], added, natts)
		if err != nil {
			w.c.log.Warn("cannot read the added columns' defaults; taking them as filled", zap.String("table", name), zap.Error(err))
			filled = added
		}
		if len(filled) < len(added) {
			w.c.log.Info("columns added without a default: NULL in every row, nothing to send", zap.String("table", name),
				zap.Strings("added", added))
		}
		added = filled
	}
	if len(added)+len(retyped) == 0 {
		return
	}
	fields := []zap.Field{zap.String("table", name), zap.Strings("added", added), zap.Strings("retyped", retyped)}
	if w.c.pg.OnColumnChange == config.OnColumnChangeWarn {
		w.c.log.Warn("columns added or retyped: PostgreSQL filled or rewrote every row without a change in the log, so the "+
			"targets hold the rows as before until each one changes; `backflow snapshot --table "+name+"` sends every row again",
			fields...)
		return
	}
	w.c.log.Warn("columns added or retyped: PostgreSQL filled or rewrote every row without a change in the log; "+
		"re-snapshotting the table so that the targets get them (on_column_change: warn only reports it)", fields...)
	if err := w.enqueue(ctx, &SnapshotRequest{Table: name, Reason: ReasonColumns}); err != nil {
		w.c.log.Error("cannot queue the table's re-snapshot", zap.String("table", name), zap.Error(err))
	}
}

// checkPublished finds the captured tables that are no longer in the publication (an ALTER
// PUBLICATION … DROP TABLE, a publication recreated for fewer tables): none of their changes
// reach capture meanwhile. Each is added back and refreshed in full, unless it is in fresh
// (refreshed in full already) or unlogged (PostgreSQL publishes no unlogged table). The tables
// it refreshes join fresh.
func (w *relationWatch) checkPublished(ctx context.Context, fresh map[string]bool) error {
	out, err := w.cat.unpublished(ctx, w.c.pg.Publication, w.known)
	if err != nil {
		return err
	}
	for _, t := range out {
		if fresh[t.name] || w.missing[t.name] || len(w.unlogged[t.name]) > 0 {
			continue
		}
		if w.unpublished(ctx, t) {
			fresh[t.name] = true
		}
	}
	return nil
}

// unpublished adds t, a captured table found out of the publication, back to it and queues its
// full refresh; it reports whether the refresh is queued.
func (w *relationWatch) unpublished(ctx context.Context, t unpublishedTable) bool {
	if t.partitionsOnly {
		w.c.log.Warn("the publication publishes the partitioned table's partitions under their own names (publish_via_partition_root "+
			"was turned off), to topics no sink of the table reads, so its changes meanwhile were not captured; turning it on again "+
			"and refreshing the table in full", zap.String("table", t.name), zap.String("publication", w.c.pg.Publication))
	} else {
		w.c.log.Warn("captured table was out of the publication (ALTER PUBLICATION … DROP TABLE?), so its changes meanwhile were not captured; "+
			"adding it back and refreshing it in full", zap.String("table", t.name), zap.String("publication", w.c.pg.Publication))
	}
	return w.follow(ctx, t.name, ReasonUnpublished)
}

// checkOps reads which operations the publication does not publish (its publish option, which a
// DBA may set: publish = 'insert, update' keeps every delete and truncate from the targets, and
// a TRUNCATE and INSERT reload would leave the old rows there). Those are reported at this
// process's first check and at every change (error log, metric, and status, which reads the
// catalog). Once the publication publishes some of them again, every captured table is refreshed
// in full (unless in fresh), so that what was left out meanwhile reaches the targets; the tables
// it refreshes join fresh. It reports whether the set changed.
func (w *relationWatch) checkOps(ctx context.Context, fresh map[string]bool) (bool, error) {
	now, err := w.cat.unpublishedOps(ctx)
	if err != nil {
		return false, err
	}
	w.c.metrics.UnpublishedOperations(now)
	first := !w.opsChecked
	w.opsChecked = true
	if !first && slices.Equal(now, w.ops) {
		return false, nil
	}
	if len(now) > 0 {
		w.c.log.Error("the publication does not publish every operation: those changes in the warehouse never reach the targets; "+
			"publish them (ALTER PUBLICATION … SET (publish = 'insert, update, delete, truncate')) and use a sink's on_delete or "+
			"on_truncate: ignore to keep a target from applying them", zap.String("publication", w.c.pg.Publication), zap.Strings("unpublished", now))
	}
	restored := slices.DeleteFunc(slices.Clone(w.ops), func(op string) bool { return slices.Contains(now, op) })
	changed := !slices.Equal(now, w.ops)
	w.ops = now
	if len(restored) == 0 || fresh == nil {
		return changed, nil
	}
	w.c.log.Warn("the publication publishes operations again that it did not: refreshing every captured table in full, so that "+
		"the changes left out meanwhile reach the targets", zap.String("publication", w.c.pg.Publication), zap.Strings("restored", restored))
	for name := range w.known {
		if !fresh[name] && !w.missing[name] && w.follow(ctx, name, ReasonOperations) {
			fresh[name] = true
		}
	}
	return changed, nil
}

// checkEnums reads the labels of the enum types the captured tables' columns hold. A label
// renamed since the last check (ALTER TYPE … RENAME VALUE) reads differently in every row that
// holds it, with nothing in the log: the table is re-snapshotted, or with on_column_change: warn
// reported, unless it is in fresh (refreshed in full already) or missing. Labels added change
// no row. It reports whether any table's labels changed.
func (w *relationWatch) checkEnums(ctx context.Context, fresh map[string]bool) (bool, error) {
	now, err := w.cat.enumLabels(ctx, w.known)
	if err != nil {
		return false, err
	}
	changed := forgetUnknown(w.enums, w.known)
	for name := range w.known {
		labels, old := now[name], w.enums[name]
		if maps.Equal(labels, old) {
			continue
		}
		if labels == nil {
			labels = map[uint32]string{} // seen without enum columns
		}
		_, seen := w.enums[name]
		w.enums[name], changed = labels, true
		renamed := renamedLabels(old, labels)
		if !seen || fresh == nil || fresh[name] || w.missing[name] || len(renamed) == 0 {
			continue
		}
		fields := []zap.Field{zap.String("table", name), zap.Strings("renamed", renamed)}
		if w.c.pg.OnColumnChange == config.OnColumnChangeWarn {
			w.c.log.Warn("enum labels renamed: every row holding them reads differently, with nothing in the log, so the targets hold "+
				"the old labels until each row changes; `backflow snapshot --table "+name+"` sends every row again", fields...)
			continue
		}
		w.c.log.Warn("enum labels renamed: every row holding them reads differently, with nothing in the log; re-snapshotting the "+
			"table so that the targets get them (on_column_change: warn only reports it)", fields...)
		if err := w.enqueue(ctx, &SnapshotRequest{Table: name, Reason: ReasonEnum}); err != nil {
			w.c.log.Error("cannot queue the table's re-snapshot", zap.String("table", name), zap.Error(err))
		}
	}
	return changed, nil
}

// renamedLabels lists the labels of old whose oid now has another label, as "old -> new".
func renamedLabels(old, now map[uint32]string) []string {
	var out []string
	for oid, was := range old {
		if is, ok := now[oid]; ok && is != was {
			out = append(out, was+" -> "+is)
		}
	}
	slices.Sort(out)
	return out
}

// checkFilters reads the publication's column list and row filter of each captured table
// (PostgreSQL 15 and later). One that changed since the last check changes which rows and
// columns PostgreSQL publishes, with nothing in the log: rows now in the filter are never sent,
// rows now out of it stay in the targets. Such a table is refreshed in full, unless it is in
// fresh (refreshed in full already: a table replaced under its name is added to the publication
// without the old relation's filter, which is warned about), missing, or unpublished. The tables
// it refreshes join fresh. It reports whether any table's filter changed.
func (w *relationWatch) checkFilters(ctx context.Context, fresh map[string]bool) (bool, error) {
	now, err := w.cat.publicationFilters(ctx, w.known)
	if err != nil {
		return false, err
	}
	changed := forgetUnknown(w.filters, w.known)
	for name := range w.known {
		f := now[name]
		old, seen := w.filters[name]
		if seen && old.equal(f) {
			continue
		}
		w.filters[name], changed = f, true
		switch {
		case !seen || fresh == nil || w.missing[name]:
		case fresh[name]:
			if !old.equal(pubFilter{}) && f.equal(pubFilter{}) {
				w.c.log.Warn("the table under this name is published without the column list and row filter its publication had for the "+
					"one before it: every row and column now reaches the topic; set them again if they are still meant", zap.String("table", name),
					zap.String("publication", w.c.pg.Publication), zap.Stringer("was", old))
			}
		default:
			w.c.log.Warn("the publication's column list or row filter of the table changed: PostgreSQL now publishes other rows or columns, "+
				"with nothing in the log; refreshing the table in full", zap.String("table", name), zap.String("publication", w.c.pg.Publication),
				zap.Stringer("was", old), zap.Stringer("now", f))
			if w.follow(ctx, name, ReasonFilter) {
				fresh[name] = true
			} else {
				w.filters[name] = old // tried again at the next check
			}
		}
	}
	return changed, nil
}

// forgetUnknown deletes from m the tables known no longer has, and reports whether there were any.
func forgetUnknown[V any](m map[string]V, known map[string]uint32) bool {
	n := len(m)
	maps.DeleteFunc(m, func(name string, _ V) bool {
		_, ok := known[name]
		return !ok
	})
	return len(m) < n
}

// checkUnlogged reads which captured tables are UNLOGGED or have UNLOGGED partitions, which
// PostgreSQL allows under a FOR TABLES IN SCHEMA publication and for partitions (a bulk load's
// habit: SET UNLOGGED, load, SET LOGGED). None of their changes is in the log meanwhile: each
// such table is reported (log, metric, status) until it is logged again, and then refreshed in
// full, which also deletes in the targets the keys deleted meanwhile, unless it is in fresh
// (refreshed in full already). The tables it refreshes join fresh. It reports whether any
// table's state changed.
func (w *relationWatch) checkUnlogged(ctx context.Context, fresh map[string]bool) (bool, error) {
	now, err := w.cat.unloggedRelations(ctx, w.known)
	if err != nil {
		return false, err
	}
	changed := forgetUnknown(w.unlogged, w.known) // left out: follow refreshes it once it is fit
	for name := range w.known {
		rels, was := now[name], w.unlogged[name]
		switch {
		case len(rels) > 0:
			if !slices.Equal(rels, was) {
				err := unloggedError{table: name, relations: rels}
				w.c.log.Error("table not logged: its changes are not captured until it is logged again, and then it is refreshed in full",
					zap.String("table", name), zap.Error(err))
				w.c.metrics.TableUnfollowed(name, err.Error())
				w.unlogged[name], changed = rels, true
			}
			continue
		case len(was) == 0:
			continue
		}
		if !fresh[name] {
			w.c.log.Warn("table logged again: its changes while unlogged are not in the log; refreshing it in full", zap.String("table", name))
			if err := w.enqueue(ctx, &SnapshotRequest{Table: name, FullRefresh: true, Reason: ReasonLogged}); err != nil {
				w.c.log.Error("cannot queue the table's refresh; trying again at the next check", zap.String("table", name), zap.Error(err))
				continue
			}
			fresh[name] = true
		}
		delete(w.unlogged, name)
		changed = true
		w.c.metrics.TableUnfollowed(name, "")
	}
	return changed, nil
}

// checkPartitions reads the leaf partitions of the partitioned tables being captured and acts on
// those whose partitions changed since the last check, except tables seen for the first time and
// those in fresh (refreshed in full already). A partitioned table's publication sends its rows'
// changes, but not what changes its partitions as a whole, which changes its rows all the same:
//
//   - a leaf TRUNCATEd (pgoutput leaves out a partition's truncate when publishing through the
//     root), rewritten, DETACHed or DROPped: rows gone or replaced, so the table is refreshed in
//     full, which deletes in the targets the keys it no longer has;
//   - a leaf ATTACHed with rows in it: rows that arrive without an insert, so the table is
//     re-snapshotted. A partition created empty (next month's) needs nothing.
//
// It reports whether any partitions changed. A table whose new partitions cannot be read yet
// (locked by a DDL under way) keeps its old partitions, to be compared again at the next check.
func (w *relationWatch) checkPartitions(ctx context.Context, fresh map[string]bool) (bool, error) {
	now, err := w.cat.partitionFiles(ctx, w.known)
	if err != nil {
		return false, err
	}
	changed := false
	for name := range w.parts {
		if _, ok := now[name]; !ok {
			delete(w.parts, name) // no longer captured, or no longer partitioned
			changed = true
		}
	}
	for name, leaves := range now {
		old, seen := w.parts[name]
		if seen && maps.Equal(old, leaves) {
			continue
		}
		if seen && !fresh[name] {
			if !w.partitionsChanged(ctx, name, old, leaves) {
				continue
			}
		}
		w.parts[name], changed = leaves, true
	}
	return changed, nil
}

// partitionsChanged queues what a change of name's partitions from old to now needs (see
// checkPartitions). It reports false when the change could not be judged yet.
func (w *relationWatch) partitionsChanged(ctx context.Context, name string, old, now map[uint32]uint32) bool {
	var gone, rewritten, attached []uint32
	for oid, file := range old {
		switch was, ok := now[oid]; {
		case !ok:
			gone = append(gone, oid)
		case was != file:
			rewritten = append(rewritten, oid)
		}
	}
	// A full refresh reads the attached partitions too: only without one are they looked at.
	for oid := range now {
		if _, ok := old[oid]; ok || len(gone)+len(rewritten) > 0 {
			continue
		}
		has, err := w.cat.hasRows(ctx, oid)
		if err != nil {
			w.c.log.Info("cannot read a new partition yet; looking again at the next check", zap.String("table", name), zap.Error(err))
			return false
		}
		if has {
			attached = append(attached, oid)
		}
	}
	if len(gone)+len(rewritten)+len(attached) == 0 {
		w.c.log.Info("partitions created empty: no row changed, nothing to read", zap.String("table", name))
		return true
	}
	full := len(gone)+len(rewritten) > 0
	w.c.log.Warn("partitions of the table truncated, rewritten, detached, dropped or attached with rows: its rows changed "+
		"without a change in the log; refreshing it", zap.String("table", name), zap.Bool("full_refresh", full),
		zap.Int("gone", len(gone)), zap.Int("truncated_or_rewritten", len(rewritten)), zap.Int("attached_with_rows", len(attached)))
	if err := w.enqueue(ctx, &SnapshotRequest{Table: name, FullRefresh: full, Reason: ReasonPartitions}); err != nil {
		w.c.log.Error("cannot queue the table's refresh", zap.String("table", name), zap.Error(err))
		return false
	}
	return true
}

// columnChanges compares two lists of "name type" columns: the names of now absent from old,
// and those whose type differs.
func columnChanges(old, now []string) (added, retyped []string) {
	types := make(map[string]string, len(old))
	for _, c := range old {
		n, t, _ := strings.Cut(c, " ")
		types[n] = t
	}
	for _, c := range now {
		n, t, _ := strings.Cut(c, " ")
		switch was, ok := types[n]; {
		case !ok:
			added = append(added, n)
		case was != t:
			retyped = append(retyped, n+" ("+was+" to "+t+")")
		}
	}
	return added, retyped
}

// follow adds a replaced, new or unpublished table to the publication and queues its full
// refresh, for reason. It reports false, after logging why once, when the table cannot be
// followed yet.
func (w *relationWatch) follow(ctx context.Context, name, reason string) bool {
	schema, table, _ := strings.Cut(name, ".")
	// The key is checked first: publishing a table without a replica identity would make
	// PostgreSQL refuse its UPDATEs and DELETEs (a CREATE TABLE AS has no primary key).
	err := w.cat.followProblem(ctx, schema, table)
	if err == nil {
		_, err = ensurePublication(ctx, w.cat.conn, w.c.pg.Publication, w.c.pg.Tables, [][2]string{{schema, table}})
	}
	if err != nil {
		if w.failing[name] != err.Error() {
			w.failing[name] = err.Error()
			w.c.log.Error("cannot follow the table under this name; its targets are stale until this is fixed",
				zap.String("table", name), zap.Error(err))
		}
		w.c.metrics.TableUnfollowed(name, err.Error())
		return false
	}
	delete(w.failing, name)
	w.c.metrics.TableUnfollowed(name, "")
	if reason == ReasonReplaced {
		w.c.metrics.TableReplaced(name)
	}
	if err := w.enqueue(ctx, &SnapshotRequest{Table: name, FullRefresh: true, Reason: reason}); err != nil {
		w.c.log.Error("cannot queue the table's refresh", zap.String("table", name), zap.Error(err))
		return false
	}
	return true
}

// persist saves the relations. A table a schema.* pattern matched that is gone is reported by
// this process (log, metric) but not saved: dropping a table from a captured schema is common
// and deliberate, so the next start does not report it again. A listed table stays missing.
func (w *relationWatch) persist(ctx context.Context) error {
	st := &relationState{Tables: map[string]uint32{}, Columns: map[string][]string{}, Files: map[string]uint32{},
		Partitions: map[string]map[uint32]uint32{}, Unlogged: map[string][]string{}, Natts: map[string]int{},
		Filters: map[string]pubFilter{}, UnpublishedOps: w.ops, Enums: map[string]map[uint32]string{}}
	for name, oid := range w.known {
		listed := slices.Contains(w.c.pg.Tables, name)
		if cols, ok := w.columns[name]; ok {
			st.Columns[name] = cols
		}
		if f, ok := w.files[name]; ok {
			st.Files[name] = f
		}
		if n, ok := w.natts[name]; ok {
			st.Natts[name] = n
		}
		if p, ok := w.parts[name]; ok {
			st.Partitions[name] = p
		}
		if u, ok := w.unlogged[name]; ok {
			st.Unlogged[name] = u
		}
		if f, ok := w.filters[name]; ok {
			st.Filters[name] = f
		}
		if e, ok := w.enums[name]; ok {
			st.Enums[name] = e
		}
		switch {
		case !w.missing[name]:
			st.Tables[name] = oid
		case listed:
			st.Tables[name] = oid
			st.Missing = append(st.Missing, name)
		}
	}
	for name := range w.missing {
		if _, ok := w.known[name]; !ok && slices.Contains(w.c.pg.Tables, name) {
			st.Missing = append(st.Missing, name)
		}
	}
	slices.Sort(st.Missing)
	return w.save(ctx, st)
}

// current resolves the configured entries to relations. missing lists the explicit entries that
// point to nothing, and the tables a pattern matched before that it matches no more.
func (w *relationWatch) current(ctx context.Context) (map[string]uint32, []string, error) {
	now := map[string]uint32{}
	var missing []string
	for _, e := range w.c.pg.Tables {
		schema, name, _ := strings.Cut(e, ".")
		rows, err := w.cat.conn.Query(ctx, `SELECT n.nspname || '.' || c.relname, c.oid::int8
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE `+entryTables, schema, name)
		if err != nil {
			return nil, nil, fmt.Errorf("look up %s: %w", e, err)
		}
		found, err := pgx.CollectRows(rows, pgx.RowToStructByPos[relationRow])
		if err != nil {
			return nil, nil, fmt.Errorf("look up %s: %w", e, err)
		}
		if len(found) == 0 && name != "*" {
			missing = append(missing, e)
		}
		for _, f := range found {
			if f.Name != w.c.signalTable {
				now[f.Name] = uint32(f.OID)
			}
		}
	}
	for name := range w.known {
		if _, ok := now[name]; !ok && !slices.Contains(missing, name) && w.configured(name) {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	return now, missing, nil
}

// configured reports whether a table is still named by an entry (a table dropped from the config
// is neither captured nor missing).
func (w *relationWatch) configured(table string) bool {
	if w == nil {
		return false
	}
	schema, _, _ := strings.Cut(table, ".")
	return slices.Contains(w.c.pg.Tables, table) || slices.Contains(w.c.pg.Tables, schema+".*")
}
