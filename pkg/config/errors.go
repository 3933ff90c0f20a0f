package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// FieldError is one problem in a pipeline file.
type FieldError struct {
	// Path locates the value in the file, e.g. "sinks[0].connector" or "source.postgres.tables[1]".
	// It is empty for problems with the file as a whole, such as a YAML syntax error.
	Path string
	// Line is the 1-based line of the value (or of its closest enclosing key) in the file; 0 when
	// unknown, e.g. for a Pipeline validated without a file.
	Line int
	// Message says what is wrong and what is expected.
	Message string
}

// Error formats the problem as "path: message".
func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Message
	}
	return e.Path + ": " + e.Message
}

// ValidationError lists every problem found in a pipeline file. Parse, Load and
// (*Pipeline).Validate return it for any configuration mistake, so callers can tell a bad
// configuration (exit code 2) from a failure to read the file.
type ValidationError struct {
	// File is the file name used in messages; may be empty.
	File string
	// Errors holds the problems, ordered by line.
	Errors []FieldError
}

// Error prints one line per problem: "file:line: path: message".
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = e.prefix(fe.Line) + fe.Error()
	}
	return strings.Join(lines, "\n")
}

func (e *ValidationError) prefix(line int) string {
	p := e.File
	if line > 0 {
		p += ":" + strconv.Itoa(line)
	}
	if p == "" {
		return ""
	}
	return p + ": "
}

// collector gathers problems together with the line of every path seen in the file.
type collector struct {
	file  string
	lines map[string]int // path -> line of its key (or sequence entry)
	// values holds where each value's text starts, for positions inside it (expressions).
	values map[string]valuePos
	nulls  map[string]bool // paths present in the file with a null value
	bad    []string        // paths already reported while reading; later checks skip them
	errs   []FieldError
	// lenientEnv makes an unset environment variable a warning (skipped) instead of an error.
	lenientEnv bool
	skipped    []FieldError // values not checked: their variables are unset (lenientEnv)
	// connectors are the known target connectors (WithConnectors); nil when not given.
	connectors []Connector
}

func newCollector(file string) *collector {
	return &collector{file: file, lines: map[string]int{}, values: map[string]valuePos{}, nulls: map[string]bool{}}
}

// valuePos is where a value's text starts in the file: its line and column (1-based, past an
// opening quote), and whether it is a block scalar (| or >), whose text starts on the next line.
type valuePos struct {
	line, column int
	block        bool
}

// report records a problem found while reading the file and marks path (and all below it) as
// reported, so validation does not pile a second message on the same value.
func (c *collector) report(path, format string, args ...any) {
	c.reportAt(path, c.line(path), format, args...)
}

// skip records that the value at path was not checked, and why, marking it (and all below it)
// as reported so that validation does not complain about its absence.
func (c *collector) skip(path, format string, args ...any) {
	c.bad = append(c.bad, path)
	c.skipped = append(c.skipped, FieldError{Path: path, Line: c.line(path), Message: fmt.Sprintf(format, args...)})
}

// reportAt is report for a problem at a given line.
func (c *collector) reportAt(path string, line int, format string, args ...any) {
	c.bad = append(c.bad, path)
	c.errs = append(c.errs, FieldError{Path: path, Line: line, Message: fmt.Sprintf(format, args...)})
}

// add records a validation problem unless path was already reported while reading.
func (c *collector) add(path, format string, args ...any) {
	if c.suppressed(path) {
		return
	}
	c.errs = append(c.errs, FieldError{Path: path, Line: c.line(path), Message: fmt.Sprintf(format, args...)})
}

func (c *collector) suppressed(path string) bool {
	for _, b := range c.bad {
		if path == b || b == "" || strings.HasPrefix(path, b+".") || strings.HasPrefix(path, b+"[") {
			return true
		}
	}
	return false
}

// line returns the line of path, or of its closest ancestor present in the file.
func (c *collector) line(path string) int {
	for {
		if l, ok := c.lines[path]; ok {
			return l
		}
		if path == "" {
			return 0
		}
		path = parentPath(path)
	}
}

// present reports whether path has a non-null value in the file.
func (c *collector) present(path string) bool {
	_, ok := c.lines[path]
	return ok && !c.nulls[path]
}

func (c *collector) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	errs := append([]FieldError(nil), c.errs...)
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	return &ValidationError{File: c.file, Errors: errs}
}

// parentPath drops the last segment (".key" or "[index]") of a path.
func parentPath(path string) string {
	last, quoted := 0, false
	for i, r := range path {
		switch {
		case r == '"' && (i == 0 || path[i-1] != '\\'):
			quoted = !quoted
		case !quoted && (r == '.' || r == '['):
			last = i
		}
	}
	return path[:last]
}

// JoinKey appends a mapping key to a YAML path as errors write paths: ".key" for plain keys,
// `["key"]` otherwise. Other packages reporting paths in the pipeline file use it too.
func JoinKey(path, key string) string {
	if !plainKey(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func plainKey(key string) bool {
	if key == "" {
		return false
	}
	for _, r := range key {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}
