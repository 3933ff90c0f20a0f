package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/backflow-dev/backflow/connectors"
	"github.com/backflow-dev/backflow/pkg/connspec"
)

// docsCmd prints the reference of every connector's settings, which `make docs` writes to
// docs/connectors.md.
func docsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "docs",
		Short: "Print the reference of every connector's settings (a sink's with block) as Markdown",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), connectorDocs())
			return err
		},
	}
}

// connectorDocs is the Markdown of docs/connectors.md, generated from the connectors' specs.
func connectorDocs() string {
	return connspec.Markdown("Connectors",
		"The settings of each target connector: a sink's `with` block. Generated from the connectors' "+
			"declarations by `make docs` (`backflow docs`); do not edit. `backflow validate` checks every "+
			"sink's settings against them, and `backflow schema` includes them in the JSON Schema.\n\n"+
			"Durations are Go durations such as `500ms`, `10s` or `1m30s`. Any value may be an environment "+
			"reference, `${VAR}`; give secrets that way.",
		connectors.Specs())
}
