package config

import (
	"strings"
	"testing"
)

// TestTopicWarnings: a sink topic one or two edits from a topic the pipeline writes is flagged
// with the likely one; written topics, topics under a schema.* entry and other tools' topics are
// not.
func TestTopicWarnings(t *testing.T) {
	yaml := `
source:
  postgres:
    url: postgres://localhost/wh
    tables: [public.items, app.*]
kafka:
  topic_prefix: wh
models:
  - name: scores
    sql: SELECT 1 AS id
    key: [id]
    every: 1m
sinks:
  - name: s
    connector: http
    key: [id]
    with: {url: "http://127.0.0.1:1"}
    topics: [%s]
`
	tests := []struct {
		topic string
		want  string // a substring of the warning; "" for none
	}{
		{"wh.public.items", ""},
		{"wh.app.orders", ""},             // under app.*
		{"dbserver1.inventory.items", ""}, // another tool's
		{"wh.public.itemz", `did you mean "wh.public.items"`},
		{"wh.publc.items", `did you mean "wh.public.items"`},
		{"wh.model.score", `did you mean "wh.model.scores"`},
	}
	for _, tt := range tests {
		t.Run(tt.topic, func(t *testing.T) {
			_, ws, err := ParseWithWarnings([]byte(strings.Replace(yaml, "%s", tt.topic, 1)), "p.yaml")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range ws {
				if w.Path == "sinks[0].topics[0]" {
					got = append(got, w.String())
				}
			}
			switch {
			case tt.want == "" && len(got) > 0:
				t.Errorf("warnings %q, want none", got)
			case tt.want != "" && (len(got) != 1 || !strings.Contains(got[0], tt.want) || !strings.HasPrefix(got[0], "p.yaml:")):
				t.Errorf("warnings %q, want one with its line containing %q", got, tt.want)
			}
		})
	}
}
