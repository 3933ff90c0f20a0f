package model

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/kafka"
)

// commitRecord is a model's entry in the capture state topic (key "model/<name>"): the run
// whose result the state file holds. Committed is false from the moment a run starts
// publishing until its state is committed: a reader who finds it false knows the topic may hold
// changes the state does not, and rebuilds the state from the topic.
type commitRecord struct {
	Run       int64     `json:"run"`
	Committed bool      `json:"committed"`
	Rows      int64     `json:"rows"`
	Checksum  string    `json:"checksum,omitempty"`
	At        time.Time `json:"at"`
	// Partitions is how many partitions the model's topic had at the commit (0: unknown). A
	// later run that finds more reports partitions added between runs (checkPartitions).
	Partitions int32 `json:"partitions,omitempty"`
}

// attemptRecord is a model's last attempt (key "model-run/<name>"), for status.
type attemptRecord struct {
	Run     int64            `json:"run"`
	At      time.Time        `json:"at"`
	Error   string           `json:"error,omitempty"`
	Changes map[string]int64 `json:"changes,omitempty"`
	Rows    int64            `json:"rows"`
}

func commitKey(name string) []byte  { return []byte("model/" + name) }
func attemptKey(name string) []byte { return []byte("model-run/" + name) }

// records reads the last commit and attempt records of every model from the state topic.
func readRecords(ctx context.Context, opts []kgo.Opt, topic string) (map[string]commitRecord, map[string]attemptRecord, error) {
	commits, attempts := map[string]commitRecord{}, map[string]attemptRecord{}
	var bad error
	err := kafka.ReadToEnd(ctx, opts, topic, func(r *kgo.Record) {
		key := string(r.Key)
		switch {
		case r.Value == nil:
		case len(key) > len("model/") && key[:len("model/")] == "model/":
			var c commitRecord
			if err := json.Unmarshal(r.Value, &c); err != nil {
				bad = fmt.Errorf("state record %s in %s: %w", key, topic, err)
				return
			}
			commits[key[len("model/"):]] = c
		case len(key) > len("model-run/") && key[:len("model-run/")] == "model-run/":
			var a attemptRecord
			if err := json.Unmarshal(r.Value, &a); err == nil {
				attempts[key[len("model-run/"):]] = a
			}
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read the state topic %s: %w", topic, err)
	}
	return commits, attempts, bad
}

// writeRecord writes v under key, synchronously.
func writeRecord(ctx context.Context, cl *kgo.Client, topic string, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: key, Value: b}).FirstErr(); err != nil {
		return fmt.Errorf("write %s to the state topic %s: %w", key, topic, err)
	}
	return nil
}
