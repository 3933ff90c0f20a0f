package config

import (
	"errors"
	"reflect"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

var durationType = reflect.TypeFor[time.Duration]()

// walker visits the YAML tree alongside the Go type it decodes into. On the way it records the
// line of every path, expands environment references, and reports unknown fields and values of
// the wrong type. Bad values are replaced by null so that decoding the rest still succeeds.
type walker struct {
	env *envRefs
	c   *collector
}

// setter replaces the node being visited in its parent.
type setter func(ast.Node)

func (w *walker) walk(n ast.Node, t reflect.Type, path string, set setter) {
	n, set = unwrap(n, set)
	if n == nil {
		return // an alias: its anchor is checked where it is defined
	}
	if _, ok := w.c.lines[path]; !ok {
		w.c.lines[path] = n.GetToken().Position.Line
	}
	w.c.values[path] = valueAt(n)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n = w.expand(n, path, set); n == nil || n.Type() == ast.NullType {
		w.c.nulls[path] = true
		return
	}
	w.walkTyped(n, t, path, set)
}

func (w *walker) walkTyped(n ast.Node, t reflect.Type, path string, set setter) {
	switch {
	case t == durationType:
		w.checkDuration(n, path, set)
	case t.Kind() == reflect.String:
		w.checkString(n, path, set)
	case t.Kind() == reflect.Struct:
		w.walkStruct(n, t, path, set)
	case t.Kind() == reflect.Slice:
		w.walkSeq(n, t.Elem(), path, set)
	case t.Kind() == reflect.Map:
		w.walkMap(n, t.Elem(), path, set)
	case t.Kind() == reflect.Interface:
		w.walkAny(n, t, path)
	default:
		w.checkScalar(n, t, path, set)
	}
}

// unwrap looks through anchors and tags. It returns nil for an alias.
func unwrap(n ast.Node, set setter) (ast.Node, setter) {
	for {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n, set = v.Value, func(x ast.Node) { v.Value = x }
		case *ast.TagNode:
			n, set = v.Value, func(x ast.Node) { v.Value = x }
		case *ast.AliasNode:
			return nil, set
		default:
			return n, set
		}
	}
}

// expand expands environment references in a string scalar. On error it reports the problem,
// replaces the value with null and returns nil.
func (w *walker) expand(n ast.Node, path string, set setter) ast.Node {
	s := stringNode(n)
	if s == nil {
		return n
	}
	val, changed, err := w.env.expand(s.Value)
	var missing *missingEnvError
	if errors.As(err, &missing) && w.c.lenientEnv {
		w.c.skip(path, "%s not set: the value is not checked (validate --strict makes this an error)", strings.Join(missing.names, ", "))
		setNull(set, s)
		return nil
	}
	if err != nil {
		w.c.report(path, "%v", err)
		setNull(set, s)
		return nil
	}
	if changed {
		s.Value = val
	}
	return n
}

// setNull replaces a value with null where it has a parent (the file's root has none: a file that
// is one bad string is reported, and not decoded further).
func setNull(set setter, s *ast.StringNode) {
	if set != nil {
		set(ast.Null(s.Token))
	}
}

func stringNode(n ast.Node) *ast.StringNode {
	switch v := n.(type) {
	case *ast.StringNode:
		return v
	case *ast.LiteralNode:
		return v.Value
	}
	return nil
}

func (w *walker) walkStruct(n ast.Node, t reflect.Type, path string, set setter) {
	values, ok := mappingValues(n)
	if !ok {
		w.mismatch(n, t, path, set)
		return
	}
	fields := yamlFields(t)
	for _, mv := range values {
		if mv.Key.IsMergeKey() {
			continue
		}
		key := w.key(mv, path)
		child := JoinKey(path, key)
		if w.duplicate(mv, child) {
			continue
		}
		f, ok := fields[key]
		if !ok {
			w.c.report(child, "%s", unknownField(key, t))
			continue
		}
		w.walk(mv.Value, f.Type, child, func(x ast.Node) { mv.Value = x })
	}
}

