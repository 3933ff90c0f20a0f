package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/backflow-dev/backflow/connectors"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/mapping"
)

func loadConfig(cmd *cobra.Command) (*config.Pipeline, error) {
	cfg, _, err := loadConfigWithWarnings(cmd)
	return cfg, err
}

// loadConfigWithWarnings is loadConfig that also returns the file's warnings (connections in
// plaintext or unverified), which do not stop anything.
func loadConfigWithWarnings(cmd *cobra.Command) (*config.Pipeline, []config.Warning, error) {
	f, err := loadFile(cmd)
	if err != nil {
		return nil, nil, err
	}
	return f.Pipeline, f.Warnings, nil
}

// loadFile loads the pipeline file of --config with the lines of its paths; its failures are
// usage errors.
func loadFile(cmd *cobra.Command) (*config.File, error) {
	path, _ := cmd.Flags().GetString("config")
	f, err := config.LoadFile(path, config.WithConnectors(connectors.Config()))
	if err != nil {
		return nil, usageError{err}
	}
	return f, nil
}

// loadConfigAndLogger loads the config and builds the logger it asks for; both failures are
// usage errors. The caller syncs the logger.
func loadConfigAndLogger(cmd *cobra.Command) (*config.Pipeline, *zap.Logger, error) {
	return loadConfigAndLoggerFor(cmd, "")
}

// loadConfigAndLoggerFor is loadConfigAndLogger for a command that reads the warehouse: unless
// command is "", a file without a source is a usage error naming it.
func loadConfigAndLoggerFor(cmd *cobra.Command, command string) (*config.Pipeline, *zap.Logger, error) {
	f, err := loadFile(cmd)
	if err != nil {
		return nil, nil, err
	}
	if command != "" {
		if err := f.RequireSource(command); err != nil {
			return nil, nil, usageError{err}
		}
	}
	cfg := f.Pipeline
	log, err := newLogger(cfg.Log)
	if err != nil {
		return nil, nil, usageError{err}
	}
	return cfg, log, nil
}

func validateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check the pipeline file and print every problem with its YAML path",
		Long: `Check the pipeline file and print every problem with its file, line and YAML path, every
connector's settings (each sink's with block, checked by its connector without connecting)
and mapping expressions included. A file with sinks and no source is a sink-only pipeline: its sinks read
the topics they name (topics: [...]).

A value that refers to an unset environment variable (${VAR}) is reported as a warning and not
checked, so that a file can be checked in CI without the production secrets; --strict makes it
an error, as it is for every other command.

--connect then connects to the source, the brokers and every sink's target and checks, writing
nothing, what would stop the pipeline: wal_level and REPLICATION, pg_hba for replication
connections, the captured tables, the publication and the slot; the brokers and the topics a
sink-only pipeline reads; each target's tables, columns, privileges and API credentials (a
webhook is not tried). Every problem is listed under its part; the exit code is 1 if any.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := []config.LoadOpt{config.WithConnectors(connectors.Config())}
			// Connecting needs every value: with --connect an unset ${VAR} is an error.
			strict, _ := cmd.Flags().GetBool("strict")
			if connect, _ := cmd.Flags().GetBool("connect"); !strict && !connect {
				opts = append(opts, config.MissingEnvAsWarnings())
			}
			path, _ := cmd.Flags().GetString("config")
			f, err := config.LoadFileChecked(path, opts...)
			if err != nil {
				if f != nil { // every problem at once: the mappings' beside the file's
					err = errors.Join(err, compileMappings(f))
				}
				return usageError{err}
			}
			if err := compileMappings(f); err != nil {
				return usageError{err}
			}
			for _, w := range f.Warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
			}
			cfg := f.Pipeline
			if !cfg.HasSource() {
				fmt.Fprintf(cmd.OutOrStdout(), "pipeline is valid: sink-only (no source), %d sink(s)\n", len(cfg.Sinks))
			} else {
				models := ""
				if len(cfg.Models) > 0 {
					models = fmt.Sprintf(", %d model(s)", len(cfg.Models))
				}
				fmt.Fprintf(cmd.OutOrStdout(), "pipeline is valid: %d table(s)%s, %d sink(s)\n", len(cfg.Source.Postgres.Tables), models, len(cfg.Sinks))
			}
			if connect, _ := cmd.Flags().GetBool("connect"); !connect {
				return nil
			}
			log, err := newLogger(cfg.Log)
			if err != nil {
				return usageError{err}
			}
			defer func() { _ = log.Sync() }()
			return runConnectChecks(cmd.Context(), cmd.OutOrStdout(), cfg, log)
		},
	}
	cmd.Flags().Bool("strict", false, "an unset environment variable is an error, not a warning")
	cmd.Flags().Bool("connect", false, "also connect to the source, the brokers and every target, and check privileges, tables, columns and credentials, writing nothing")
	return cmd
}

func captureCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "capture",
		Short: "Capture changes from PostgreSQL into Kafka (one process per replication slot)",
		Long: `Capture changes from PostgreSQL into Kafka (one process per replication slot; others wait
as standbys). Needs source.postgres: a sink-only pipeline file is refused (exit 2).`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(captureGCPercent)
			}
			return runCommand(cmd, parts{capture: true, command: "capture"})
		},
	}
}

// captureGCPercent is the garbage collector's target of a capture process unless GOGC is set.
// Capture's live heap is small (tens of MB) and it allocates a few objects per change, so Go's
// default of 100 collects very often: at 200 it drains 5-10 % more changes per second on 2 cores
// (make bench, RESULT capture) for about 20 MB more peak RSS. Sink processes keep the default:
// their heap holds whole batches, and 200 doubles their peak RSS (RESULT sink).
const captureGCPercent = 200

func runCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run capture and every sink in one process",
		Long: `Run capture and every sink in one process. Needs source.postgres; for a sink-only pipeline
