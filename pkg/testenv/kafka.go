package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka is an in-process kfake broker on 127.0.0.1 with its state in a temporary directory, so
// that Stop and Start (or Restart) bring it back on the same port with every record.
type Kafka struct {
	// Cluster is the running kfake cluster; it is replaced by Start after Stop.
	Cluster *kfake.Cluster

	mu      sync.Mutex
	opts    []kfake.Opt
	dir     string
	brokers []string
}

// StartKafka starts a one-broker kfake cluster on a free loopback port with no topics; opts come
// after the defaults (one broker, a temporary DataDir) and override them.
func StartKafka(opts ...kfake.Opt) (*Kafka, error) {
	dir, err := os.MkdirTemp("", "backflow-kafka-")
	if err != nil {
		return nil, fmt.Errorf("create kafka temp dir: %w", err)
	}
	k := &Kafka{dir: dir}
	k.opts = append([]kfake.Opt{kfake.NumBrokers(1), kfake.DataDir(dir)}, opts...)
	if err := k.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return k, nil
}

// NewKafka is StartKafka for tests: it fails the test when the broker cannot start and closes
// it when the test ends.
func NewKafka(t testing.TB, opts ...kfake.Opt) *Kafka {
	t.Helper()
	k, err := StartKafka(opts...)
	if err != nil {
		t.Fatalf("testenv: start Kafka: %v", err)
	}
	t.Cleanup(func() {
		if err := k.Close(); err != nil {
			t.Errorf("testenv: close Kafka: %v", err)
		}
	})
	return k
}

// Start starts the cluster again after Stop, on the same ports and with the same data. It does
// nothing while running.
func (k *Kafka) Start() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.Cluster != nil {
		return nil
	}
	opts := k.opts
	if ports := k.ports(); len(ports) > 0 {
		opts = append(slices.Clone(opts), kfake.Ports(ports...))
	}
	c, err := newClusterRetry(opts)
	if err != nil {
		return fmt.Errorf("start kfake: %w", err)
	}
	k.Cluster, k.brokers = c, c.ListenAddrs()
	return nil
}

// newClusterRetry retries briefly when a port of the previous run is not free yet.
func newClusterRetry(opts []kfake.Opt) (*kfake.Cluster, error) {
	var err error
	for range 50 {
		var c *kfake.Cluster
		if c, err = kfake.NewCluster(opts...); err == nil {
			return c, nil
		}
		var opErr *net.OpError
		if !errors.As(err, &opErr) || opErr.Op != "listen" {
			return nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, err
}

// ports returns the ports of the previous run, empty before the first.
func (k *Kafka) ports() []int {
	var ports []int
	for _, b := range k.brokers {
		_, p, _ := net.SplitHostPort(b)
		n, _ := strconv.Atoi(p)
		ports = append(ports, n)
	}
	return ports
}

// Stop shuts the cluster down, persisting its state; clients see the broker as down.
func (k *Kafka) Stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.Cluster != nil {
		k.Cluster.Close()
		k.Cluster = nil
	}
}

// Restart stops and starts the cluster.
func (k *Kafka) Restart() error {
	k.Stop()
	return k.Start()
}

// Addr returns the first broker's host:port.
func (k *Kafka) Addr() string {
	return k.Brokers()[0]
}

// Brokers returns every broker's host:port.
func (k *Kafka) Brokers() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.brokers)
}

// Close stops the cluster and removes its temporary directory.
func (k *Kafka) Close() error {
	k.Stop()
	if err := os.RemoveAll(k.dir); err != nil {
		return fmt.Errorf("remove kafka temp dir: %w", err)
	}
	return nil
}