func (w *walker) walkMap(n ast.Node, elem reflect.Type, path string, set setter) {
	values, ok := mappingValues(n)
	if !ok {
		w.mismatch(n, reflect.MapOf(reflect.TypeFor[string](), elem), path, set)
		return
	}
	for _, mv := range values {
		if mv.Key.IsMergeKey() {
			continue
		}
		child := JoinKey(path, w.key(mv, path))
		if w.duplicate(mv, child) {
			continue
		}
		w.walk(mv.Value, elem, child, func(x ast.Node) { mv.Value = x })
	}
}

func (w *walker) walkSeq(n ast.Node, elem reflect.Type, path string, set setter) {
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		w.mismatch(n, reflect.SliceOf(elem), path, set)
		return
	}
	lists := map[int]bool{} // items that are one ${VAR} for a string: a comma list splits
	for i := range seq.Values {
		if s := stringNode(seq.Values[i]); s != nil && elem.Kind() == reflect.String {
			lists[i] = w.env.wholeRef(s.Value)
		}
		w.walk(seq.Values[i], elem, index(path, i), func(x ast.Node) { seq.Values[i] = x })
	}
	if len(lists) > 0 {
		seq.Values = splitLists(seq.Values, lists)
	}
}

// splitLists replaces each string item whose whole text was one environment reference holding
// a comma-separated list ("a:9092,b:9092") by one item per element: brokers: ["${BROKERS}"]
// reads as the list it names.
func splitLists(items []ast.Node, lists map[int]bool) []ast.Node {
	out := make([]ast.Node, 0, len(items))
	for i, it := range items {
		s := stringNode(it)
		if !lists[i] || s == nil || !strings.Contains(s.Value, ",") {
			out = append(out, it)
			continue
		}
		for _, part := range strings.Split(s.Value, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, &ast.StringNode{BaseNode: &ast.BaseNode{}, Token: s.Token, Value: part})
			}
		}
	}
	return out
}

// walkAny visits a free-form value (a sink's "with"): any shape is accepted, strings are expanded.
func (w *walker) walkAny(n ast.Node, t reflect.Type, path string) {
	switch n.Type() {
	case ast.MappingType, ast.MappingValueType:
		w.walkMap(n, t, path, nil)
	case ast.SequenceType:
		w.walkSeq(n, t, path, nil)
	}
}

// key returns a mapping key as a string, expanding environment references in it.
func (w *walker) key(mv *ast.MappingValueNode, path string) string {
	k := mv.Key
	if s, ok := k.(*ast.StringNode); ok {
		if val, changed, err := w.env.expand(s.Value); err != nil {
			w.c.report(path, "in a key: %v", err)
		} else if changed {
			s.Value = val
		}
	}
	if sc, ok := k.(ast.ScalarNode); ok {
		if v := sc.GetValue(); v != nil {
			return strings.TrimSpace(toString(v))
		}
	}
	return k.String()
}

// duplicate records the line of a mapping key, or reports it when the mapping already has it.
// (Keys brought in by a "<<" merge may be overridden; the decoder handles those.)
func (w *walker) duplicate(mv *ast.MappingValueNode, path string) bool {
	line := mv.Key.GetToken().Position.Line
	if first, seen := w.c.lines[path]; seen {
		w.c.reportAt(path, line, "duplicate key; first given on line %d", first)
		return true
	}
	w.c.lines[path] = line
	return false
}

func mappingValues(n ast.Node) ([]*ast.MappingValueNode, bool) {
	switch v := n.(type) {
	case *ast.MappingNode:
		return v.Values, true
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{v}, true
	}
	return nil, false
}

// checkString accepts any scalar for a string field, keeping its text as written: "0x1F" stays
// "0x1F" instead of becoming "31".
func (w *walker) checkString(n ast.Node, path string, set setter) {
	if joined, ok := w.flowScalar(n, path); ok {
		set(joined)
		return
	}
	switch n.Type() {
	case ast.StringType, ast.LiteralType:
	case ast.IntegerType, ast.FloatType, ast.BoolType, ast.InfinityType, ast.NanType:
		tk := n.GetToken()
		set(&ast.StringNode{BaseNode: &ast.BaseNode{}, Token: tk, Value: tk.Value})
	default:
		w.mismatch(n, reflect.TypeFor[string](), path, set)
	}
}

