package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/backflow-dev/backflow/pkg/connspec"
)

// TestConnectorChecks: the loader runs the sink's connector's check and reports each problem at
// the line of the path it names below the sink; an error that is not a list of problems is
// reported at the with block; a sink whose connector is unknown is told the registry's names.
func TestConnectorChecks(t *testing.T) {
	src := "kafka: {brokers: [h:9092]}\nsinks:\n  - name: a\n    topics: [t]\n    connector: fake\n    key: [id]\n" +
		"    with:\n      url: x\n      mode: y\n  - name: b\n    topics: [t]\n    connector: broken\n    key: [id]\n    with: {}\n" +
		"  - name: c\n    topics: [t]\n    connector: ftp\n    key: [id]\n"
	fake := Connector{Spec: connspec.Spec{Name: "fake"}, Check: func(p *Pipeline, s *Sink) error {
		var ps connspec.Problems
		ps.Add("with.mode", "bad mode %v", s.With["mode"])
		ps.Add("with.url", "bad url")
		ps.Add("key[0]", "bad key")
		ps.Add("with.token", "required")
		return ps
	}}
	broken := Connector{Spec: connspec.Spec{Name: "broken"}, Check: func(*Pipeline, *Sink) error { return errors.New("cannot") }}
	_, err := Parse([]byte(src), "p.yaml", WithConnectors([]Connector{fake, broken}))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v", err)
	}
	want := []string{
		"p.yaml:6: sinks[0].key[0]: bad key",
		"p.yaml:7: sinks[0].with.token: required",
		"p.yaml:8: sinks[0].with.url: bad url",
		"p.yaml:9: sinks[0].with.mode: bad mode y",
		"p.yaml:14: sinks[1].with: cannot",
		`p.yaml:17: sinks[2].connector: unknown connector "ftp"; expected one of fake, broken`,
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("error:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}
