package capture

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

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
	// Xmin is the xmin (an xid8, as text) of the first snapshot any table was read in by pages:
	// every row version a later transaction wrote has an xmin at least this (see pages.go).
	Xmin string `json:"xmin,omitempty"`
}

// tableProgress is one table's snapshot. A table is read in key ranges, each resumed after its
// own last acknowledged key. A record written before ranges existed has none: LastKey and Rows
// then describe the table read as one range (see ranges).
type tableProgress struct {
	Done    bool             `json:"done"`
	LastKey []string         `json:"last_key,omitempty"` // text of the key columns of the last row sent (no Ranges)
	Rows    int64            `json:"rows"`               // rows acknowledged, every range included
	Ranges  []*rangeProgress `json:"ranges,omitempty"`
	// Filenode is the table's pg_relation_filenode when it was split into page ranges: a table
	// rewritten since (VACUUM FULL, CLUSTER, a rename swap) holds its rows on other pages.
	Filenode int64 `json:"filenode,omitempty"`
}

// rangeProgress is a key range [From, Below) of a table, compared on the whole key tuple; a nil
// bound is open. LastKey is the key of its last row Kafka acknowledged. A range of pages (see
// pages.go) has Pages set instead.
type rangeProgress struct {
	From    []string   `json:"from,omitempty"`
	Below   []string   `json:"below,omitempty"`
	LastKey []string   `json:"last_key,omitempty"`
	Pages   *pageRange `json:"pages,omitempty"`
	Rows    int64      `json:"rows"`
	Done    bool       `json:"done"`
}

// pageRange is a range of a table's pages [From, End), End 0 meaning the table's last page as
// a reader finds it; Next is the first page whose rows Kafka has not all acknowledged.
type pageRange struct {
	From int64 `json:"from"`
	End  int64 `json:"end,omitempty"`
	Next int64 `json:"next"`
}

// ranges returns the table's ranges, turning the progress of a record without them into the one
// range it describes.
func (p *tableProgress) ranges() []*rangeProgress {
	if len(p.Ranges) == 0 && (p.LastKey != nil || p.Rows > 0 || p.Done) {
		p.Ranges = []*rangeProgress{{LastKey: p.LastKey, Rows: p.Rows, Done: p.Done}}
		p.LastKey = nil
	}
	return p.Ranges
}

// bounds returns what is left to read of the range.
func (r *rangeProgress) bounds() keyBounds {
	if r.LastKey != nil {
		return keyBounds{after: r.LastKey, below: r.Below}
	}
	return keyBounds{from: r.From, below: r.Below}
}

// stateStore reads and writes capture state records in the `<prefix>._capture` topic.
type stateStore struct {
	client *kgo.Client
	admin  *kadm.Client
	opts   []kgo.Opt // connection options (brokers, TLS, SASL) for the reader
	topic  string
	key    []byte
}

// newStateStore reads and writes the state of slot in topic (config.Kafka.CaptureStateTopic).
func newStateStore(client *kgo.Client, admin *kadm.Client, opts []kgo.Opt, topic, slot string) *stateStore {
	return &stateStore{client: client, admin: admin, opts: opts, topic: topic, key: []byte("snapshot/" + slot)}
}

func (s *stateStore) ensure(ctx context.Context) error {
	return kafka.EnsureTopics(ctx, s.admin, []string{s.topic},
		config.Topics{Partitions: 1, ReplicationFactor: -1, CleanupPolicy: "compact"}, nil)
}

// load returns the last snapshot state written for this slot, or a zero state.
func (s *stateStore) load(ctx context.Context) (*snapshotState, error) {
	st := &snapshotState{Tables: map[string]*tableProgress{}}
	if err := s.loadKey(ctx, s.key, st); err != nil {
		return nil, err
	}
	if st.Tables == nil {
		st.Tables = map[string]*tableProgress{}
	}
	return st, nil
}

// loadReSnapshots returns the re-snapshot queue of this slot.
func (s *stateStore) loadReSnapshots(ctx context.Context) (*ReSnapshots, error) {
	st := &ReSnapshots{}
	return st, s.loadKey(ctx, s.reKey(), st)
}

func (s *stateStore) reKey() []byte { return s.stateKey("incremental") }

// saveReSnapshots writes the re-snapshot queue.
func (s *stateStore) saveReSnapshots(ctx context.Context, st *ReSnapshots) error {
	return s.saveKey(ctx, s.reKey(), st)
}

// loadKey decodes into v the last value written under key, leaving v alone when there is none.
func (s *stateStore) loadKey(ctx context.Context, key []byte, v any) error {
	var last []byte
	err := kafka.ReadToEnd(ctx, s.opts, s.topic, func(r *kgo.Record) {
		if string(r.Key) == string(key) && r.Value != nil {
			last = r.Value
		}
	})
	if err != nil {
		return fmt.Errorf("read capture state topic %s: %w", s.topic, err)
	}
	if last == nil {
		return nil
	}
	if err := json.Unmarshal(last, v); err != nil {
		return fmt.Errorf("capture state %s: %w", key, err)
	}
	return nil
}

// stateKey names a kind of state of this slot, e.g. "relations/backflow".
func (s *stateStore) stateKey(kind string) []byte {
	return []byte(kind + "/" + strings.TrimPrefix(string(s.key), "snapshot/"))
}

// loadRelations returns the relations the previous run captured.
func (s *stateStore) loadRelations(ctx context.Context) (*relationState, error) {
	st := &relationState{}
	return st, s.loadKey(ctx, s.stateKey("relations"), st)
}

func (s *stateStore) saveRelations(ctx context.Context, st *relationState) error {
	return s.saveKey(ctx, s.stateKey("relations"), st)
}

// save writes st synchronously; callers save only after the rows it covers are acknowledged.
func (s *stateStore) save(ctx context.Context, st *snapshotState) error {
	return s.saveKey(ctx, s.key, st)
}

func (s *stateStore) saveKey(ctx context.Context, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := s.client.ProduceSync(ctx, &kgo.Record{Topic: s.topic, Key: key, Value: b}).FirstErr(); err != nil {
		return fmt.Errorf("save capture state %s: %w", key, err)
	}
	return nil
}
