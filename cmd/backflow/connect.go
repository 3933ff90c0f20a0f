package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/connectors"
	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/model"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// connectTimeout bounds each part's check: a server that does not answer is a problem to report,
// not a reason to hang in CI.
const connectTimeout = 30 * time.Second

// connectCheck is one part of `validate --connect`: what it names and how to check it.
type connectCheck struct {
	part  string
	check func(ctx context.Context) error
}

// runConnectChecks runs the read-only checks of every part of the pipeline (source, brokers,
// each sink's target), prints one line per part and every problem under it, and fails when any
// part has a problem. Nothing is written anywhere.
func runConnectChecks(ctx context.Context, out io.Writer, cfg *config.Pipeline, log *zap.Logger) error {
	failed := 0
	for _, c := range connectChecks(cfg, log) {
		cctx, cancel := context.WithTimeout(ctx, connectTimeout)
		err := c.check(cctx)
		cancel()
		if err == nil {
			fmt.Fprintf(out, "ok      %s\n", c.part)
			continue
		}
		if errors.Is(err, errNotChecked) {
			fmt.Fprintf(out, "skipped %s: %v\n", c.part, err)
			continue
		}
		failed++
		fmt.Fprintf(out, "FAILED  %s\n", c.part)
		for _, line := range problemLines(err) {
			fmt.Fprintf(out, "        - %s\n", line)
		}
	}
	if failed > 0 {
		return fmt.Errorf("validate --connect: %d part(s) of the pipeline cannot run as configured (listed above)", failed)
	}
	return nil
}

// errNotChecked marks a part that has no read-only check.
var errNotChecked = errors.New("no read-only check")

// connectChecks lists the parts of the pipeline and their checks, in the order data flows.
func connectChecks(cfg *config.Pipeline, log *zap.Logger) []connectCheck {
	var checks []connectCheck
	if cfg.HasSource() {
		checks = append(checks, connectCheck{part: "source " + config.RedactURL(cfg.Source.Postgres.URL), check: func(ctx context.Context) error {
			return errors.Join(capture.Check(ctx, cfg, capture.WithLogger(log))...)
		}})
	}
	for _, m := range cfg.Models {
		checks = append(checks, connectCheck{part: "model " + m.Name, check: func(ctx context.Context) error {
			return model.Check(ctx, cfg, m.Name)
		}})
	}
	var topics []string // a sink-only pipeline reads topics others write: they must be there
	if !cfg.HasSource() {
		for _, s := range cfg.Sinks {
			topics = append(topics, s.Topics...)
		}
	}
	checks = append(checks, connectCheck{part: fmt.Sprintf("kafka %v", cfg.Kafka.Brokers), check: func(ctx context.Context) error {
		return kafka.Check(ctx, cfg.Kafka, log, topics)
	}})
	targetChecks := connectors.Checks()
	for _, s := range cfg.Sinks {
		checks = append(checks, connectCheck{part: fmt.Sprintf("sink %s (%s)", s.Name, s.Connector), check: func(ctx context.Context) error {
			check, ok := targetChecks[s.Connector]
			if !ok {
				return fmt.Errorf("%w: connector %s cannot be tried without sending", errNotChecked, s.Connector)
			}
			params, err := sink.ConnectorParams(cfg, s, log.Named(s.Connector))
			if err != nil {
				return err
			}
			return check(ctx, params, mappedFields(s))
		}})
	}
	return checks
}

// mappedFields lists the target fields the sink writes: its map's fields and its key, sorted;
// nil when it has no map (the after image: only the source knows its columns).
func mappedFields(s config.Sink) []string {
	if len(s.Map) == 0 {
		return nil
	}
	fields := slices.Clone(s.Key)
	for f := range s.Map {
		if !slices.Contains(fields, f) {
			fields = append(fields, f)
		}
	}
	slices.Sort(fields)
	return fields
}

// problemLines splits a joined error into its problems, one per line.
func problemLines(err error) []string {
	var lines []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}
