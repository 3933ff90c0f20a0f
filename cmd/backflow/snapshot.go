package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/replay"
)

func snapshotCmd() *cobra.Command {
	var table, where string
	var wait, full bool
	cmd := &cobra.Command{
		Use:   "snapshot --table schema.table [--where SQL | --full-refresh]",
		Short: "Re-snapshot a table into its topic while capture keeps streaming",
		Long: `Re-snapshot a table into its topic while capture keeps streaming. Needs source.postgres: a
sink-only pipeline file is refused (exit 2).`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if table == "" {
				return usageError{fmt.Errorf("--table is required")}
			}
			if full && where != "" {
				return usageError{fmt.Errorf("--full-refresh re-reads the whole table: it takes no --where")}
			}
			var opts []capture.RequestOpt
			if full {
				opts = append(opts, capture.FullRefresh())
			}
			cfg, log, err := loadConfigAndLoggerFor(cmd, "snapshot")
			if err != nil {
				return err
			}
			defer log.Sync() //nolint:errcheck
			kopts, err := stateOpts(cfg, log)
			if err != nil {
				return err
			}
			before, err := capture.ReSnapshotState(cmd.Context(), cfg, kopts)
			if err != nil {
				return err
			}
			rows, err := capture.RequestSnapshot(cmd.Context(), cfg, table, where, opts...)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "re-snapshot of %s requested (%d rows); the running capture performs it\n", table, rows)
			if !wait {
				return nil
			}
			return followSnapshot(cmd.Context(), cfg, kopts, table, rows, doneCount(before, table), log, out)
		},
	}
	cmd.Flags().StringVar(&table, "table", "", "the table to re-read, schema.table")
	cmd.Flags().StringVar(&where, "where", "", "only rows matching this SQL condition")
	cmd.Flags().BoolVar(&full, "full-refresh", false, "also delete, in the topic and every target, the keys the table no longer has")
	cmd.Flags().BoolVar(&wait, "wait", true, "follow the progress until the re-snapshot is done")
	return cmd
}

// stateOpts reaches the brokers holding capture's state: the configured ones, or the embedded
// broker of a running `backflow run` on this machine.
func stateOpts(cfg *config.Pipeline, log *zap.Logger) ([]kgo.Opt, error) {
	if len(cfg.Kafka.Brokers) == 0 {
		cfg.Kafka.Brokers = []string{fmt.Sprintf("127.0.0.1:%d", cfg.Kafka.EmbeddedPort)}
	}
	return kafka.ClientOpts(cfg.Kafka, log)
}

// followSnapshot shows the re-snapshot's progress from the state capture keeps in Kafka, until
// one more re-snapshot of table than doneBefore has finished.
func followSnapshot(ctx context.Context, cfg *config.Pipeline, kopts []kgo.Opt, table string, total int64, doneBefore int,
	log *zap.Logger, out io.Writer) error {
	progress := replay.NewProgress(total, isTerminal(out), os.Stderr, log, "re-snapshot "+table)
	var shown int64
	for {
		st, err := capture.ReSnapshotState(ctx, cfg, kopts)
		if err != nil {
			return err
		}
		rows, running := runningRows(st, table)
		if !running && doneCount(st, table) > doneBefore {
			done := lastDone(st, table)
			progress.Add(done.Rows - shown)
			progress.Finish()
			fmt.Fprintf(out, "re-snapshot of %s done: %d rows read", table, done.Rows)
			if done.FullRefresh {
				fmt.Fprintf(out, ", %d keys the table no longer has deleted", done.Deleted)
				if done.Undeletable > 0 {
					fmt.Fprintf(out, " (%d more could not be decoded and stay in the targets: see capture's log)", done.Undeletable)
				}
			}
			fmt.Fprintln(out)
			return nil
		}
		progress.Add(rows - shown)
		shown = rows
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// runningRows returns the rows read so far by a queued or running re-snapshot of table.
func runningRows(st *capture.ReSnapshots, table string) (int64, bool) {
	for _, r := range st.Queue {
		if r.Table == table {
			return r.Rows, true
		}
	}
	return 0, false
}

func doneCount(st *capture.ReSnapshots, table string) int {
	n := 0
	for _, r := range st.Done {
		if r.Table == table {
			n++
		}
	}
	return n
}

func lastDone(st *capture.ReSnapshots, table string) *capture.SnapshotRequest {
	for i := len(st.Done) - 1; i >= 0; i-- {
		if st.Done[i].Table == table {
			return st.Done[i]
		}
	}
	return &capture.SnapshotRequest{}
}
