package main

import (
	"github.com/backflow-dev/backflow/connectors"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// connectorFactories lists the target connectors built into this binary.
func connectorFactories() map[string]sink.Factory {
	return connectors.Factories()
}
