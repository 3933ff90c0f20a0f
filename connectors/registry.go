// Package connectors lists the target connectors built into backflow, by the name a sink's
// `connector` field uses. Each connector lives in its own package and depends only on pkg/sink
// and pkg/change; this package only gathers them.
package connectors

import (
	httpsink "github.com/backflow-dev/backflow/connectors/http"
	"github.com/backflow-dev/backflow/connectors/hubspot"
	kafkasink "github.com/backflow-dev/backflow/connectors/kafka"
	"github.com/backflow-dev/backflow/connectors/mysql"
	"github.com/backflow-dev/backflow/connectors/postgres"
	"github.com/backflow-dev/backflow/connectors/redis"
	"github.com/backflow-dev/backflow/connectors/salesforce"
	"github.com/backflow-dev/backflow/connectors/shopify"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// Factories returns a fresh map of connector name to factory.
func Factories() map[string]sink.Factory {
	return map[string]sink.Factory{
		"postgres":   postgres.New,
		"mysql":      mysql.New,
		"redis":      redis.New,
		"http":       httpsink.New,
		"hubspot":    hubspot.New,
		"salesforce": salesforce.New,
		"shopify":    shopify.New,
		"kafka":      kafkasink.New,
	}
}

// Checks returns a fresh map of connector name to its read-only check of the target (`backflow
// validate --connect`). A connector without one (http: a webhook cannot be called without
// sending) is absent.
func Checks() map[string]sink.Check {
	return map[string]sink.Check{
		"postgres":   postgres.Check,
		"mysql":      mysql.Check,
		"redis":      redis.Check,
		"hubspot":    hubspot.Check,
		"salesforce": salesforce.Check,
		"shopify":    shopify.Check,
		"kafka":      kafkasink.Check,
	}
}
