package config

import (
	"fmt"
	"os"
	"sort"
)

// File is a loaded pipeline file with what commands need beyond the Pipeline: its warnings, and
// the line of every YAML path, so that problems found later (a mapping that fails on a sample
// event, a command the file cannot serve) are reported where they are written.
type File struct {
	Name     string
	Pipeline *Pipeline
	Warnings []Warning
	c        *collector
}

// LoadFile is LoadWithWarnings that keeps the lines of the file's paths.
func LoadFile(path string, opts ...LoadOpt) (*File, error) {
	f, err := LoadFileChecked(path, opts...)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// LoadFileChecked is LoadFile for `backflow validate`: when the file decodes but breaks rules,
// it returns the *ValidationError together with the File as decoded (no warnings), so that
// further checks, such as compiling the mappings, report their problems in the same run.
func LoadFileChecked(path string, opts ...LoadOpt) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pipeline file: %w", err)
	}
	p, c, err := parse(data, path, opts...)
	if err != nil {
		if p == nil || c == nil {
			return nil, err
		}
		return &File{Name: path, Pipeline: p, c: c}, err
	}
	ws := warnings(p, c, path)
	for _, fe := range c.skipped {
		ws = append(ws, Warning{File: path, Path: fe.Path, Line: fe.Line, Message: fe.Message})
	}
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].Line < ws[j].Line })
	return &File{Name: path, Pipeline: p, Warnings: ws, c: c}, nil
}

// Line returns the line of path ("sinks[0].map.qty"), or of its closest ancestor in the file;
// 0 when not even the root is.
func (f *File) Line(path string) int { return f.c.line(path) }

// Position returns the line and column in the file of the 1-based line and column pos gives
// inside the string value at path (an expression's error position). Column is 0 when it cannot be
// told (a block scalar, whose indentation is not kept, or a value not in the file); line is then
// the value's line, or its closest ancestor's. Escapes inside a quoted value and environment
// references expanded in it are not counted back.
func (f *File) Position(path string, line, column int) (int, int) {
	v, ok := f.c.values[path]
	switch {
	case !ok || line < 1:
		return f.Line(path), 0
	case v.block:
		return v.line + line, 0
	case line > 1:
		return v.line + line - 1, 0
	}
	return v.line, v.column + column - 1
}

// Errorf returns a *ValidationError for one problem at path, with its file, and its line when
// path is in the file (a missing key has none).
func (f *File) Errorf(path, format string, args ...any) *ValidationError {
	line := f.c.lines[path]
	return &ValidationError{File: f.Name, Errors: []FieldError{{Path: path, Line: line, Message: fmt.Sprintf(format, args...)}}}
}

// RequireSource fails for a sink-only file (no source) with an error naming the file, the
// missing key and the command that needs it.
func (f *File) RequireSource(command string) error {
	if f.Pipeline.HasSource() {
		return nil
	}
	return f.Errorf("source.postgres", "required by backflow %s, which reads the warehouse; this file has no source (sink-only: validate, sink, replay, status, tail and map test work without one)", command)
}
