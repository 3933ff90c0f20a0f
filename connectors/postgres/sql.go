package postgres

import (
	"slices"
	"strconv"
	"strings"
)

// upsertSQL is the statement for one set of present columns.
type upsertSQL struct {
	sql    string
	cols   []int // the present columns, in table order: parameter i holds column cols[i]
	keyPos []int // for each parameter, its position in the key, or -1
	// copy is "COPY t (the present columns) FROM STDIN", for batches of new rows (see
	// copyInserts), or "" when the rows need more than their values (a soft delete mark,
	// OVERRIDING SYSTEM VALUE).
	copy string
}

// param is the i-th parameter, a text array, and alias its column's name.
func param(i int) string { return "$" + strconv.Itoa(i+1) + "::text[]" }
func alias(i int) string { return "c" + strconv.Itoa(i) }

// castExpr is "u.cI::type", the text of unnest column i cast to the column's type.
func castExpr(i int, t *colType) string {
	if t.cast == "" {
		return "u." + alias(i)
	}
	return "u." + alias(i) + "::" + t.cast
}

// unnestFrom is "(SELECT unnest($1::text[]) AS c0, …) AS u" for n columns. The unnests are in
// the select list, where PostgreSQL runs them in lockstep one row at a time; in FROM, as
// unnest($1, $2, …), each would first be materialised into a tuplestore, which measured 10–20%
// slower on large batches.
func unnestFrom(n int) string {
	var b strings.Builder
	b.WriteString("(SELECT ")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("unnest(" + param(i) + ") AS " + alias(i))
	}
	b.WriteString(") AS u")
	return b.String()
}

