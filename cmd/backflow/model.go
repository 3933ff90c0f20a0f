package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/model"
	"github.com/backflow-dev/backflow/pkg/observe"
)

func modelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Work with the pipeline's models (queries diffed into change events)",
		Args:  usageArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(modelRunCmd())
	return cmd
}

func modelRunCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run NAME",
		Short: "Run a model once now: query, publish the difference with its last run, commit",
		Long: `Run a model once now: query the warehouse, publish the difference with the model's last
committed run to its topic, and commit. A capture process running the model on its schedule is
not disturbed: runs of one model never overlap (the second one exits 1 saying so). Without
kafka.brokers, the embedded broker of a running backflow on this machine is used.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, log, err := loadConfigAndLoggerFor(cmd, "model run")
			if err != nil {
				return err
			}
			defer log.Sync() //nolint:errcheck // nothing useful to do on exit
			if _, ok := cfg.Model(args[0]); !ok {
				return usageError{fmt.Errorf("no model named %q in the pipeline (models: %s)", args[0], modelNames(cfg))}
			}
			useEmbeddedBroker(cfg)
			r, err := model.NewRunner(cfg, model.WithLogger(log))
			if err != nil {
				return err
			}
			defer r.Close()
			res, err := r.Run(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			rebuilt := ""
			if res.Rebuilt {
				rebuilt = " (state rebuilt from the topic first)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "model %s: run %d, %d row(s), changes %s%s\n", args[0], res.Run, res.Rows, changesText(res.Changes), rebuilt)
			return nil
		},
	}
}

// useEmbeddedBroker points a command at the embedded broker of a `backflow run` on this
// machine when the file names no brokers.
func useEmbeddedBroker(cfg *config.Pipeline) {
	if len(cfg.Kafka.Brokers) == 0 {
		cfg.Kafka.Brokers = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Kafka.EmbeddedPort))}
	}
}

func modelNames(cfg *config.Pipeline) string {
	if len(cfg.Models) == 0 {
		return "none"
	}
	names := make([]string, len(cfg.Models))
	for i, m := range cfg.Models {
		names[i] = m.Name
	}
	return strings.Join(names, ", ")
}

func changesText(c map[string]int64) string {
	if len(c) == 0 {
		return "none"
	}
	var parts []string
	for _, op := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%s=%d", op, c[op]))
	}
	return strings.Join(parts, " ")
}

// startModels returns the scheduler of the pipeline's models, for capture's commit hook, and
// runs it in the background until ctx ends; nil when the pipeline has none.
func startModels(ctx context.Context, cfg *config.Pipeline, log *zap.Logger, m *observe.Metrics, run func(func() error)) (*model.Scheduler, error) {
	if len(cfg.Models) == 0 {
		return nil, nil
	}
	r, err := model.NewRunner(cfg, model.WithLogger(log), model.WithMetrics(m))
	if err != nil {
		return nil, fmt.Errorf("models: %w", err)
	}
	s := model.NewScheduler(r)
	slot := cfg.Source.Postgres.Slot
	s.OnlyWhile(func() bool { return m.CaptureIsActive(slot) }) // not on a standby
	run(func() error {
		defer r.Close()
		return s.Run(ctx)
	})
	return s, nil
}

// addModels adds the models' last runs to a status.
func addModels(ctx context.Context, cfg *config.Pipeline, kopts []kgo.Opt, st *observe.Status) {
	if len(cfg.Models) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ms, err := model.Statuses(ctx, cfg, kopts)
	if err != nil {
		st.Problems = append(st.Problems, "models: cannot read their runs: "+err.Error())
		st.Healthy = false
		return
	}
	st.AddModels(ms)
}

func printModels(w io.Writer, st *observe.Status) {
	if len(st.Models) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tTOPIC\tRUN\tROWS\tCOMMITTED\tLAST ATTEMPT\tCHANGES\tERROR")
	for _, m := range st.Models {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", m.Name, m.Topic, m.Run, m.Rows, timeText(m.CommittedAt),
			timeText(m.LastAttempt), changesText(m.LastChanges), dash(m.Error))
	}
	_ = tw.Flush()
}

func timeText(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}
