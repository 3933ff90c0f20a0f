package connspec

import (
	"fmt"
	"strconv"
	"strings"
)

// Problem is one mistake in a sink's settings.
type Problem struct {
	// Path locates the value below the sink, as the pipeline file's errors write paths:
	// "with.url", "with.associations[0].from_field", "key".
	Path    string
	Message string
}

func (p Problem) Error() string { return p.Path + ": " + p.Message }

// Problems lists every mistake found in a sink's settings. Connectors return it from Configure so
// that the config loader can report each one at its line.
type Problems []Problem

// Add records a problem at path.
func (ps *Problems) Add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Has reports whether a problem was recorded at path: later checks that depend on a value skip it
// once it is known bad.
func (ps Problems) Has(path string) bool {
	for _, p := range ps {
		if p.Path == path {
			return true
		}
	}
	return false
}

// Err returns ps as an error, or nil when there are none.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// Error prints one problem a line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Join appends a mapping key to a path: ".key" for plain keys, `["key"]` otherwise (the config
// loader's form).
func Join(path, key string) string {
	if !plainKey(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// Index appends a list index to a path.
func Index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

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
