// Command backflow streams PostgreSQL changes into Kafka and from Kafka into operational systems.
//
// Exit codes: 0 done, 1 runtime failure, 2 bad usage or invalid config.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/backflow-dev/backflow/connectors"
	"github.com/backflow-dev/backflow/pkg/buildinfo"
	"github.com/backflow-dev/backflow/pkg/config"
)

// usageError is a failure the user fixes by changing the command line or the config: exit code 2.
type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "backflow:", err)
	var ue usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "backflow",
		Short:         "Stream warehouse changes into operational systems",
		Version:       buildinfo.Read().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.Args = usageArgs(cobra.NoArgs)
	root.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	root.PersistentFlags().StringP("config", "c", "pipeline.yaml", "pipeline file")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(validateCmd(), captureCmd(), sinkCmd(), runCmd(), replayCmd(), snapshotCmd(), statusCmd(),
		tailCmd(), mapCmd(), registryCmd(), versionCmd(), schemaCmd(), docsCmd(), modelCmd())
	return root
}

// versionCmd prints what `backflow --version` prints: version, commit, commit date, Go version.
func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and date of this build",
		Args:  usageArgs(cobra.NoArgs),
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), buildinfo.Read()) },
	}
}

// schemaCmd prints the JSON Schema of the pipeline file, for editors (see the README).
func schemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the pipeline file, for editors' YAML support",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := config.JSONSchema(connectors.Specs()...)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), string(s))
			return err
		},
	}
}

// usageArgs makes an argument validator's errors usage errors (exit code 2).
func usageArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