// upsert returns the statement that upserts rows having exactly the columns of sig (a bit set
// over t.cols), building it on first use. Keeping the text stable per field set lets pgx's
// statement cache prepare it once per connection.
//
// The plain form is INSERT … SELECT … FROM unnest(…) ON CONFLICT (key) DO UPDATE SET, the SET
// naming only the present columns. PostgreSQL checks NOT NULL on the proposed row before it looks
// for a conflict, though, so when an absent column (an unchanged TOAST value) is NOT NULL without
// a default, that form would fail even for rows that exist: then existing rows are updated first
// and only the others inserted.
func (t *target) upsert(sig []uint64) *upsertSQL {
	key := sigKey(sig)
	t.mu.Lock()
	defer t.mu.Unlock()
	if u, ok := t.stmts[key]; ok {
		return u
	}
	u := &upsertSQL{}
	has := func(ci int) bool { return sig[ci/64]&(1<<(ci%64)) != 0 }
	for ci := range t.cols {
		if has(ci) {
			u.cols = append(u.cols, ci)
		}
	}
	type assign struct{ ident, expr string }
	var ins []string  // inserted columns
	var vals []string // their values, over v (the typed rows) or constants
	var sets []assign // updated columns and their values over v
	overriding := false
	for i, ci := range u.cols {
		c := &t.cols[ci]
		u.keyPos = append(u.keyPos, slices.Index(t.key, ci))
		ins = append(ins, c.ident)
		vals = append(vals, "v."+alias(i))
		if !t.isKey[ci] {
			sets = append(sets, assign{c.ident, "v." + alias(i)})
		}
		overriding = overriding || c.always
	}
	if sd := t.softDelete; sd >= 0 && !has(sd) {
		// An upserted row is alive: clear its soft delete mark unless the mapping sets it.
		c := &t.cols[sd]
		mark := "NULL::" + c.typ.cast
		if c.typ.kind == kBool {
			mark = "false"
		}
		ins = append(ins, c.ident)
		vals = append(vals, mark)
		sets = append(sets, assign{c.ident, mark})
	}
	updateFirst := false
	for ci, c := range t.cols {
		if !has(ci) && ci != t.softDelete && c.writable && c.notNull && !c.hasDefault {
			updateFirst = true
		}
	}

	if t.softDelete < 0 && !overriding {
		u.copy = "COPY " + t.ident + " (" + strings.Join(ins, ", ") + ") FROM STDIN"
	}

	typed := make([]string, len(u.cols)) // the parameters cast to the columns' types
	for i, ci := range u.cols {
		typed[i] = castExpr(i, t.cols[ci].typ) + " AS " + alias(i)
	}
	var b strings.Builder
	if !updateFirst {
		// INSERT INTO t (…) SELECT u.c0::type, … FROM (SELECT unnest($1::text[]) AS c0, …) AS u
		for i, ci := range u.cols { // the soft delete mark after them is a constant
			vals[i] = castExpr(i, t.cols[ci].typ)
		}
		b.WriteString("INSERT INTO " + t.ident + t.versionAlias() + " (" + strings.Join(ins, ", ") + ")")
		if overriding {
			b.WriteString(" OVERRIDING SYSTEM VALUE")
		}
		b.WriteString(" SELECT " + strings.Join(vals, ", ") + " FROM " + unnestFrom(len(u.cols)))
	} else {
		// WITH v AS (the typed rows), upd AS (UPDATE the rows that exist RETURNING their keys)
		// INSERT the others
		keyMatch := func(left string) string {
			conds := make([]string, len(t.key))
			for i, ci := range t.key {
				conds[i] = left + "." + t.cols[ci].ident + " = v." + alias(slices.Index(u.cols, ci))
			}
			return strings.Join(conds, " AND ")
		}
		b.WriteString("WITH v AS (SELECT " + strings.Join(typed, ", ") + " FROM " + unnestFrom(len(u.cols)) + ")")
		where := " WHERE NOT EXISTS (SELECT FROM " + t.ident + " AS x WHERE " + keyMatch("x") + ")"
		if len(sets) > 0 {
			setList := make([]string, len(sets))
			for i, a := range sets {
				setList[i] = a.ident + " = " + a.expr
			}
			b.WriteString(", upd AS (UPDATE " + t.ident + " AS x SET " + strings.Join(setList, ", ") +
				" FROM v WHERE " + keyMatch("x") + t.versionGuard("x", "v."+alias(slices.Index(u.cols, t.version)), has) +
				" RETURNING " + t.keyIdentsOf("x") + ")")
			where = " WHERE NOT EXISTS (SELECT FROM upd WHERE " + keyMatch("upd") + ")"
		}
		b.WriteString(" INSERT INTO " + t.ident + t.versionAlias() + " (" + strings.Join(ins, ", ") + ")")
		if overriding {
			b.WriteString(" OVERRIDING SYSTEM VALUE")
		}
		b.WriteString(" SELECT " + strings.Join(vals, ", ") + " FROM v" + where)
	}
	b.WriteString(" ON CONFLICT (" + t.keyIdents() + ")")
	if len(sets) == 0 {
		b.WriteString(" DO NOTHING")
	} else {
		setList := make([]string, len(sets))
		for i, a := range sets {
			setList[i] = a.ident + " = EXCLUDED." + a.ident
		}
		b.WriteString(" DO UPDATE SET " + strings.Join(setList, ", "))
		if t.version >= 0 && has(t.version) {
			b.WriteString(" WHERE" + strings.TrimPrefix(t.versionGuard(versionAlias, "EXCLUDED."+t.cols[t.version].ident, has), " AND"))
		}
	}
	u.sql = b.String()
	t.stmts[key] = u
	return u
}

// keyIdentsOf lists the key columns qualified by alias.
func (t *target) keyIdentsOf(alias string) string {
	ids := make([]string, len(t.key))
	for i, ci := range t.key {
		ids[i] = alias + "." + t.cols[ci].ident
	}
	return strings.Join(ids, ", ")
}

func sigKey(sig []uint64) string {
	var b strings.Builder
	for _, w := range sig {
		b.WriteString(strconv.FormatUint(w, 36))
		b.WriteByte('.')
	}
	return b.String()
}

