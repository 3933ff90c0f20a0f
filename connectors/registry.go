// Package connectors lists the target connectors built into backflow, by the name a sink's
// `connector` field uses. Each connector lives in its own package and depends only on pkg/sink,
// pkg/connspec and pkg/change; this package only gathers them. It is the one list of connector
// names: the config loader gets it from here (Config), and so do the docs and the JSON Schema.
package connectors

import (
	"github.com/twmb/franz-go/pkg/kgo"

	httpsink "github.com/backflow-dev/backflow/connectors/http"
	"github.com/backflow-dev/backflow/connectors/hubspot"
	kafkasink "github.com/backflow-dev/backflow/connectors/kafka"
	"github.com/backflow-dev/backflow/connectors/mysql"
	"github.com/backflow-dev/backflow/connectors/postgres"
	"github.com/backflow-dev/backflow/connectors/redis"
	"github.com/backflow-dev/backflow/connectors/salesforce"
	"github.com/backflow-dev/backflow/connectors/shopify"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/connspec"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// All returns the connectors, in the order of the docs.
func All() []sink.Descriptor {
	return []sink.Descriptor{
		postgres.Descriptor(),
		mysql.Descriptor(),
		redis.Descriptor(),
		httpsink.Descriptor(),
		hubspot.Descriptor(),
		salesforce.Descriptor(),
		shopify.Descriptor(),
		kafkasink.Descriptor(),
	}
}

// Factories returns a fresh map of connector name to factory (configure, then open).
func Factories() map[string]sink.Factory {
	out := map[string]sink.Factory{}
	for _, d := range All() {
		out[d.Spec.Name] = d.Factory()
	}
	return out
}

// Specs returns the specs of the connectors' settings, in the order of All.
func Specs() []connspec.Spec {
	all := All()
	out := make([]connspec.Spec, len(all))
	for i, d := range all {
		out[i] = d.Spec
	}
	return out
}

// Config returns the connectors as the config loader checks them (config.WithConnectors): each
// sink's settings go through its connector's Configure, which connects to nothing.
func Config() []config.Connector {
	all := All()
	out := make([]config.Connector, len(all))
	for i, d := range all {
		out[i] = config.Connector{Spec: d.Spec, Check: func(p *config.Pipeline, s *config.Sink) error {
			_, err := d.Configure(params(p, s))
			return err
		}}
	}
	return out
}

// params returns what Configure receives for sink s. The pipeline's Kafka connection is stood
// for by its seed brokers: Configure only asks whether there is one, and there always is (with no
// kafka.brokers, the embedded broker's, known only once it runs).
func params(p *config.Pipeline, s *config.Sink) sink.Params {
	out := sink.ParamsOf(*s)
	out.Kafka = []kgo.Opt{kgo.SeedBrokers(p.Kafka.Brokers...)}
	return out
}

// Checks returns a fresh map of connector name to its read-only check of the target (`backflow
// validate --connect`). A connector without one (http: a webhook cannot be called without
// sending) is absent.
func Checks() map[string]sink.Check {
	out := map[string]sink.Check{}
	for _, d := range All() {
		if d.Check != nil {
			out[d.Spec.Name] = d.Check
		}
	}
	return out
}
