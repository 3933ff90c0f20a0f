package main

import (
	"github.com/backflow-dev/backflow/pkg/sink"
)

// connectorFactories lists the target connectors built into this binary.
func connectorFactories() map[string]sink.Factory {
	return map[string]sink.Factory{}
}