file, use backflow sink.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCommand(cmd, parts{capture: true, sinks: true, command: "run"})
		},
	}
}

func sinkCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sink",
		Short: "Run sink workers; start more processes to share the partitions",
		Long: `Run sink workers; start more processes to share the partitions. Each sink is the consumer
group kafka.sink_prefix + its name, and dead-letters to <group>.dlq. Works without a source.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, _ := cmd.Flags().GetString("name")
			return runCommand(cmd, parts{sinks: true, only: name})
		},
	}
	cmd.Flags().String("name", "", "run only the sink with this name")
	return cmd
}

// runCommand loads the config and the logger, then runs the chosen parts until a signal.
func runCommand(cmd *cobra.Command, want parts) error {
	f, err := loadFile(cmd)
	if err != nil {
		return err
	}
	if want.capture {
		if err := f.RequireSource(want.command); err != nil {
			return usageError{err}
		}
	}
	cfg, warnings := f.Pipeline, f.Warnings
	log, err := newLogger(cfg.Log)
	if err != nil {
		return usageError{err}
	}
	defer log.Sync() //nolint:errcheck // nothing useful to do on exit
	for _, w := range warnings {
		log.Warn("insecure connection in the pipeline file: "+w.Message,
			zap.String("file", w.File), zap.Int("line", w.Line), zap.String("path", w.Path))
	}
	if err := runParts(cmd.Context(), cfg, log, want); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// newLogger builds a JSON logger for production or a readable console logger for development.
func newLogger(c config.Log) (*zap.Logger, error) {
	zc := zap.NewProductionConfig()
	if c.Format == "console" {
		zc = zap.NewDevelopmentConfig()
		zc.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
		zc.DisableStacktrace = true
	}
	if c.Level != "" {
		lvl, err := zap.ParseAtomicLevel(c.Level)
		if err != nil {
			return nil, fmt.Errorf("log.level: %w", err)
		}
		zc.Level = lvl
	}
	return zc.Build()
}

// compileMappings compiles every sink's map, key and filter, reporting all errors at once, each
// with the file and line of the expression.
func compileMappings(f *config.File) error {
	var errs []error
	for i, s := range f.Pipeline.Sinks {
		spec := mapping.Spec{Sink: s.Name, Path: fmt.Sprintf("sinks[%d]", i), Fields: s.Map, Key: s.Key, Filter: s.Filter}
		if _, err := mapping.Compile(spec); err != nil {
			errs = append(errs, locateMappingError(f, spec.Path, err))
		}
	}
	return errors.Join(errs...)
}

// locateMappingError prefixes each problem of a mapping error with the file and line of the part
// it names. At compile time the paths are the YAML paths; at run time they are relative to the
// sink ("map.qty", "filter"), so sinkPath is put in front.
func locateMappingError(f *config.File, sinkPath string, err error) error {
	var parts []error
	var ce *mapping.CompileError
	var ee *mapping.ExprError
	var me *mapping.MissingColumnError
	switch {
	case errors.As(err, &ce):
		for _, e := range ce.Errors {
			parts = append(parts, fmt.Errorf("%s: %w", exprPlace(f, sinkPath, e), e))
		}
		return errors.Join(parts...)
	case errors.As(err, &ee):
		return fmt.Errorf("%s: %w", exprPlace(f, sinkPath, ee), err)
	case errors.As(err, &me):
		return fmt.Errorf("%s:%d: %w", f.Name, f.Line(yamlPath(sinkPath, me.Path)), err)
	}
	return fmt.Errorf("%s:%d: %w", f.Name, f.Line(sinkPath), err)
}

// exprPlace returns "file:line" of the part a mapping error names, or "file:line:column" of the
// place in its expression the error points at.
func exprPlace(f *config.File, sinkPath string, e *mapping.ExprError) string {
	line, col := f.Position(yamlPath(sinkPath, e.Path), e.Line, e.Column)
	if col > 0 {
		return fmt.Sprintf("%s:%d:%d", f.Name, line, col)
	}
	return fmt.Sprintf("%s:%d", f.Name, line)
}

// yamlPath makes a mapping path ("map.qty" at run time, "sinks[0].map.qty" at compile time) a
// path of the file.
func yamlPath(sinkPath, p string) string {
	if strings.HasPrefix(p, "sinks") {
		return p
	}
	return sinkPath + "." + p
}