func (t *target) keyIdents() string {
	ids := make([]string, len(t.key))
	for i, ci := range t.key {
		ids[i] = t.cols[ci].ident
	}
	return strings.Join(ids, ", ")
}

// keySelect is "SELECT u.c0::t0, … FROM unnest(…)" over the key columns.
func (t *target) keySelect(extra int) string {
	sel := make([]string, len(t.key))
	for i, ci := range t.key {
		sel[i] = castExpr(i, t.cols[ci].typ)
	}
	return "SELECT " + strings.Join(sel, ", ") + " FROM " + unnestFrom(len(t.key)+extra)
}

// deleteSQL deletes the rows whose keys are in the parameters, one text array per key column.
func (t *target) deleteSQL() string {
	return "DELETE FROM " + t.ident + " WHERE (" + t.keyIdents() + ") IN (" + t.keySelect(0) + ")"
}

// softDeleteSQL marks the rows whose keys are in the first parameters; the last parameter holds
// each row's mark (true, or the time of the delete). Rows marked already keep their mark.
func (t *target) softDeleteSQL() string {
	c := &t.cols[t.softDelete]
	n := len(t.key)
	conds := make([]string, n)
	for i, ci := range t.key {
		conds[i] = t.cols[ci].ident + " = " + castExpr(i, t.cols[ci].typ)
	}
	mark := "u." + alias(n) + "::" + c.typ.cast
	return "UPDATE " + t.ident + " SET " + c.ident + " = " + mark + " FROM " + unnestFrom(n+1) +
		" WHERE " + strings.Join(conds, " AND ") + " AND " + t.notMarked()
}

func (t *target) notMarked() string {
	c := &t.cols[t.softDelete]
	if c.typ.kind == kBool {
		return c.ident + " IS DISTINCT FROM true"
	}
	return c.ident + " IS NULL"
}

// truncateSQL removes every row. DELETE rather than TRUNCATE: it takes row locks only, so
// readers of the target and other partitions' writers are not blocked, and it is MVCC-safe.
// With soft deletes every live row is marked instead.
func (t *target) truncateSQL() string {
	if t.softDelete < 0 {
		return "DELETE FROM " + t.ident
	}
	c := &t.cols[t.softDelete]
	mark := "now()"
	if c.typ.kind == kBool {
		mark = "true"
	}
	return "UPDATE " + t.ident + " SET " + c.ident + " = " + mark + " WHERE " + t.notMarked()
}

func offsetsUpsertSQL(ident string) string {
	return "INSERT INTO " + ident + ` (sink, topic, "partition", next_offset, updated_at) VALUES ($1, $2, $3, $4, now())` +
		` ON CONFLICT (sink, topic, "partition") DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = EXCLUDED.updated_at`
}

// offsetsFencedSQL stores a partition's next offset ($4) only if the table still holds the one
// the writer was fenced at ($5; NULL: no row yet), and fails with division_by_zero otherwise,
// which rolls back the batch's whole transaction: a row that moved, one that appeared while none
// was expected, and one that is gone (the offsets table dropped and made again) all fail. ON
// CONFLICT DO UPDATE locks the row and checks its WHERE against the latest committed version, so
// two writers of one partition cannot both pass; xmax is 0 in a row the statement inserted. The
// failure is a division because SQL has no RAISE, and a CASE with a constant error branch would
// be folded, and fail, when the statement is planned.
func offsetsFencedSQL(ident string) string {
	return "WITH stored AS (" + offsetsUpsertSQL(ident) + ` WHERE ` + ident + `.next_offset = $5::bigint RETURNING xmax = 0 AS inserted)` +
		` SELECT 1 / count(*)::int FROM stored WHERE NOT (inserted AND $5::bigint IS NOT NULL)`
}

func offsetsSelectSQL(ident string) string {
	return `SELECT topic, "partition", next_offset FROM ` + ident + ` WHERE sink = $1 AND topic = ANY($2::text[])`
}
