package config

import (
	"strings"
	"testing"
)

// TestSharedTargetWarnings: a sink that writes several tables into one target and applies
// truncates is warned about, at the line of its from (or topics), naming the way out.
func TestSharedTargetWarnings(t *testing.T) {
	yaml := `
source:
  postgres:
    url: postgres://localhost/wh
    tables: [public.a, public.b, app.*]
kafka:
  topic_prefix: wh
sinks:
  - name: s
    connector: http
    key: [id]
    with: {url: "http://127.0.0.1:1"}
%s
`
	tests := []struct {
		name, input string
		path        string // "" for no warning
	}{
		{"one table", "    from: [public.a]", ""},
		{"two tables", "    from: [public.a, public.b]", "sinks[0].from"},
		{"a schema pattern", "    from: [app.*]", "sinks[0].from"},
		{"two topics", "    topics: [wh.public.a, wh.public.b]", "sinks[0].topics"},
		{"truncates ignored", "    from: [public.a, public.b]\n    on_truncate: ignore", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ws, err := ParseWithWarnings([]byte(strings.Replace(yaml, "%s", tt.input, 1)), "p.yaml")
			if err != nil {
				t.Fatal(err)
			}
			var got []Warning
			for _, w := range ws {
				if strings.Contains(w.Message, "several tables into one target") {
					got = append(got, w)
				}
			}
			switch {
			case tt.path == "" && len(got) > 0:
				t.Errorf("warned: %v", got)
			case tt.path != "" && (len(got) != 1 || got[0].Path != tt.path || got[0].Line != 13 || !strings.Contains(got[0].Message, "on_truncate: ignore")):
				t.Errorf("warnings %v; want one at %s, line 13, naming on_truncate: ignore", got, tt.path)
			}
		})
	}
}
