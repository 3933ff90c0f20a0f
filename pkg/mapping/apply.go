package mapping

import (
	"fmt"
	"sort"

	"github.com/expr-lang/expr/vm"

	"github.com/backflow-dev/backflow/pkg/change"
)

// env is the environment expressions run in; see the package doc.
type env struct {
	After  map[string]any `expr:"after"`
	Before map[string]any `expr:"before"`
	Key    map[string]any `expr:"key"`
	Op     string         `expr:"op"`
	Source source         `expr:"source"`
	Table  string         `expr:"table"`
}

// source is `source` in expressions; its type name shows in errors ("type mapping.source has no
// field tsms").
type source struct {
	DB       string `expr:"db" json:"db"`
	Schema   string `expr:"schema" json:"schema"`
	Table    string `expr:"table" json:"table"`
	LSN      int64  `expr:"lsn" json:"lsn"`
	TxID     int64  `expr:"txId" json:"txId"`
	TsMs     int64  `expr:"ts_ms" json:"ts_ms"`
	Snapshot string `expr:"snapshot" json:"snapshot"`
}

// state is one event being mapped.
type state struct {
	ev      *change.Event
	delete  bool
	removal bool // delete or truncate: the filter keeps it unless it says false
	after   map[string]any
	before  map[string]any
	key     map[string]any
	missing map[string]bool // columns of after (and of before, for deletes) whose value is unknown
	env     *env            // for expressions; nil when every field is a single column and no filter
}

// Apply maps one event to the target's fields. keep is false when the filter rejects the event;
// fields is then nil. Truncates have no fields: Apply only runs the filter on them. Apply owns
// ev from then on: it converts the row images to plain values in place, and fields may be the
// after image itself.
//
// Fields whose expression reads a column with an unknown value (an unchanged TOAST column, or a
// column a delete's old row lacks) are left out of fields; see the package doc. On deletes, non-key
// fields whose evaluation fails are left out too. A field or filter that reads a column the event
// does not carry at all fails with a *MissingColumnError (never a NULL). Any other failure, and a
// key field that is nil or cannot be evaluated, is returned as an *ExprError naming the sink and
// the field, e.g. `map.price_cents (sink storefront-stock): invalid operation: <nil> * int (1:17)`.
func (m *Mapping) Apply(ev *change.Event) (fields map[string]any, keep bool, err error) {
	var st state // on the stack: one allocation less per record
	m.prepare(ev, &st)
	if keep, err = m.pass(&st); err != nil || !keep {
		return nil, false, err
	}
	if ev.Op == change.OpTruncate {
		return nil, true, nil
	}
	if fields, err = m.fieldsOf(&st); err != nil {
		return nil, false, err
	}
	return fields, true, nil
}

// Removal maps an insert, update or read as the removal of its row, without the filter: what
// the sink applies when the filter rejects an update or a re-snapshot's read, since the row may
// be in the target from when it passed. Its fields are evaluated as a delete's are: key fields
// must evaluate, others that fail or read an unknown column are left out. Like Apply, it owns ev
// from then on.
func (m *Mapping) Removal(ev *change.Event) (map[string]any, error) {
	var st state
	m.prepare(ev, &st)
	st.delete, st.removal = true, true
	return m.fieldsOf(&st)
}

// prepare converts the event's rows and builds the environment.
func (m *Mapping) prepare(ev *change.Event, st *state) {
	*st = state{ev: ev, delete: ev.Op == change.OpDelete}
	st.removal = st.delete || ev.Op == change.OpTruncate
	if m.uses[nameBefore] || m.images[nameBefore] || st.delete || len(ev.UnchangedToast) > 0 {
		st.before = toPlain(ev.Table, ev.Before)
	}
	switch {
	case st.delete:
		st.after = deleteImage(ev, st.before)
		st.missing = unknownOnDelete(ev.Table, st.after)
	case ev.Op != change.OpTruncate:
		st.after = toPlain(ev.Table, ev.After)
		st.missing = fillToast(ev, st.after, st.before)
	}
	if m.uses[nameKey] || m.images[nameKey] {
		st.key = keyOf(ev.Table, st.after)
	}
	if m.filter != nil || m.expressions {
		e := m.environment(ev, st)
		st.env = &e
	}
}

