package config

import (
	"slices"
	"strings"
	"testing"
)

// TestBrokersAsWritten: brokers given in flow style ([host:9092], which the YAML parser reads as
// a mapping) and from one variable holding a comma list both give the list of addresses; a
// mapping written with a space after the colon is still refused.
func TestBrokersAsWritten(t *testing.T) {
	t.Setenv("BF_BROKERS", "a:9092, b:9093,")
	t.Setenv("BF_HOST", "envhost")
	sink := "sinks:\n  - {name: s1, topics: [t1], connector: postgres, with: {url: \"postgres://u@127.0.0.1/db\", table: t}, key: [id]}\n"
	for _, tc := range []struct {
		name, kafka string
		want        []string
	}{
		{"flow style on one line", "kafka: {brokers: [host:9092]}\n", []string{"host:9092"}},
		{"flow style, several", "kafka: {brokers: [h1:9092, h2:9093]}\n", []string{"h1:9092", "h2:9093"}},
		{"flow style with a variable", "kafka: {brokers: [${BF_HOST}:9092]}\n", []string{"envhost:9092"}},
		{"a variable holding a comma list", "kafka:\n  brokers: [\"${BF_BROKERS}\"]\n", []string{"a:9092", "b:9093"}},
		{"a list beside it", "kafka:\n  brokers: [\"${BF_BROKERS}\", c:9094]\n", []string{"a:9092", "b:9093", "c:9094"}},
		{"block style", "kafka:\n  brokers:\n    - host:9092\n", []string{"host:9092"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.kafka+sink), "pipeline.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.Kafka.Brokers, tc.want) {
				t.Fatalf("brokers = %q, want %q", p.Kafka.Brokers, tc.want)
			}
		})
	}
	if _, err := Parse([]byte("kafka: {brokers: [host: 9092]}\n"+sink), "pipeline.yaml"); err == nil {
		t.Fatal("a mapping in brokers was accepted")
	}
}

// TestDefaultFormatIsReadableByStockClients: without a registry of the user's, the default is the
// Confluent framing served by `backflow registry`; with one, Avro registered there. Both are
// what stock Confluent clients decode.
func TestDefaultFormatIsReadableByStockClients(t *testing.T) {
	sink := "sinks:\n  - {name: s1, topics: [t1], connector: postgres, with: {url: \"postgres://u@127.0.0.1/db\", table: t}, key: [id]}\n"
	for kafka, want := range map[string]string{
		"kafka: {brokers: [h:9092]}\n": FormatAvroConfluent,
		"kafka: {brokers: [h:9092], schema_registry: {url: \"http://127.0.0.1:8081\"}}\n": FormatAvro,
		"kafka: {brokers: [h:9092], format: avro}\n":                                      FormatAvro,
	} {
		p, err := Parse([]byte(kafka+sink), "pipeline.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if p.Kafka.Format != want {
			t.Errorf("%s: format %q, want %q", kafka, p.Kafka.Format, want)
		}
	}
}

// TestSinkWithoutInputSaysWhatToWrite: a sink that names neither tables nor topics is told to add
// the one its pipeline can have: topics in a sink-only pipeline, from otherwise.
func TestSinkWithoutInputSaysWhatToWrite(t *testing.T) {
	sink := "sinks:\n  - {name: s1, connector: postgres, with: {url: \"postgres://u@127.0.0.1/db\", table: t}, key: [id]}\n"
	for _, tc := range []struct{ name, src, want string }{
		{"sink-only", "kafka: {brokers: [h:9092]}\n" + sink, "sinks[0].topics: required; expected the topics to read"},
		{"with a source", "source: {postgres: {url: \"postgres://u@127.0.0.1/wh\", tables: [public.t]}}\nkafka: {brokers: [h:9092]}\n" + sink,
			"sinks[0].from: required; expected the source tables"},
	} {
		_, err := Parse([]byte(tc.src), "pipeline.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