// flowScalar reads "host:9092" in a flow sequence (brokers: [host:9092]) as the one string YAML
// 1.2 says it is: a ':' not followed by a space does not end a plain scalar. The parser reads it
// as a mapping of host to 9092; this joins it back, expanding environment references in it. ok
// is false for anything else, and for an expansion that failed (then reported).
func (w *walker) flowScalar(n ast.Node, path string) (*ast.StringNode, bool) {
	values, isMap := mappingValues(n)
	if !isMap || len(values) != 1 {
		return nil, false
	}
	mv := values[0]
	key, kok := mv.Key.(ast.ScalarNode)
	val, vok := mv.Value.(ast.ScalarNode)
	colon, vt := mv.GetToken().Position, mv.Value.GetToken().Position
	if !kok || !vok || vt.Line != colon.Line || vt.Column != colon.Column+1 {
		return nil, false
	}
	text, _, err := w.env.expand(key.GetToken().Value + ":" + val.GetToken().Value)
	if err != nil {
		w.c.report(path, "%v", err)
		return nil, false
	}
	return &ast.StringNode{BaseNode: &ast.BaseNode{}, Token: mv.Key.GetToken(), Value: text}, true
}

// checkDuration accepts Go duration strings, and 0 (which needs no unit).
func (w *walker) checkDuration(n ast.Node, path string, set setter) {
	if n.Type() == ast.IntegerType && n.GetToken().Value == "0" {
		set(&ast.StringNode{BaseNode: &ast.BaseNode{}, Token: n.GetToken(), Value: "0s"})
		return
	}
	w.checkScalar(n, durationType, path, set)
}

// checkScalar decodes a scalar into a value of type t to find type errors. A string that
// decodes only once read as YAML (e.g. "true" from ${VAR} for a bool) is replaced by its
// typed node.
func (w *walker) checkScalar(n ast.Node, t reflect.Type, path string, set setter) {
	if decodes(n, t) {
		return
	}
	if s, ok := n.(*ast.StringNode); ok {
		if typed := reparse(s.Value); typed != nil && decodes(typed, t) {
			set(typed)
			return
		}
	}
	w.mismatch(n, t, path, set)
}

// decodes reports whether the scalar n decodes into a value of type t. A number written with a
// fraction (2.5, or 2.0) does not decode into an integer: the YAML library would drop the
// fraction (snapshot_parallelism: 2.5 read as 2) without a word.
func decodes(n ast.Node, t reflect.Type) bool {
	_, ok := n.(ast.ScalarNode)
	if _, float := n.(*ast.FloatNode); float && t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64 {
		return false
	}
	return ok && yaml.NodeToValue(n, reflect.New(t).Interface()) == nil
}

// reparse reads s as a YAML scalar; nil when it is not one.
func reparse(s string) ast.Node {
	f, err := parser.ParseBytes([]byte(s), 0)
	if err != nil || len(f.Docs) != 1 || f.Docs[0].Body == nil {
		return nil
	}
	if _, ok := f.Docs[0].Body.(ast.ScalarNode); !ok {
		return nil
	}
	return f.Docs[0].Body
}

// mismatch reports a value of the wrong type and replaces it with null.
func (w *walker) mismatch(n ast.Node, t reflect.Type, path string, set setter) {
	w.c.report(path, "%s", expectedType(t))
	if set != nil {
		set(ast.Null(n.GetToken()))
	}
}

func expectedType(t reflect.Type) string {
	switch {
	case t == durationType:
		return `expected a duration such as "50ms", "10s" or "1m30s"`
	case t.Kind() == reflect.Bool:
		return "expected true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "expected an integer"
	case t.Kind() == reflect.String:
		return "expected a string"
	case t.Kind() == reflect.Slice:
		return "expected a list"
	case t.Kind() == reflect.Struct || t.Kind() == reflect.Map:
		return "expected a mapping"
	}
	return "expected a value of type " + t.String()
}

// valueAt returns where a value's text starts in the file.
func valueAt(n ast.Node) valuePos {
	tk := n.GetToken()
	p := valuePos{line: tk.Position.Line, column: tk.Position.Column}
	switch {
	case n.Type() == ast.LiteralType:
		p.block = true
	case tk.Type == token.DoubleQuoteType || tk.Type == token.SingleQuoteType:
		p.column++ // past the quote
	}
	return p
}
