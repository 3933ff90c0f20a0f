package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/replay"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// replayFlags are the options of `backflow replay`.
type replayFlags struct {
	sink, from        string
	reset, force, dry bool
	dlq               bool
	// selection of dead letters, with --dlq
	keys                 []string
	reason, since, until string
}

func replayCmd() *cobra.Command {
	var f replayFlags
	cmd := &cobra.Command{
		Use:   "replay --sink N (--from earliest|<RFC3339 time>|<topic:partition:offset,…> | --dlq [--key col=v,…] [--reason RE] [--since T] [--until T])",
		Short: "Re-apply history into a sink: a bounded backfill beside the live sink, a group reset, or a dead-letter re-drive",
		Long: `Re-apply history into a sink: a bounded backfill beside the live sink (--from), a reset of
the sink's own group (--from … --reset), or a re-drive of its dead-letter topic (--dlq).

A re-drive reads the dead-letter topic partition by partition in batches (memory does not grow
with the topic) and applies each selected dead letter again, unless the source topic holds a
newer record of its key (after the offset it was dead-lettered from): that one is skipped and
counted as skipped-newer, so a re-drive never puts an old state over a newer one. --key, --reason,
--since and --until select dead letters; together they must all match. Nothing is removed from
the dead-letter topic; what still fails is listed, and the command exits 1.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.sink == "" || (f.from == "") == !f.dlq {
				return usageError{fmt.Errorf("replay needs --sink and exactly one of --from or --dlq")}
			}
			if !f.dlq && (len(f.keys) > 0 || f.reason != "" || f.since != "" || f.until != "") {
				return usageError{fmt.Errorf("--key, --reason, --since and --until select dead letters: they need --dlq")}
			}
			return runReplay(cmd, f)
		},
	}
	cmd.Flags().StringVar(&f.sink, "sink", "", "the sink to replay into")
	cmd.Flags().StringVar(&f.from, "from", "", "earliest, an RFC 3339 time, or topic:partition:offset,…")
	cmd.Flags().BoolVar(&f.reset, "reset", false, "move the sink's own group to --from instead of a backfill beside it")
	cmd.Flags().BoolVar(&f.force, "force", false, "with --reset: do not refuse when the group has live members")
	cmd.Flags().BoolVar(&f.dry, "dry-run", false, "print per partition the offsets and record counts (with --dlq: what a re-drive would take and skip), change nothing")
	cmd.Flags().BoolVar(&f.dlq, "dlq", false, "re-drive the sink's dead-letter records (nothing is removed from the DLQ)")
	cmd.Flags().StringArrayVar(&f.keys, "key", nil, "with --dlq: only dead letters of this source key, col=value[,col=value…] (repeatable)")
	cmd.Flags().StringVar(&f.reason, "reason", "", "with --dlq: only dead letters whose reason matches this regular expression (a plain word matches as a substring)")
	cmd.Flags().StringVar(&f.since, "since", "", "with --dlq: only records dead-lettered at or after this RFC 3339 time")
	cmd.Flags().StringVar(&f.until, "until", "", "with --dlq: only records dead-lettered before this RFC 3339 time")
	return cmd
}

func runReplay(cmd *cobra.Command, f replayFlags) error {
	cfg, log, err := loadConfigAndLogger(cmd)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck
	sc, ok := findSink(cfg, f.sink)
	if !ok {
		return usageError{fmt.Errorf("no sink named %q in the pipeline", f.sink)}
	}
	if len(cfg.Kafka.Brokers) == 0 {
		return usageError{fmt.Errorf("replay needs kafka.brokers: it runs beside a running pipeline")}
	}
	ctx := cmd.Context()
	adm, closeAdm, err := adminClient(cfg, log)
	if err != nil {
		return err
	}
	defer closeAdm()
	out := cmd.OutOrStdout()
	if f.dlq {
		sel, err := selection(f)
		if err != nil {
			return usageError{err}
		}
		return redrive(ctx, cfg, sc, adm, sel, f.dry, log, out)
	}
	from, err := replay.ParseFrom(f.from)
	if err != nil {
		return usageError{err}
	}
	opts := []sink.Opt{sink.WithLogger(log), sink.WithOffsetName(replay.GroupName(sc.Name, from))}
	s, err := sink.New(ctx, cfg, sc, connectorFactories(), opts...)
	if err != nil {
		return sinkError(err)
	}
	defer s.Close()
	if f.reset {
		return resetGroup(ctx, s, adm, from, f, out)
	}
	return backfill(ctx, s, adm, from, f.dry, log, out)
}

func findSink(cfg *config.Pipeline, name string) (config.Sink, bool) {
	for _, s := range cfg.Sinks {
		if s.Name == name {
			return s, true
		}
	}
	return config.Sink{}, false
}

func adminClient(cfg *config.Pipeline, log *zap.Logger) (*kadm.Client, func(), error) {
	opts, err := kafka.ClientOpts(cfg.Kafka, log)
	if err != nil {
		return nil, nil, usageError{err}
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(cl), cl.Close, nil
}

func backfill(ctx context.Context, s *sink.Sink, adm *kadm.Client, from replay.From, dry bool, log *zap.Logger, out io.Writer) error {
	plan, err := replay.NewPlan(ctx, adm, s, from)
	if err != nil {
		return err
	}
	fmt.Fprint(out, replay.DryRun(plan))
	if !plan.Resume {
		warnTrimmed(ctx, adm, out, log, from, plan.Ranges)
	}
	if dry {
		return nil
	}
	if err := s.Prepare(ctx); err != nil {
		return err
	}
	progress := replay.NewProgress(plan.Total(), isTerminal(out), os.Stderr, log, "replay "+s.Name())
	sum, err := replay.Run(ctx, s, adm, plan, progress, log)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(out, "interrupted: %s; run the same command again to resume\n", sum)
			return fmt.Errorf("replay interrupted")
		}
		return err
	}
	fmt.Fprintf(out, "replay done: %s\n", sum)
	return nil
}

func resetGroup(ctx context.Context, s *sink.Sink, adm *kadm.Client, from replay.From, f replayFlags, out io.Writer) error {
	ranges, err := replay.Resolve(ctx, adm, s.Topics(), from)
	if err != nil {
		return err
	}
	plan := &replay.Plan{Group: s.Group(), Ranges: ranges}
	fmt.Fprint(out, replay.DryRun(plan))
	warnTrimmed(ctx, adm, out, zap.NewNop(), from, ranges)
	if f.dry {
		return nil
	}
	if err := replay.Reset(ctx, adm, s, ranges, f.force); err != nil {
		return err
	}
	fmt.Fprintf(out, "group %s reset: the sink applies these %d records when it runs\n", s.Group(), plan.Total())
	return nil
}

// warnTrimmed says, for a replay from earliest, which partitions no longer begin at offset 0
// on topics whose first records Kafka may have deleted (retention, DeleteRecords: a
// cleanup.policy with delete, or one it could not read): rows only those records carried are
// not replayed, and the target is complete only after a re-snapshot. Compaction alone removes
// only records a later one of the same key supersedes (kafka.CompactOnly), and is not named.
func warnTrimmed(ctx context.Context, adm *kadm.Client, out io.Writer, log *zap.Logger, from replay.From, ranges []replay.Range) {
	if !from.Earliest {
		return
	}
	var topics []string
	for _, r := range ranges {
		if r.Start > 0 && !slices.Contains(topics, r.Topic) {
			topics = append(topics, r.Topic)
		}
	}
	compactOnly, err := kafka.CompactOnly(ctx, adm, topics...)
	if err != nil {
		log.Warn("could not read the topics' cleanup.policy: naming every partition that does not begin at offset 0", zap.Error(err))
	}
	for _, r := range ranges {
		if r.Start == 0 || compactOnly[r.Topic] {
			continue
		}
		fmt.Fprintf(out, "warning: %s/%d begins at offset %d: Kafka deleted its first %d records, and rows only they carried are not replayed; "+
			"`backflow snapshot --table` sends every row of a table again\n", r.Topic, r.Partition, r.Start, r.Start)
		log.Warn("replay from earliest misses records Kafka deleted", zap.String("topic", r.Topic), zap.Int32("partition", r.Partition),
			zap.Int64("first_offset", r.Start))
	}
}

// selection parses the flags that select dead letters.
func selection(f replayFlags) (replay.Selection, error) {
	var sel replay.Selection
	for _, k := range f.keys {
		m, err := replay.ParseKey(k)
		if err != nil {
			return sel, err
		}
		sel.Keys = append(sel.Keys, m)
	}
	if f.reason != "" {
		re, err := regexp.Compile(f.reason)
		if err != nil {
			return sel, fmt.Errorf("--reason %q: %w", f.reason, err)
		}
		sel.Reason = re
	}
	for _, t := range []struct {
		flag, val string
		dst       *time.Time
	}{{"--since", f.since, &sel.Since}, {"--until", f.until, &sel.Until}} {
		if t.val == "" {
			continue
		}
		at, err := time.Parse(time.RFC3339, t.val)
		if err != nil {
			return sel, fmt.Errorf("%s %q: want an RFC 3339 time: %w", t.flag, t.val, err)
		}
		*t.dst = at
	}
	return sel, nil
}

func redrive(ctx context.Context, cfg *config.Pipeline, sc config.Sink, adm *kadm.Client, sel replay.Selection, dry bool,
	log *zap.Logger, out io.Writer) error {
	s, err := sink.New(ctx, cfg, sc, connectorFactories(), sink.WithLogger(log), sink.CollectFailures(),
		sink.WithOffsetName(replay.RedriveName(sc.Name)))
	if err != nil {
		return sinkError(err)
	}
	defer s.Close()
	if err := s.Prepare(ctx); err != nil {
		return err
	}
	progress := replay.NewProgress(0, isTerminal(out), os.Stderr, log, "re-drive "+sc.Name)
	opts := replay.RedriveOptions{Select: sel, DryRun: dry, Log: log, OnFailure: func(f sink.Failure) {
		fmt.Fprintf(out, "  still failing: %s/%d@%d: %s\n", f.Record.Topic, f.Record.Partition, f.Record.Offset, f.Reason)
	}}
	sum, err := replay.Redrive(ctx, s, adm, opts, progress)
	if err != nil {
		return err
	}
	if dry {
		fmt.Fprintf(out, "dry run of a re-drive of %s, nothing applied: %s\n", s.DLQTopic(), sum)
		return nil
	}
	fmt.Fprintf(out, "re-drive of %s: %s\n", s.DLQTopic(), sum)
	if sum.StillFailing > 0 {
		return fmt.Errorf("%d dead-letter record(s) still fail", sum.StillFailing)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// sinkError is a usage error (exit 2) when the sink's config is wrong, and a runtime failure
// (exit 1) when its target is unreachable.
func sinkError(err error) error {
	if sink.IsRetryable(err) {
		return err
	}
	return usageError{err}
}
