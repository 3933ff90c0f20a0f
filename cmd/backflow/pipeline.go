package main

import (
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/backflow-dev/backflow/pkg/capture"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/observe"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// parts says which parts of the pipeline a command runs.
type parts struct {
	capture bool
	sinks   bool
	only    string // run only the sink of this name
	command string // the command's name, for errors
}

// runParts starts the embedded broker when no brokers are configured, then runs the chosen parts
// until ctx ends or one fails for good.
func runParts(ctx context.Context, cfg *config.Pipeline, log *zap.Logger, want parts) error {
	if len(cfg.Kafka.Brokers) == 0 {
		emb, err := kafka.StartEmbedded(ctx, cfg.DataDir, cfg.Kafka.EmbeddedPort, log)
		if err != nil {
			return err
		}
		defer emb.Close()
		cfg.Kafka.Brokers = emb.Brokers()
	}
	m := observe.NewMetrics()
	stopHTTP, err := startHTTP(cfg, m, log, components(cfg, want))
	if err != nil {
		return err
	}
	defer stopHTTP()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	if want.capture { // capture does not wait for the sinks' targets
		log.Info("capture starting", zap.String("warehouse", config.RedactURL(cfg.Source.Postgres.URL)),
			zap.Strings("tables", cfg.Source.Postgres.Tables), zap.Strings("brokers", cfg.Kafka.Brokers))
		copts := []capture.Opt{capture.WithLogger(log), capture.WithMetrics(m)}
		models, err := startModels(gctx, cfg, log, m, g.Go)
		if err != nil {
			return err
		}
		if models != nil { // models follow their refresh_on tables through capture's commits
			copts = append(copts, capture.WithCommitHook(models.Committed))
		}
		g.Go(func() error {
			if err := capture.New(cfg, copts...).RunWithRetry(gctx); err != nil {
				return fmt.Errorf("capture: %w", err)
			}
			return nil
		})
	}
	sinks, err := buildSinks(gctx, cfg, log, want, m)
	defer func() {
		for _, s := range sinks {
			_ = s.Close()
		}
	}()
	if err != nil {
		capturedFirst := gctx.Err() != nil && ctx.Err() == nil // capture failed while the sinks were built
		cancel()
		if werr := g.Wait(); capturedFirst && werr != nil {
			return werr
		}
		if ctx.Err() != nil {
			return nil
		}
		return usageError{err}
	}
	for _, s := range sinks {
		g.Go(func() error { return runSinkWithRetry(gctx, s, log, m) })
	}
	return g.Wait()
}

func buildSinks(ctx context.Context, cfg *config.Pipeline, log *zap.Logger, want parts, m *observe.Metrics) ([]*sink.Sink, error) {
	if !want.sinks {
		return nil, nil
	}
	var out []*sink.Sink
	for _, sc := range cfg.Sinks {
		if want.only != "" && sc.Name != want.only {
			continue
		}
		s, err := newSinkWithRetry(ctx, cfg, sc, log, m)
		if err != nil {
			for _, o := range out {
				_ = o.Close()
			}
			return nil, err
		}
		out = append(out, s)
	}
	if want.only != "" && len(out) == 0 {
		return nil, fmt.Errorf("no sink named %q in the pipeline", want.only)
	}
	return out, nil
}

// runSinkWithRetry restarts a sink after failures (its uncommitted records are consumed again),
// with exponential backoff, until ctx ends.
func runSinkWithRetry(ctx context.Context, s *sink.Sink, log *zap.Logger, m *observe.Metrics) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = 500*time.Millisecond, 30*time.Second
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		return struct{}{}, s.Run(ctx)
	}, backoff.WithBackOff(bo), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, d time.Duration) {
		m.Error(observe.SinkComponent(s.Name()))
		log.Warn("sink failed; restarting from its last commit", zap.Error(err), zap.Duration("in", d))
	}))
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// newSinkWithRetry builds a sink, waiting with backoff while its target is unreachable (a
// retryable error): a target that is down at startup is an outage, not a bad config.
func newSinkWithRetry(ctx context.Context, cfg *config.Pipeline, sc config.Sink, log *zap.Logger, m *observe.Metrics) (*sink.Sink, error) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = 500*time.Millisecond, 30*time.Second
	return backoff.Retry(ctx, func() (*sink.Sink, error) {
		s, err := sink.New(ctx, cfg, sc, connectorFactories(), sink.WithLogger(log), sink.WithMetrics(m))
		if err != nil && !sink.IsRetryable(err) {
			return nil, backoff.Permanent(err)
		}
		return s, err
	}, backoff.WithBackOff(bo), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, d time.Duration) {
		log.Warn("sink target unreachable at startup; retrying", zap.String("sink", sc.Name), zap.Error(err), zap.Duration("in", d))
	}))
}
