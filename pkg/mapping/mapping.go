package mapping

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/backflow-dev/backflow/pkg/change"
)

// Spec is what a sink's configuration gives to build its mapping.
type Spec struct {
	Sink string // the sink's name, for errors
	Path string // YAML path of the sink, the prefix of error paths, e.g. "sinks[0]"
	// Fields maps each target field to its expression. Empty means the identity mapping: every
	// column of the event, under its own name.
	Fields map[string]string
	// Key lists the target's identity fields, each a field of Fields (or, with the identity
	// mapping, a column).
	Key []string
	// Filter is an optional boolean expression; records it rejects are skipped.
	Filter string
}

// Mapping is a compiled Spec. It is immutable and safe for concurrent use.
type Mapping struct {
	sink        string
	fields      []*field // key fields first, in key order, then the rest sorted by name
	names       []string
	key         []string
	isKey       map[string]bool
	filter      *vm.Program
	filterUsage usage
	uses        map[string]bool // environment names read by any expression
	reads       map[string]bool // columns expressions read by name; nil when one reads an image whole
	images      map[string]bool // plain images read by single-column fields
	expressions bool            // some field needs the expression environment
	// projection: every field is `after.<its own name>`, so the after image is the result
	projection bool
	isField    map[string]bool
	vms        sync.Pool
}

// field is one compiled target field.
type field struct {
	name  string
	path  string // "map.<name>", for run-time errors
	prog  *vm.Program
	usage usage
	key   bool
}

// Compile compiles a sink's mapping, key and filter. It reports every problem at once, as a
// *CompileError whose entries name the sink, the YAML path of the expression and the position in
// it, e.g. `sinks[0].map.available (sink storefront-stock): unknown name afterr (1:1)`.
func Compile(s Spec) (*Mapping, error) {
	m := &Mapping{sink: s.Sink, key: slices.Clone(s.Key), uses: map[string]bool{}, images: map[string]bool{}, reads: map[string]bool{}}
	m.vms.New = func() any { return &vm.VM{} }
	var errs []*ExprError
	errs = append(errs, m.compileFields(s)...)
	errs = append(errs, m.compileFilter(s)...)
	errs = append(errs, m.checkKey(s)...)
	if len(errs) > 0 {
		return nil, &CompileError{Errors: errs}
	}
	m.order()
	return m, nil
}

// compileFields compiles the map expressions in field-name order.
func (m *Mapping) compileFields(s Spec) []*ExprError {
	var errs []*ExprError
	for _, name := range sortedKeys(s.Fields) {
		path := joinKey(joinKey(s.Path, "map"), name)
		if name == "" {
			errs = append(errs, m.errorf(path, "expected a target field name"))
			continue
		}
		f, err := m.compileField(path, name, s.Fields[name])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.fields = append(m.fields, f)
	}
	return errs
}

// compileField compiles one map expression.
func (m *Mapping) compileField(path, name, src string) (*field, *ExprError) {
	prog, err := m.compile(path, src)
	if err != nil {
		return nil, err
	}
	f := &field{name: name, path: joinKey("map", name), prog: prog, usage: analyze(prog.Node())}
	if c := f.usage.single; c != nil {
		// A single column is read from the plain image: no expression environment needed.
		m.images[c.image] = true
	} else {
		m.use(f.usage)
		m.expressions = true
	}
	return f, nil
}

// compileFilter compiles the filter twice: as a bool expression to check its type, and as an
// expression of any type to run, so that a nil result stays nil (expr would turn it into false).
func (m *Mapping) compileFilter(s Spec) []*ExprError {
	if strings.TrimSpace(s.Filter) == "" {
		return nil
	}
	path := joinKey(s.Path, "filter")
	if _, err := m.compile(path, s.Filter, expr.AsBool()); err != nil {
		return []*ExprError{err}
	}
	prog, err := m.compile(path, s.Filter)
	if err != nil {
		return []*ExprError{err}
	}
	m.filter = prog
	m.filterUsage = analyze(prog.Node())
	m.use(m.filterUsage)
	return nil
}

// compile compiles one expression against the environment.
func (m *Mapping) compile(path, src string, opts ...expr.Option) (*vm.Program, *ExprError) {
	if strings.TrimSpace(src) == "" {
		return nil, m.errorf(path, "expected an expression")
	}
	all := append([]expr.Option{expr.Env(env{}), expr.Timezone("UTC")}, functions()...)
	all = append(all, exactFunctions()...)
	prog, err := expr.Compile(src, append(all, opts...)...)
	if err != nil {
		return nil, exprError(m.sink, path, err)
	}
	return prog, nil
}

// checkKey checks that every key field is mapped (any name goes with the identity mapping).
func (m *Mapping) checkKey(s Spec) []*ExprError {
	var errs []*ExprError
	m.isKey = make(map[string]bool, len(s.Key))
	for i, k := range s.Key {
		path := joinKey(s.Path, "key") + "[" + strconv.Itoa(i) + "]"
		_, mapped := s.Fields[k]
		switch {
		case k == "":
			errs = append(errs, m.errorf(path, "expected a field name"))
		case m.isKey[k]:
			errs = append(errs, m.errorf(path, "key field %q is listed twice", k))
		case len(s.Fields) > 0 && !mapped:
			errs = append(errs, m.errorf(path, "key field %q is not mapped; expected one of the map fields (%s)",
				k, strings.Join(sortedKeys(s.Fields), ", ")))
		}
		m.isKey[k] = true
	}
	return errs
}