// environment builds what expressions see, converting only the images they read.
func (m *Mapping) environment(ev *change.Event, st *state) env {
	e := env{Op: string(ev.Op)}
	if m.uses[nameTable] {
		e.Table = tableName(ev.Table)
	}
	if m.uses[nameAfter] {
		e.After = envValues(ev.Table, st.after, m.reads)
	}
	if m.uses[nameBefore] {
		e.Before = envValues(ev.Table, st.before, m.reads)
	}
	if m.uses[nameKey] {
		e.Key = envValues(ev.Table, st.key, m.reads)
	}
	if m.uses[nameSource] {
		s := ev.Source
		e.Source = source{DB: s.DB, Schema: s.Schema, Table: s.Table, LSN: s.LSN, TxID: s.TxID, TsMs: s.TsMs, Snapshot: s.Snapshot}
	}
	return e
}

// deleteImage is `after` for a delete: the old row merged with the event key.
func deleteImage(ev *change.Event, before map[string]any) map[string]any {
	img := make(map[string]any, len(before)+1)
	for name, v := range before {
		img[name] = v
	}
	if ev.Table != nil {
		for name, v := range Values(ev.Table, ev.Key()) {
			img[name] = v
		}
	}
	return img
}

// unknownOnDelete returns the non-key columns a delete's old row has no value for. Without
// REPLICA IDENTITY FULL the old row holds the key only (the other columns absent or nil), so a nil
// there cannot be told from NULL and counts as unknown.
func unknownOnDelete(t *change.Table, img map[string]any) map[string]bool {
	if t == nil {
		return nil
	}
	var missing map[string]bool
	for _, c := range t.Columns {
		if !c.Key && img[c.Name] == nil {
			if missing == nil {
				missing = map[string]bool{}
			}
			missing[c.Name] = true
		}
	}
	return missing
}

// fillToast takes unchanged TOAST columns from the old row when it has them (REPLICA IDENTITY
// FULL: the value did not change) and returns those it could not fill.
func fillToast(ev *change.Event, after, before map[string]any) map[string]bool {
	var missing map[string]bool
	if after == nil {
		return nil
	}
	for _, name := range ev.UnchangedToast {
		if v := before[name]; v != nil {
			after[name] = v
			continue
		}
		if missing == nil {
			missing = map[string]bool{}
		}
		missing[name] = true
	}
	return missing
}

// keyOf returns the event key's columns from a plain row.
func keyOf(t *change.Table, row map[string]any) map[string]any {
	if t == nil || row == nil {
		return nil
	}
	k := make(map[string]any, 2)
	for _, c := range t.Columns {
		if c.Key {
			k[c.Name] = row[c.Name]
		}
	}
	return k
}

// pass runs the filter; see the package doc for nil results and removals.
func (m *Mapping) pass(st *state) (bool, error) {
	if m.filter == nil {
		return true, nil
	}
	if c, absent := st.absent(m.filterUsage); absent && !st.removal {
		return false, m.missingColumn("filter", "", c, st)
	}
	out, err := m.run(m.filter, st.env)
	if st.removal {
		return out != false, nil // only an explicit false skips a removal
	}
	switch v := out.(type) {
	case nil:
		if err != nil {
			return false, exprError(m.sink, "filter", err)
		}
		return false, nil
	case bool:
		return v, nil
	}
	return false, &ExprError{Sink: m.sink, Path: "filter", Message: fmt.Sprintf("expected a bool, got %T (%v)", out, out)}
}

// run evaluates a program with a pooled VM.
func (m *Mapping) run(p *vm.Program, e *env) (any, error) {
	machine := m.vms.Get().(*vm.VM)
	defer m.vms.Put(machine)
	return machine.Run(p, e)
}

// fieldsOf evaluates the target fields.
func (m *Mapping) fieldsOf(st *state) (map[string]any, error) {
	if m.Identity() {
		return m.identity(st)
	}
	if m.projection {
		return m.project(st)
	}
	out := make(map[string]any, len(m.fields))
	for _, f := range m.fields {
		v, ok, err := m.value(f, st)
		if err != nil {
			return nil, err
		}
		if ok {
			out[f.name] = v
		}
	}
	return out, nil
}

