package mapping

import (
	"errors"
	"fmt"
	"strings"

	"github.com/expr-lang/expr/file"

	"github.com/backflow-dev/backflow/pkg/config"
)

// ExprError is one problem with one part of a sink's mapping: an expression that does not compile,
// a key field that is not mapped, or an expression that failed on a record.
type ExprError struct {
	// Sink is the sink's name.
	Sink string
	// Path locates the part: at compile time the YAML path, e.g. "sinks[0].map.available"; at
	// run time the part within the sink, e.g. "map.price_cents", "filter" or "key".
	Path string
	// Line and Column give the 1-based position in the expression, as expr reports it; 0 when
	// the problem has no position.
	Line, Column int
	// Message says what is wrong.
	Message string
	// Err is the underlying error, if any.
	Err error
}

// Error formats the problem as "path (sink name): message (line:column)".
func (e *ExprError) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Sink != "" {
		b.WriteString(" (sink " + e.Sink + ")")
	}
	b.WriteString(": " + e.Message)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (%d:%d)", e.Line, e.Column)
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *ExprError) Unwrap() error { return e.Err }

// MissingColumnError is the failure of a record whose event does not carry a column that a map
// field or the filter reads by name: the column was renamed or dropped at the source, or the
// mapping misspells it. The mapping does not make up a NULL for it; the record is not written.
// It is a record-level failure that no retry of the same record fixes, only a change of the
// mapping or of the table. A column present with a NULL value is not missing.
type MissingColumnError struct {
	Sink  string // the sink's name
	Path  string // "map.<field>" or "filter"
	Field string // the target field; "" for the filter
	Image string // the row image read: "after", "before" or "key"
	// Column is the column the event lacks.
	Column string
	Table  string // the event's table, "schema.table"
}

// Error says which sink, field and column, e.g. `map.price_cents (sink shop): public.items has
// no column "price" (after.price) in this event; renamed or dropped at the source? Fix the
// mapping or the table`.
func (e *MissingColumnError) Error() string {
	table := e.Table
	if table == "" {
		table = "the event"
	}
	return fmt.Sprintf("%s (sink %s): %s has no column %q (%s.%s) in this event; renamed or dropped at the source? Fix the mapping or the table",
		e.Path, e.Sink, table, e.Column, e.Image, e.Column)
}

// CompileError lists every problem Compile found in a sink's mapping.
type CompileError struct {
	// Errors holds the problems: map fields in name order, then the filter, then the key.
	Errors []*ExprError
}

// Error prints one problem per line.
func (e *CompileError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, so errors.As finds each *ExprError.
func (e *CompileError) Unwrap() []error {
	errs := make([]error, len(e.Errors))
	for i, fe := range e.Errors {
		errs[i] = fe
	}
	return errs
}

// exprError wraps an error from expr, taking its message and position apart so that the
// expression snippet expr appends does not spread the message over several lines.
func exprError(sink, path string, err error) *ExprError {
	e := &ExprError{Sink: sink, Path: path, Message: err.Error(), Err: err}
	var fe *file.Error
	if errors.As(err, &fe) {
		e.Message = nilMessage(fe.Message)
		if fe.Snippet != "" { // expr located the problem in the source
			e.Line, e.Column = fe.Line, fe.Column+1
		}
	}
	return e
}

// joinKey appends a key to a YAML path the way package config writes paths.
func joinKey(path, key string) string { return config.JoinKey(path, key) }

// nilMessage rewords the reflect panic some expr builtins raise on a nil argument (int(nil)).
func nilMessage(msg string) string {
	if strings.HasPrefix(msg, "reflect: ") && strings.HasSuffix(msg, " on zero Value") {
		return "invalid operation on <nil> (a NULL or missing column)"
	}
	return msg
}
