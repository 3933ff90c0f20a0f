package kafka

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"
)

// Embedded is an in-process Kafka broker (franz-go's kfake) on 127.0.0.1 whose log and consumer
// group offsets persist in a data directory, so a restart loses nothing. It is the single-machine
// default for the quickstart, trials and tests; production sets kafka.brokers instead.
type Embedded struct {
	cluster *kfake.Cluster
	brokers []string
	dir     string
	log     *zap.Logger
	once    sync.Once
}

// StartEmbedded starts the embedded broker on 127.0.0.1:port (0 picks a free port) with its state
// in filepath.Join(dataDir, "kafka"), fsynced per batch. State found there is loaded first.
func StartEmbedded(ctx context.Context, dataDir string, port int, log *zap.Logger) (*Embedded, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start embedded Kafka: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	dir := filepath.Join(dataDir, "kafka")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create embedded Kafka data dir: %w", err)
	}
	c, err := kfake.NewCluster(
		kfake.Ports(port),
		kfake.DataDir(dir),
		kfake.SyncWrites(),
		kfake.ClusterID("backflow-embedded"),
		kfake.WithLogger(kfakeLogger{log.Named("embedded-kafka")}),
	)
	if err != nil {
		return nil, fmt.Errorf("start embedded Kafka on 127.0.0.1:%d with data dir %s: %w", port, dir, err)
	}
	e := &Embedded{cluster: c, brokers: c.ListenAddrs(), dir: dir, log: log}
	log.Info("embedded Kafka broker started (single machine, for trials; set kafka.brokers for production)",
		zap.String("address", e.brokers[0]), zap.String("dir", dir))
	return e, nil
}

// Brokers returns the broker addresses to use as seed brokers.
func (e *Embedded) Brokers() []string {
	return slices.Clone(e.brokers)
}

// Dir returns the directory holding the broker's state.
func (e *Embedded) Dir() string {
	return e.dir
}

// Close stops the broker and writes its state to disk. It is safe to call more than once.
func (e *Embedded) Close() {
	e.once.Do(func() {
		e.cluster.Close()
		e.log.Info("embedded Kafka broker stopped", zap.String("dir", e.dir))
	})
}

// kfakeLogger forwards kfake's warnings and errors to zap; its info and debug output is per
// request and too chatty for a service log.
type kfakeLogger struct{ log *zap.Logger }

// Logf implements kfake.Logger.
func (l kfakeLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	switch level {
	case kfake.LogLevelError:
		l.log.Error(fmt.Sprintf(msg, args...))
	case kfake.LogLevelWarn:
		l.log.Warn(fmt.Sprintf(msg, args...))
	}
}
