package capture

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// relationWatch keeps capture on the relations the configured table names point to now.
//
// Its invariant: every table a configured entry names is captured as the relation (pg_class oid)
// the name points to now, and the targets hold that relation's rows. A name found pointing to
// another relation (dbt's rename swap, DROP and CREATE, CREATE TABLE AS and a rename) is added to
// the publication and fully refreshed, deletes included; a name that points to nothing is
// reported (log, metric, status) for as long as it is configured and gone. The relations are
// kept in the state topic, so a swap made while capture was down is found at its next start.
type relationWatch struct {
	c       *Capture
	cat     *catalog
	known   map[string]uint32 // schema.table -> oid being captured
	missing map[string]bool
	failing map[string]string // table -> the error that keeps it from being followed, logged once
	every   time.Duration
	next    time.Time
	save    func(context.Context, *relationState) error
	enqueue func(context.Context, *SnapshotRequest) error
}

// relationRow is one table an entry resolves to.
type relationRow struct {
	Name string // schema.table
	OID  int64
}

// relationState is what the watch keeps in the state topic.
type relationState struct {
	Tables  map[string]uint32 `json:"tables"`
	Missing []string          `json:"missing,omitempty"`
}

// minRelationCheck bounds how often the catalog is asked.
const minRelationCheck = time.Second

// start compares the relations saved by the previous run with those the names point to now and
// re-snapshots what changed meanwhile. A first run (nothing saved) only records those of the
// tables capture reads: the initial snapshot reads them all. A table left out (without a key) is
// new to the first check, which reports it, and refreshes it in full once it has a key.
func (w *relationWatch) start(ctx context.Context, saved *relationState, tables [][2]string, leftOut []string) error {
	w.known, w.missing, w.failing = map[string]uint32{}, map[string]bool{}, map[string]string{}
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
		return w.persist(ctx)
	}
	w.known = saved.Tables
	for _, name := range leftOut {
		delete(w.known, name)
	}
	for _, m := range saved.Missing {
		w.missing[m] = true
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
		if !w.follow(ctx, name, ok) {
			continue // known keeps the old oid: the next check tries again
		}
		w.known[name], changed = oid, true
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
	if changed {
		return w.persist(ctx)
	}
	return nil
}

// follow adds a replaced or new table to the publication and queues its full refresh. It
// reports false, after logging why once, when the table cannot be followed yet.
func (w *relationWatch) follow(ctx context.Context, name string, replaced bool) bool {
	schema, table, _ := strings.Cut(name, ".")
	// The key is checked first: publishing a table without a replica identity would make
	// PostgreSQL refuse its UPDATEs and DELETEs (a CREATE TABLE AS has no primary key).
	err := w.cat.keyProblem(ctx, schema, table)
	if err == nil {
		err = ensurePublication(ctx, w.cat.conn, w.c.pg.Publication, w.c.pg.Tables, [][2]string{{schema, table}})
	}
	if err == nil {
		_, err = w.cat.table(ctx, schema, table)
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
	reason := ReasonAdded
	if replaced {
		reason = ReasonReplaced
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
	st := &relationState{Tables: map[string]uint32{}}
	for name, oid := range w.known {
		listed := slices.Contains(w.c.pg.Tables, name)
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
