package main

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// httpShutdownTimeout bounds how long in-flight HTTP requests may finish at shutdown.
const httpShutdownTimeout = 5 * time.Second

// startHTTP starts the observability listener when http.listen is set: metrics, health, status
// and the status page of this process. The returned stop shuts it down; it does nothing when no
// listener was configured.
func startHTTP(cfg *config.Pipeline, m *observe.Metrics, log *zap.Logger, components []string) (stop func(), err error) {
	if cfg.HTTP.Listen == "" {
		return func() {}, nil
	}
	staleAfter := max(observe.DefaultStaleAfter, 2*cfg.Source.Postgres.StatusInterval)
	srv := observe.NewServer(cfg.HTTP.Listen, m, pipelineStatus(cfg, log), log.Named("http"),
		observe.WithComponents(components...), observe.WithStaleAfter(staleAfter), observe.WithToken(cfg.HTTP.Token))
	if err := srv.Start(); err != nil {
		return nil, err
	}
	log.Info("http listener started: /metrics, /healthz, /readyz, /status.json, status page at /",
		zap.String("address", srv.Addr()), zap.Bool("token_required", cfg.HTTP.Token != ""))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("http listener shutdown", zap.Error(err))
		}
	}, nil
}

// pipelineStatus collects the whole pipeline's status (slot, every sink) with default thresholds.
func pipelineStatus(cfg *config.Pipeline, log *zap.Logger) observe.StatusFunc {
	lost := observe.NewLostScans() // the page asks every few seconds; dead-letter topics seldom change
	return func(ctx context.Context) (*observe.Status, error) {
		kopts, err := kafka.ClientOpts(cfg.Kafka, nil)
		if err != nil {
			return nil, err
		}
		return observe.Collect(ctx, cfg, kopts, log, observe.WithLostScans(lost))
	}
}

// components names the parts this process runs, as the metrics record their progress.
func components(cfg *config.Pipeline, want parts) []string {
	var out []string
	if want.capture {
		out = append(out, observe.ComponentCapture)
	}
	if !want.sinks {
		return out
	}
	for _, s := range cfg.Sinks {
		if want.only == "" || s.Name == want.only {
			out = append(out, observe.SinkComponent(s.Name))
		}
	}
	return out
}
