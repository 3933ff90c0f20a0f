package kafka

import (
	"context"
	"fmt"
	"io/fs"
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
// in filepath.Join(dataDir, "kafka"), fsynced per batch, private to the user (see makePrivate).
// State found there is loaded first.
func StartEmbedded(ctx context.Context, dataDir string, port int, log *zap.Logger) (*Embedded, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start embedded Kafka: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	dir := filepath.Join(dataDir, "kafka")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create embedded Kafka data dir %s: %w", dir, err)
	}
	if err := makePrivate(dir); err != nil {
		return nil, err
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
		if err := makePrivate(e.dir); err != nil {
			e.log.Warn("embedded Kafka: could not make its files private to the user", zap.Error(err))
		}
		e.log.Info("embedded Kafka broker stopped", zap.String("dir", e.dir))
	})
}

// makePrivate gives the directories under root (root included) mode 0700 and the files 0600:
// the broker's log holds every captured row, and its directory may sit in a shared place. kfake
// creates its files 0644 and offers no way to choose, so the directory, made 0700 before the
// broker starts, is what keeps them private while it runs; the files themselves are tightened
// at start (state left by an older version) and at Close (files created during the run).
// Symbolic links are left alone rather than followed.
func makePrivate(root string) error {
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			return nil
		case d.IsDir():
			want = 0o700
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm() != want {
			return os.Chmod(path, want)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("embedded Kafka: make %s private to the user (dirs 0700, files 0600): %w", root, err)
	}
	return nil
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
