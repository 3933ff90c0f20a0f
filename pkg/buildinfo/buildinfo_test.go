package buildinfo

import (
	"strings"
	"testing"
)

// TestReadNamesTheBuild: a test binary has build information (its Go version at least), and the
// line names every field.
func TestReadNamesTheBuild(t *testing.T) {
	i := Read()
	if i.GoVersion == "unknown" || !strings.HasPrefix(i.GoVersion, "go") {
		t.Fatalf("Go version %q: the toolchain's build information was not read", i.GoVersion)
	}
	s := i.String()
	for _, part := range []string{"backflow " + i.Version, "commit " + i.Commit, i.Date, i.GoVersion} {
		if !strings.Contains(s, part) {
			t.Errorf("%q lacks %q", s, part)
		}
	}
}
