package config

import (
	"strings"
	"testing"
	"time"
)

const modelsBase = `source:
  postgres:
    url: postgres://localhost/wh
    tables: [public.events, crm.*]
kafka:
  topic_prefix: wh
sinks:
  - name: crm
    from: [model.lead_scores]
    connector: http
    with: {url: "http://localhost/x"}
    key: [contact]
  - name: health-sink
    from: [model.health]
    connector: http
    with: {url: "http://localhost/x"}
    key: [id]
models:
  - name: lead_scores
    sql: SELECT email, sum(points) AS score FROM public.events GROUP BY email
    key: [email]
    refresh_on: [public.events]
    debounce: 10s
  - name: health
    table: analytics.customer_health
    key: [id]
    every: "*/15 * * * *"
    topic: health-changes
`

// TestModelsParse: models are read with their defaults, and sinks read them by name.
func TestModelsParse(t *testing.T) {
	p, err := Parse([]byte(modelsBase), "pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"models", len(p.Models), 2},
		{"debounce", p.Models[0].Debounce, 10 * time.Second},
		{"default debounce", p.Models[1].Debounce, DefaultModelDebounce},
		{"derived topic", p.ModelTopic(p.Models[0]), "wh.model.lead_scores"},
		{"sink topic of a model", p.TopicFor("model.lead_scores"), "wh.model.lead_scores"},
		{"own topic", p.ModelTopic(p.Models[1]), "health-changes"},
		{"sink topic of a model with its own topic", p.TopicFor("model.health"), "health-changes"},
		{"table query", p.Models[1].Query(), `SELECT * FROM "analytics"."customer_health"`},
		{"state dir", p.ModelsDir(), ".backflow/models"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestModelsValidation: every model rule, with the path and line of the offending setting.
func TestModelsValidation(t *testing.T) {
	cases := []struct {
		name, from, to, want string
	}{
		{"no query", "    sql: SELECT email, sum(points) AS score FROM public.events GROUP BY email\n", "",
			"models[0].sql: required"},
		{"two queries", "    table: analytics.customer_health\n", "    table: analytics.customer_health\n    view: a.b\n",
			"models[1].sql: expected one of sql, table and view"},
		{"no key", "    key: [email]\n", "", "models[0].key: required"},
		{"duplicate key column", "    key: [email]\n", "    key: [email, email]\n", `models[0].key[1]: column "email" is already in the key`},
		{"bad name", "  - name: lead_scores\n", "  - name: lead-scores\n", `models[0].name: invalid model name "lead-scores"`},
		{"duplicate name", "  - name: health\n", "  - name: lead_scores\n", `models[1].name: duplicate model name "lead_scores"`},
		{"bad cron", `every: "*/15 * * * *"`, `every: "*/15 * *"`, `models[1].every: invalid schedule "*/15 * *"`},
		{"negative interval", `every: "*/15 * * * *"`, `every: "-5m"`, `models[1].every: invalid schedule "-5m"`},
		{"uncaptured refresh_on", "    refresh_on: [public.events]\n", "    refresh_on: [public.orders]\n",
			`models[0].refresh_on[0]: table "public.orders" is not captured`},
		{"zero debounce", "    debounce: 10s\n", "    debounce: 0s\n", "models[0].debounce: must be a positive duration"},
		{"unknown model in a sink", "    from: [model.lead_scores]\n", "    from: [model.nope]\n", `table "model.nope" is not captured`},
		{"bad table", "    table: analytics.customer_health\n", "    table: customer_health\n", `models[1].table: invalid table "customer_health"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := modelsBase
			if !strings.Contains(src, tc.from) {
				t.Fatalf("base lacks %q", tc.from)
			}
			src = strings.Replace(src, tc.from, tc.to, 1)
			_, err := Parse([]byte(src), "pipeline.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "pipeline.yaml:") {
				t.Errorf("error without its file and line: %v", err)
			}
		})
	}
}

// TestModelsNeedSource: a sink-only file cannot have models.
func TestModelsNeedSource(t *testing.T) {
	src := sinkOnly + "models:\n  - {name: m, sql: SELECT 1 AS id, key: [id]}\n"
	if _, err := Parse([]byte(src), "pipeline.yaml"); err == nil || !strings.Contains(err.Error(), "need source.postgres") {
		t.Fatalf("got %v", err)
	}
}

// TestParseEvery: intervals and cron schedules.
func TestParseEvery(t *testing.T) {
	at := time.Date(2026, 1, 1, 10, 7, 0, 0, time.UTC)
	for _, c := range []struct {
		every string
		next  time.Time
	}{
		{"5m", at.Add(5 * time.Minute)},
		{"*/15 * * * *", time.Date(2026, 1, 1, 10, 15, 0, 0, time.UTC)},
		{"@hourly", time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC)},
	} {
		s, err := ParseEvery(c.every)
		if err != nil {
			t.Fatalf("%s: %v", c.every, err)
		}
		if got := s.Next(at); !got.Equal(c.next) {
			t.Errorf("%s: next %v, want %v", c.every, got, c.next)
		}
	}
}
