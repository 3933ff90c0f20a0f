package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const sinkOnly = `kafka:
  topic_prefix: wh
  sink_prefix: prod.
sinks:
  - name: copy
    topics: [dbz.public.items]
    schema_topics: [other._schemas]
    connector: postgres
    with: {url: "postgres://localhost/t", table: t}
    key: [id]
`

// TestSinkOnlyPipeline: a file with kafka and sinks only is valid, and names its sinks' groups,
// dead-letter and schema topics from the new settings.
func TestSinkOnlyPipeline(t *testing.T) {
	p, err := Parse([]byte(sinkOnly), "pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	k := &p.Kafka
	checks := []struct {
		name      string
		got, want any
	}{
		{"has source", p.HasSource(), false},
		{"group", k.SinkGroup("copy"), "prod.copy"},
		{"dlq", k.SinkDLQTopic("copy"), "prod.copy.dlq"},
		{"schema topics", k.SchemaTopics(p.Sinks[0]), []string{"other._schemas"}},
		{"default schema topic", k.SchemaTopics(Sink{}), []string{"wh._schemas"}},
		{"barriers", k.SinkBarrierTopic("copy"), "prod.copy.barriers"},
		{"capture state", k.CaptureStateTopic(), "wh._capture"},
		{"capture dlq", p.CaptureDLQTopic(), "wh._capture.dlq"},
		{"no prefix", (&Kafka{}).SinkDLQTopic("s"), "s.dlq"},
		{"default topic prefix", (&Kafka{}).CaptureStateTopic(), "backflow._capture"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestSinkOnlyErrors: what a sink-only file cannot do is reported with its line and path.
func TestSinkOnlyErrors(t *testing.T) {
	cases := []struct {
		name, old, new string
		path           string
		line           int
		contains       string
	}{
		{"from needs a source", "    topics: [dbz.public.items]", "    from: [public.items]", "sinks[0].from", 6, "need a source"},
		{"bad sink prefix", "sink_prefix: prod.", "sink_prefix: prod/", "kafka.sink_prefix", 3, "invalid sink prefix"},
		{"bad schema topic", "schema_topics: [other._schemas]", "schema_topics: [other/_schemas]", "sinks[0].schema_topics[0]", 7, "invalid topic name"},
		{"half a source", "kafka:\n", "source: {postgres: {slot: s}}\nkafka:\n", "source.postgres.url", 1, "required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(sinkOnly, tc.old, tc.new, 1)
			errs := parseErrors(t, src)
			for _, e := range errs {
				if e.Path == tc.path && e.Line == tc.line && strings.Contains(e.Message, tc.contains) {
					return
				}
			}
			t.Errorf("no %s error at line %d mentioning %q: %+v", tc.path, tc.line, tc.contains, errs)
		})
	}
}

// TestRequireSource: a command that reads the warehouse names the file and the missing key.
func TestRequireSource(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sinks.yaml")
	if err := os.WriteFile(path, []byte(sinkOnly), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	err = f.RequireSource("capture")
	if err == nil || !strings.HasPrefix(err.Error(), path) || !strings.Contains(err.Error(), "source.postgres: required by backflow capture") {
		t.Errorf("RequireSource = %v", err)
	}
	if got := f.Line("sinks[0].key"); got != 10 {
		t.Errorf("line of sinks[0].key = %d, want 10", got)
	}
}
