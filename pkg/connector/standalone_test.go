package connector

import (
	"os/exec"
	"strings"
	"testing"
)

// TestStandsAlone keeps the contract free of the runtime and of the configuration: a connector
// that imports this package must not pull in package sink or package config.
func TestStandsAlone(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	const mod = "github.com/backflow-dev/backflow/"
	for _, forbidden := range []string{"pkg/sink", "pkg/config", "pkg/observe", "pkg/kafka", "pkg/mapping"} {
		for _, dep := range strings.Fields(string(out)) {
			if dep == mod+forbidden || strings.HasPrefix(dep, mod+forbidden+"/") {
				t.Errorf("package connector depends on %s", dep)
			}
		}
	}
}
