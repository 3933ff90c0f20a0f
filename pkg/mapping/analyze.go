package mapping

import (
	"github.com/expr-lang/expr/ast"
)

// The names of the environment, as expressions write them.
const (
	nameAfter  = "after"
	nameBefore = "before"
	nameKey    = "key"
	nameSource = "source"
	nameTable  = "table"
	nameEnv    = "$env" // expr's name for the whole environment
	nameOp     = "op"
)

// column is one column of one row image, read by name (`after.qty`, `before["unit price"]`).
type column struct {
	image    string // nameAfter, nameBefore or nameKey
	name     string
	optional bool // read with `?.`: the column may be absent from the event
}

// usage is what an expression reads, found in its compiled syntax tree.
type usage struct {
	names   map[string]bool // environment names used at all
	columns []column        // columns read by name
	whole   map[string]bool // images used other than by a constant member access (toJSON(after))
	single  *column         // set when the expression is exactly one column access
}

// analyze walks an expression's syntax tree.
func analyze(root ast.Node) usage {
	v := &visitor{covered: map[*ast.IdentifierNode]bool{}}
	ast.Walk(&root, v)
	u := usage{names: map[string]bool{}, whole: map[string]bool{}, columns: v.columns}
	for _, id := range v.idents {
		u.names[id.Value] = true
		if !v.covered[id] {
			u.whole[id.Value] = true
		}
	}
	if u.names[nameEnv] { // $env reaches every name
		for _, name := range []string{nameAfter, nameBefore, nameKey, nameSource, nameTable} {
			u.names[name], u.whole[name] = true, true
		}
	}
	u.single = singleColumn(root)
	return u
}

// visitor collects identifiers and the constant member accesses on row images.
type visitor struct {
	idents  []*ast.IdentifierNode
	covered map[*ast.IdentifierNode]bool // identifiers used as `image.column`
	columns []column
}

// Visit records one node.
func (v *visitor) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		v.idents = append(v.idents, n)
	case *ast.MemberNode:
		if c, id := columnAccess(n); id != nil {
			v.covered[id] = true
			v.columns = append(v.columns, c)
		}
	}
}

// columnAccess recognises `after.x`, `after["x"]`, `after?.x` (and the same on before and key).
func columnAccess(n *ast.MemberNode) (column, *ast.IdentifierNode) {
	id, ok := n.Node.(*ast.IdentifierNode)
	if !ok || !isImage(id.Value) || n.Method {
		return column{}, nil
	}
	prop, ok := n.Property.(*ast.StringNode)
	if !ok {
		return column{}, nil
	}
	return column{image: id.Value, name: prop.Value, optional: n.Optional}, id
}

// singleColumn returns the column when the whole expression is one column access.
func singleColumn(root ast.Node) *column {
	if ch, ok := root.(*ast.ChainNode); ok {
		root = ch.Node
	}
	m, ok := root.(*ast.MemberNode)
	if !ok {
		return nil
	}
	c, id := columnAccess(m)
	if id == nil {
		return nil
	}
	return &c
}

func isImage(name string) bool {
	return name == nameAfter || name == nameBefore || name == nameKey
}
