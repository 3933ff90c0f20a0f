package config

import (
	"errors"
	"maps"
	"strings"

	"github.com/backflow-dev/backflow/pkg/connspec"
)

// Connector is what the loader knows of one target connector. The list comes from the binary's
// connector registry (package connectors), which this package cannot import: it is given to the
// loader with WithConnectors, so the names a sink may use are the connectors that exist.
type Connector struct {
	Spec connspec.Spec
	// Check configures the connector for sink s of pipeline p without connecting to anything. Its
	// error is a connspec.Problems (each at a path below the sink: "with.url", "key"), or any
	// other error about the sink's settings as a whole.
	Check func(p *Pipeline, s *Sink) error
}

// WithConnectors makes the loader check each sink's connector against list: its name, and every
// setting of its `with` block, reported at their lines. Without it, a connector name is only
// required; the sink runtime refuses an unknown one at start.
func WithConnectors(list []Connector) LoadOpt {
	return func(c *collector) { c.connectors = list }
}

// connectorNames lists the known connectors' names, in the registry's order.
func (c *collector) connectorNames() []string {
	names := make([]string, len(c.connectors))
	for i, k := range c.connectors {
		names[i] = k.Spec.Name
	}
	return names
}

// checkConnector runs the sink's connector's Check and reports each problem at its line. A value
// already reported, or not checked because its environment variable is unset, is not reported
// again.
func (c *collector) checkConnector(p *Pipeline, s *Sink, path string) {
	for _, k := range c.connectors {
		if k.Spec.Name != s.Connector || k.Check == nil || c.suppressed(path+".with") {
			continue
		}
		err := k.Check(p, c.withUnset(s, path))
		var ps connspec.Problems
		switch {
		case err == nil:
		case errors.As(err, &ps):
			for _, pr := range ps {
				c.add(joinPath(path, pr.Path), "%s", pr.Message)
			}
		default:
			c.add(path+".with", "%v", err)
		}
	}
}

// withUnset returns s, or a copy of it whose `with` settings left unchecked because their
// environment variables are unset (MissingEnvAsWarnings) hold a stand-in text: they are given,
// with a value not known here, so that checks depending on their presence (an auth method chosen
// by which credentials are given) still hold. Problems at their paths are not reported.
func (c *collector) withUnset(s *Sink, path string) *Sink {
	out := s
	for _, fe := range c.skipped {
		key, ok := strings.CutPrefix(fe.Path, path+".with.")
		if !ok || strings.ContainsAny(key, ".[") || s.With[key] != nil {
			continue
		}
		if out == s {
			cp := *s
			cp.With = maps.Clone(s.With)
			out = &cp
		}
		out.With[key] = "${" + key + "}"
	}
	return out
}

// joinPath appends a relative path ("with.url", "key[1]") to path.
func joinPath(path, rel string) string {
	if strings.HasPrefix(rel, "[") {
		return path + rel
	}
	return path + "." + rel
}
