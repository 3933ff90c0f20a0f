package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// errUnhealthy is `backflow status`'s runtime failure: exit code 1, problems printed.
var errUnhealthy = errors.New("pipeline unhealthy")

func statusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show slot lag, consumer lag and DLQ depth; exit 1 when the pipeline is unhealthy",
		Long: `Show the replication slot and its lag, and each sink's consumer group, members, lag per
topic, dead-letter depth and last applied time, and the progress of a snapshot in progress (these
two when a running process on this machine serves http.listen). A sink-only pipeline (no source)
reports its sinks only. Exit code 0 healthy, 1 unhealthy (the problems are printed), 2 bad usage or config.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: runStatus,
	}
	cmd.Flags().Bool("json", false, "print the status as JSON")
	cmd.Flags().Int64("max-lag", observe.DefaultMaxLag, "a sink lagging more records than this is unhealthy")
	cmd.Flags().Int64("max-lag-bytes", observe.DefaultMaxLagBytes, "a slot held by a capture process but not read, holding back more WAL bytes than this, is unhealthy (one no capture holds always is)")
	cmd.Flags().Duration("timeout", observe.DefaultCollectTimeout, "how long to wait for PostgreSQL and for Kafka")
	return cmd
}

func runStatus(cmd *cobra.Command, _ []string) error {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	th, timeout, err := statusFlags(cmd)
	if err != nil {
		return usageError{err}
	}
	if len(cfg.Kafka.Brokers) == 0 { // the embedded broker of a `backflow run` on this machine
		cfg.Kafka.Brokers = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Kafka.EmbeddedPort))}
	}
	kopts, err := kafka.ClientOpts(cfg.Kafka, nil)
	if err != nil {
		return usageError{err}
	}
	st, err := observe.Collect(cmd.Context(), cfg, kopts, nil, observe.WithThresholds(th), observe.WithTimeout(timeout))
	if err != nil {
		return err
	}
	addRunning(cmd.Context(), cfg, st)
	addModels(cmd.Context(), cfg, kopts, st)
	asJSON, _ := cmd.Flags().GetBool("json")
	if err := printStatus(cmd.OutOrStdout(), st, asJSON); err != nil {
		return err
	}
	if !st.Healthy {
		return fmt.Errorf("%w: %d problem(s)", errUnhealthy, len(st.Problems))
	}
	return nil
}

func statusFlags(cmd *cobra.Command) (observe.Thresholds, time.Duration, error) {
	maxLag, _ := cmd.Flags().GetInt64("max-lag")
	maxBytes, _ := cmd.Flags().GetInt64("max-lag-bytes")
	timeout, _ := cmd.Flags().GetDuration("timeout")
	switch {
	case maxLag < 0:
		return observe.Thresholds{}, 0, errors.New("--max-lag must not be negative")
	case maxBytes < 0:
		return observe.Thresholds{}, 0, errors.New("--max-lag-bytes must not be negative")
	case timeout <= 0:
		return observe.Thresholds{}, 0, errors.New("--timeout must be positive")
	}
	return observe.Thresholds{MaxLag: maxLag, MaxLagBytes: maxBytes}, timeout, nil
}

// addRunning asks a running backflow process on this machine (http.listen) what only its own
// metrics know: when each sink last applied records, and its pauses; its stalled partitions,
// long waits on a target, mapping holds and records lost to Kafka's retention, which are
// problems, as are a capture failing run after run and one whose spill_dir failed; and the
// snapshot the capture runs now.
// Nothing happens when none answers.
func addRunning(ctx context.Context, cfg *config.Pipeline, st *observe.Status) {
	running, err := fetchRunningStatus(ctx, cfg.HTTP.Listen, cfg.HTTP.Token)
	if err != nil {
		return
	}
	r := observe.Running{Pauses: map[string]observe.Pause{}, Stalls: map[string][]observe.StalledPartition{},
		Waits: map[string][]observe.WaitingPartition{}, Holds: map[string]observe.MappingHold{}, Lost: map[string][]observe.LostRange{}}
	for _, k := range running.Sinks {
		for i, s := range st.Sinks {
			if k.Name != s.Name {
				continue
			}
			if k.LastApplied != nil {
				st.Sinks[i].LastApplied = k.LastApplied
			}
			if k.Paused != nil {
				r.Pauses[k.Name] = *k.Paused
			}
			if len(k.Stalled) > 0 {
				r.Stalls[k.Name] = k.Stalled
			}
			if len(k.Waiting) > 0 {
				r.Waits[k.Name] = k.Waiting
			}
			if k.MappingHold != nil {
				r.Holds[k.Name] = *k.MappingHold
			}
			if len(k.Lost) > 0 {
				r.Lost[k.Name] = k.Lost
			}
		}
	}
	if !st.SinkOnly {
		st.Capture.SpillFailed = running.Capture.SpillFailed
		st.Capture.Failing = running.Capture.Failing
	}
	st.AddRunning(r)
	if !st.SinkOnly {
		st.Capture.Snapshots = running.Capture.Snapshots
	}
}

func fetchRunningStatus(ctx context.Context, listen, token string) (*observe.Status, error) {
	if listen == "" {
		return nil, errors.New("no http.listen")
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("http.listen: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/status.json", nil)
	if err != nil {
		return nil, fmt.Errorf("status request: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask running process: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ask running process: HTTP %d", resp.StatusCode)
	}
	var st observe.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("decode running process status: %w", err)
	}
	return &st, nil
}

// printStatus writes the status as indented JSON or as readable tables.
func printStatus(w io.Writer, st *observe.Status, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return fmt.Errorf("write status: %w", err)
		}
		return nil
	}
	verdict := "HEALTHY"
	if !st.Healthy {
		verdict = "UNHEALTHY"
	}
	fmt.Fprintf(w, "pipeline %s at %s (max lag %d records, max inactive slot lag %s)\n\n", verdict,
		st.Time.Format(time.RFC3339), st.Thresholds.MaxLag, observe.FormatBytes(st.Thresholds.MaxLagBytes))
	if st.SinkOnly {
		fmt.Fprintln(w, "sink-only pipeline (no source): sinks only")
	} else {
		printCapture(w, st.Capture)
	}
	printSinks(w, st)
	printModels(w, st)
	if len(st.Problems) > 0 {
		fmt.Fprintln(w, "\nproblems:")
		for _, p := range st.Problems {
			fmt.Fprintf(w, "  - %s\n", p)
		}
	}
	return nil
}

func printCapture(w io.Writer, c observe.CaptureStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tACTIVE\tCONFIRMED FLUSH LSN\tLAG\tWAL STATUS\tCAPTURED BY")
	switch {
	case c.Error != "":
		fmt.Fprintf(tw, "%s\t?\t?\t?\t(%s)\t?\n", c.Slot, c.Error)
	case !c.Exists:
		fmt.Fprintf(tw, "%s\t-\t-\t-\t(does not exist)\t%s\n", c.Slot, dash(c.Instance))
	default:
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Slot, yesNo(c.Active), c.ConfirmedFlushLSN,
			observe.FormatBytes(c.LagBytes), dash(c.WALStatus), dash(c.Instance))
	}
	_ = tw.Flush()
	if c.DLQTopic != "" {
		depth := "?"
		if c.DLQDepth >= 0 {
			depth = strconv.FormatInt(c.DLQDepth, 10)
		}
		fmt.Fprintf(w, "capture dead letters: %s in %s\n", depth, c.DLQTopic)
	}
	for _, p := range c.Snapshots {
		fmt.Fprintf(w, "snapshot in progress: %s\n", p)
	}
}

func printSinks(w io.Writer, st *observe.Status) {
	fmt.Fprintln(w)
	if st.Kafka.Error != "" {
		fmt.Fprintf(w, "sinks unknown: Kafka (%s) unreachable: %s\n", strings.Join(st.Kafka.Brokers, ","), st.Kafka.Error)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tGROUP\tSTATE\tMEMBERS\tLAG\tDLQ\tLAST APPLIED")
	for _, s := range st.Sinks {
		lag := strconv.FormatInt(s.Lag, 10)
		if s.Error != "" {
			lag = "? (" + s.Error + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\n", s.Name, s.Group, dash(s.State), len(s.Members), lag,
			s.DLQDepth, lastApplied(s.LastApplied, st.Time))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tTOPIC\tLAG\tBY PARTITION")
	for _, s := range st.Sinks {
		for _, t := range s.Topics {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, t.Topic, topicLagText(t), partitionsText(t))
		}
	}
	_ = tw.Flush()
}

func topicLagText(t observe.TopicLag) string {
	if t.Error != "" {
		return "?"
	}
	return strconv.FormatInt(t.Lag, 10)
}

func partitionsText(t observe.TopicLag) string {
	if t.Error != "" {
		return "(" + t.Error + ")"
	}
	parts := make([]string, len(t.Partitions))
	for i, p := range t.Partitions {
		parts[i] = fmt.Sprintf("p%d:%d", p.Partition, p.Lag)
	}
	return strings.Join(parts, " ")
}

func lastApplied(t *time.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	return fmt.Sprintf("%s (%s ago)", t.Format(time.RFC3339), now.Sub(*t).Round(time.Second))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