// value evaluates one field; ok is false when the field is left out.
func (m *Mapping) value(f *field, st *state) (v any, ok bool, err error) {
	if col, unknown := st.unknown(f.usage); unknown {
		if f.key {
			return nil, false, m.errorf(f.path, "key field reads column %q, whose value the event does not carry", col)
		}
		return nil, false, nil
	}
	if c, absent := st.absent(f.usage); absent {
		if st.delete && !f.key { // a removal writes no values: the old row may lack them
			return nil, false, nil
		}
		return nil, false, m.missingColumn(f.path, f.name, c, st)
	}
	if c := f.usage.single; c != nil {
		v = st.image(c.image)[c.name]
	} else if v, err = m.run(f.prog, st.env); err != nil {
		if st.delete && !f.key {
			return nil, false, nil
		}
		return nil, false, exprError(m.sink, f.path, err)
	} else {
		v = fromEnv(v)
	}
	if f.key && v == nil {
		return nil, false, m.errorf(f.path, "key field evaluated to null")
	}
	return v, true, nil
}

// project returns the after image itself, less the columns the mapping leaves out, when every
// field is a column of after under its own name: the same result as building a new map.
func (m *Mapping) project(st *state) (map[string]any, error) {
	out := st.after
	if out == nil {
		out = map[string]any{}
	}
	for name := range out {
		if !m.isField[name] {
			delete(out, name)
		}
	}
	for _, f := range m.fields {
		v, ok, err := m.value(f, st)
		switch {
		case err != nil:
			return nil, err
		case ok:
			out[f.name] = v
		default:
			delete(out, f.name)
		}
	}
	return out, nil
}

// identity returns every column with a known value under its own name.
func (m *Mapping) identity(st *state) (map[string]any, error) {
	out := st.after
	for name := range st.missing {
		delete(out, name)
	}
	for _, k := range m.key {
		if out[k] == nil {
			return nil, m.errorf("key", "key field %q is not a column of %s or is null", k, tableName(st.ev.Table))
		}
	}
	return out, nil
}

// unknown reports whether an expression reads a column whose value is unknown, and which one.
func (st *state) unknown(u usage) (string, bool) {
	if len(st.missing) == 0 {
		return "", false
	}
	for _, c := range u.columns {
		if st.affected(c.image) && st.missing[c.name] {
			return c.name, true
		}
	}
	for img := range u.whole {
		if st.affected(img) {
			return firstKey(st.missing), true
		}
	}
	return "", false
}

// absent returns the first column an expression reads by name (not with `?.`) that the event
// does not carry at all, as opposed to carrying it as NULL: a column renamed or dropped at the
// source. Unknown values (unchanged TOAST, the non-key columns of a delete's old row) are not
// absent; neither is any column of `before` when the event has no old row, nor a column of
// the table that the old row leaves out (it holds only the key without REPLICA IDENTITY FULL).
func (st *state) absent(u usage) (column, bool) {
	for _, c := range u.columns {
		if !c.optional && st.lacks(c) {
			return c, true
		}
	}
	return column{}, false
}

// lacks reports whether the event does not carry a column of an image; see absent.
func (st *state) lacks(c column) bool {
	var img map[string]any
	switch c.image {
	case nameAfter:
		if st.ev.Op == change.OpTruncate || st.missing[c.name] {
			return false
		}
		img = st.after
	case nameBefore:
		if st.before == nil || st.ev.Table == nil {
			return false
		}
		if _, ok := st.ev.Table.Column(c.name); ok {
			return false
		}
		img = st.before
	case nameKey:
		if st.key == nil {
			return false
		}
		img = st.key
	}
	_, ok := img[c.name]
	return !ok
}

// missingColumn is the error of an expression that reads a column the event lacks.
func (m *Mapping) missingColumn(path, name string, c column, st *state) *MissingColumnError {
	return &MissingColumnError{Sink: m.sink, Path: path, Field: name, Image: c.image, Column: c.name, Table: tableName(st.ev.Table)}
}

// affected reports whether unknown columns concern an image: after always, before on deletes.
func (st *state) affected(image string) bool {
	return image == nameAfter || image == nameBefore && st.delete
}

// image returns a plain row image by its name in expressions.
func (st *state) image(name string) map[string]any {
	switch name {
	case nameAfter:
		return st.after
	case nameBefore:
		return st.before
	}
	return st.key
}

func firstKey(set map[string]bool) string {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys[0]
}

func tableName(t *change.Table) string {
	if t == nil {
		return ""
	}
	return t.QualifiedName()
}
