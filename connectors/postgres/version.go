package postgres

import (
	"fmt"
	"strings"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// versionAlias names the target table in upserts guarded by a version column.
const versionAlias = "backflow_target"

// resolveVersion finds the sink's version column (the source LSN of each row's last change):
// upserts then never replace a row with an older version, so a replay running beside the live
// sink cannot move a key backwards.
func (t *target) resolveVersion(name string) error {
	if name == "" {
		return nil
	}
	ci, ok := t.byName[name]
	if !ok {
		return &configError{path: "version_column", msg: fmt.Sprintf("%q is not a column of table %s (columns: %s)", name, t.qualifiedName(), t.columnNames())}
	}
	if k := t.cols[ci].typ.kind; k != kInt && k != kNumeric {
		return &configError{path: "version_column", msg: fmt.Sprintf("column %q of table %s has type %s; expected an integer (bigint) or numeric type", name, t.qualifiedName(), t.cols[ci].typ.name)}
	}
	t.version = ci
	return nil
}

// versionAlias gives the target table a name the version guard can refer to.
func (t *target) versionAlias() string {
	if t.version < 0 {
		return ""
	}
	return " AS " + versionAlias
}

// versionGuard is the condition, over the existing row as alias and the incoming version, that
// lets an update through only when it is not older than what the row holds.
func (t *target) versionGuard(alias, incoming string, has func(int) bool) string {
	if t.version < 0 || !has(t.version) {
		return ""
	}
	col := alias + "." + t.cols[t.version].ident
	return " AND (" + col + " IS NULL OR " + col + " <= " + incoming + ")"
}

// truncateStep removes the rows a truncate covers. With a version column that is every row last
// written before the truncate: rows that other partitions' workers wrote after it (a truncate
// travels in one partition, the other partitions' changes do not wait for it) carry newer
// versions and stay. Without one, every row.
func (t *target) truncateStep(r *sink.Record) step {
	st := step{what: "truncate", sql: t.truncateSQL()}
	if t.version < 0 || r.Event == nil {
		return st
	}
	col := t.cols[t.version].ident
	older := " (" + col + " IS NULL OR " + col + " < $1::bigint)"
	if t.softDelete < 0 {
		st.sql += " WHERE" + older
	} else {
		st.sql += " AND" + older
	}
	st.args, st.cols = []any{r.Event.Source.LSN}, []int{-1}
	return st
}

// versionedDeleteSQL deletes the rows whose keys are in the first parameters (one text array per
// key column) unless they hold a newer version than the delete's, which is in the last parameter
// (NULL when the delete does not say): a replayed old delete never removes a row written after it.
func (t *target) versionedDeleteSQL() string {
	n := len(t.key)
	sel := make([]string, 0, n+1)
	conds := make([]string, 0, n+1)
	for i, ci := range t.key {
		sel = append(sel, castExpr(i, t.cols[ci].typ)+" AS "+alias(i))
		conds = append(conds, versionAlias+"."+t.cols[ci].ident+" = d."+alias(i))
	}
	sel = append(sel, castExpr(n, t.cols[t.version].typ)+" AS "+alias(n))
	col := versionAlias + "." + t.cols[t.version].ident
	conds = append(conds, "(d."+alias(n)+" IS NULL OR "+col+" IS NULL OR "+col+" <= d."+alias(n)+")")
	return "DELETE FROM " + t.ident + " AS " + versionAlias + " USING (SELECT " + strings.Join(sel, ", ") +
		" FROM " + unnestFrom(n+1) + ") AS d WHERE " + strings.Join(conds, " AND ")
}