// order puts the key fields first, in key order, and the others after them by name.
func (m *Mapping) order() {
	rank := make(map[string]int, len(m.key))
	for i, k := range m.key {
		rank[k] = i
	}
	sort.SliceStable(m.fields, func(i, j int) bool {
		ri, ki := rank[m.fields[i].name]
		rj, kj := rank[m.fields[j].name]
		if ki != kj {
			return ki
		}
		return ri < rj // both keys: key order; neither: already sorted by name
	})
	m.projection = len(m.fields) > 0
	m.isField = make(map[string]bool, len(m.fields))
	for _, f := range m.fields {
		f.key = m.isKey[f.name]
		m.names = append(m.names, f.name)
		m.isField[f.name] = true
		c := f.usage.single
		m.projection = m.projection && c != nil && c.image == nameAfter && c.name == f.name
	}
}

// use records the environment names an expression reads.
func (m *Mapping) use(u usage) {
	for name := range u.names {
		m.uses[name] = true
	}
	if len(u.whole) > 0 {
		m.reads = nil
	}
	if m.reads != nil {
		for _, c := range u.columns {
			m.reads[c.name] = true
		}
	}
}

func (m *Mapping) errorf(path, format string, args ...any) *ExprError {
	return &ExprError{Sink: m.sink, Path: path, Message: fmt.Sprintf(format, args...)}
}

// Fields returns the target field names: the key fields in key order, then the others sorted by
// name. It is nil for the identity mapping, whose fields are the columns of each event; use
// Order for the order of one result.
func (m *Mapping) Fields() []string { return slices.Clone(m.names) }

// Key returns the target's identity fields, in configuration order.
func (m *Mapping) Key() []string { return slices.Clone(m.key) }

// Identity reports whether the mapping is the identity (no `map`: every column as is).
func (m *Mapping) Identity() bool { return len(m.fields) == 0 }

// FilterSelectsRows reports whether the mapping has a filter that reads the row only (after, key,
// table): it says which rows the target holds, so an update it rejects may remove a row that
// passed before. A filter that reads before, op or source selects changes instead (`op != "r"`,
// `after.score != before?.score`): an update it rejects says nothing about the row.
func (m *Mapping) FilterSelectsRows() bool {
	if m.filter == nil {
		return false
	}
	for _, name := range []string{nameBefore, nameOp, nameSource, nameEnv} {
		if m.filterUsage.names[name] {
			return false
		}
	}
	return true
}

// KeyFromNonKey returns a key field of the target that reads a column of t's after image outside
// t's own key, and that column: an update changing that column moves the row to another target
// key, and the row under the old one stays (the update carries no old value to remove it by). ok
// is false when every key field reads t's key columns only, or t has no key to compare with.
func (m *Mapping) KeyFromNonKey(t *change.Table) (field, col string, ok bool) {
	if t == nil || len(t.KeyColumns()) == 0 {
		return "", "", false
	}
	isKey := make(map[string]bool)
	for _, c := range t.KeyColumns() {
		isKey[c.Name] = true
	}
	if m.Identity() {
		for _, k := range m.key {
			if !isKey[k] {
				return k, k, true
			}
		}
		return "", "", false
	}
	for _, f := range m.fields {
		if !f.key {
			continue
		}
		for _, c := range f.usage.columns {
			if c.image == nameAfter && !isKey[c.name] {
				return f.name, c.name, true
			}
		}
	}
	return "", "", false
}

// Projection reports whether the mapping, for events of table t, only picks columns of the after
// image under their own names (every field is `after.<its name>`, or the identity mapping), with
// no filter and every field a column of t. It then returns the field each column of t
// becomes, "" for columns the mapping leaves out. For a row the source created, Apply's result is
// then that row's columns, as decoded except for the kinds whose wire form it converts: date,
// time, timestamp, timestamptz and arrays (see plain).
func (m *Mapping) Projection(t *change.Table) ([]string, bool) {
	if m.filter != nil || !(m.projection || m.Identity()) {
		return nil, false
	}
	fields := make([]string, len(t.Columns))
	has := make(map[string]bool, len(t.Columns))
	for i, c := range t.Columns {
		if m.Identity() || m.isField[c.Name] {
			fields[i] = c.Name
			has[c.Name] = true
		}
	}
	for _, k := range m.key {
		if !has[k] {
			return nil, false
		}
	}
	for _, name := range m.names {
		if !has[name] { // Apply fails with a *MissingColumnError
			return nil, false
		}
	}
	return fields, true
}

// Order returns the names of a result of Apply in a stable order: the key fields in key order,
// then the other fields by name. Unlike Fields, it works for the identity mapping too.
func (m *Mapping) Order(fields map[string]any) []string {
	out := make([]string, 0, len(fields))
	for _, k := range m.key {
		if _, ok := fields[k]; ok {
			out = append(out, k)
		}
	}
	rest := len(out)
	for name := range fields {
		if !m.isKey[name] {
			out = append(out, name)
		}
	}
	sort.Strings(out[rest:])
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
