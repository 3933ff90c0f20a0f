package testenv

import (
	"os"
	"strings"
)

// tail returns the last lines of out, enough to explain a failure.
func tail(out []byte) string {
	const maxLines = 30
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return strings.Join(lines, "\n")
}

// tailFile returns the last lines of the file at path, or why it could not be read.
func tailFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return tail(b)
}
