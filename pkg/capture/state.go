package capture

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
)

// snapshotState is the snapshot's progress, kept in Kafka (a compacted topic keyed by slot) so a
// restarted capture resumes after the last chunk whose rows Kafka acknowledged.
type snapshotState struct {
	Done   bool                      `json:"done"`
	Tables map[string]*tableProgress `json:"tables"`
}

type tableProgress struct {
	Done    bool     `json:"done"`
	LastKey []string `json:"last_key,omitempty"` // text of the key columns of the last row sent
	Rows    int64    `json:"rows"`
}

// stateStore reads and writes capture state records in the `<prefix>._capture` topic.
type stateStore struct {
	client *kgo.Client
	admin  *kadm.Client
	opts   []kgo.Opt // connection options (brokers, TLS, SASL) for the reader
	topic  string
	key    []byte
}

func newStateStore(client *kgo.Client, admin *kadm.Client, opts []kgo.Opt, prefix, slot string) *stateStore {
	return &stateStore{client: client, admin: admin, opts: opts, topic: prefix + "._capture", key: []byte("snapshot/" + slot)}
}

func (s *stateStore) ensure(ctx context.Context) error {
	return kafka.EnsureTopics(ctx, s.admin, []string{s.topic},
		config.Topics{Partitions: 1, ReplicationFactor: -1, CleanupPolicy: "compact"}, nil)
}

// load returns the last state written for this slot, or a zero state.
func (s *stateStore) load(ctx context.Context) (*snapshotState, error) {
	st := &snapshotState{Tables: map[string]*tableProgress{}}
	ends, err := s.admin.ListEndOffsets(ctx, s.topic)
	if err != nil {
		return nil, fmt.Errorf("read capture state topic %s: %w", s.topic, err)
	}
	end, ok := ends.Lookup(s.topic, 0)
	if !ok || end.Err != nil || end.Offset == 0 {
		return st, nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, s.opts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.topic: {0: kgo.NewOffset().AtStart()}}))...)
	if err != nil {
		return nil, fmt.Errorf("read capture state: %w", err)
	}
	defer cl.Close()
	for off := int64(-1); off < end.Offset-1; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return nil, fmt.Errorf("read capture state topic %s: %w", s.topic, err)
		}
		for _, r := range fs.Records() {
			off = r.Offset
			if string(r.Key) != string(s.key) || r.Value == nil {
				continue
			}
			next := &snapshotState{}
			if err := json.Unmarshal(r.Value, next); err != nil {
				return nil, fmt.Errorf("capture state at offset %d: %w", r.Offset, err)
			}
			if next.Tables == nil {
				next.Tables = map[string]*tableProgress{}
			}
			st = next
		}
	}
	return st, nil
}

// save writes st synchronously; callers save only after the rows it covers are acknowledged.
func (s *stateStore) save(ctx context.Context, st *snapshotState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := s.client.ProduceSync(ctx, &kgo.Record{Topic: s.topic, Key: s.key, Value: b}).FirstErr(); err != nil {
		return fmt.Errorf("save snapshot progress: %w", err)
	}
	return nil
}
