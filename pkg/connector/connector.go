// Package connector is the contract between the sink runtime and the connectors that write to
// targets: the records and batches a connector receives, the Connector interface and the
// optional capabilities the runtime discovers by type assertion (RowLoader, OffsetStore,
// OffsetResetter, GroupShared, LongApplier), the Fence a batch carries, the Params a factory
// receives, and the error contract that tells the runtime what to retry, bisect or dead-letter.
//
// It imports nothing of the runtime (package sink) or of the configuration (package config), so
// a connector depends on this contract alone; TestStandsAlone keeps it so.
package connector

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/connspec"
)

// Op is what a record asks of the target.
type Op int

// The record operations.
const (
	OpUpsert   Op = iota // insert or update the row identified by Key with Fields
	OpDelete             // delete the row identified by Key
	OpTruncate           // remove every row the sink manages in this target (once per source truncate, at its place in every partition)
)

func (o Op) String() string {
	switch o {
	case OpUpsert:
		return "upsert"
	case OpDelete:
		return "delete"
	case OpTruncate:
		return "truncate"
	}
	return fmt.Sprintf("op(%d)", int(o))
}

// Record is one change, already mapped to the target's field names and values.
//
// Values are plain Go values, converted from the event's wire forms by package mapping: nil (NULL),
// bool, int32, int64, float32, float64, string (text, enum, uuid, numeric as its exact decimal
// text, json as its text, interval as ISO 8601, time of day as "15:04:05.000000"), []byte,
// time.Time (timestamptz in UTC; timestamp and date as UTC wall clock; an infinite one as the
// extreme instant Infinity recognizes), []any (arrays), and
// whatever a mapping expression computes (numbers, strings, maps from fromJSON, …).
type Record struct {
	Op Op
	// Key holds the target's identity fields (the sink's `key` list) and their values.
	Key map[string]any
	// Fields holds every mapped target field for upserts, key fields included. Fields whose source
	// column was an unchanged TOAST value are absent: connectors must leave them untouched in the
	// target (out of the UPDATE's SET), never write NULL.
	Fields map[string]any
	// KeyOrder and FieldOrder give a stable order of Key and Fields names (the mapping's order).
	KeyOrder   []string
	FieldOrder []string
	// Event is the source change the record was mapped from.
	Event *change.Event
	// Where it came from, for the dead-letter topic and for offset bookkeeping. The runtime finds
	// the Kafka record to dead-letter by Topic, Partition and Offset.
	Topic     string
	Partition int32
	Offset    int64
}

// Batch is a run of records of one topic partition, coalesced so that each key appears once (its
// last state), in offset order.
type Batch struct {
	Sink      string // the sink's name (also its consumer group)
	Topic     string
	Partition int32
	Records   []Record
	// NextOffset is the offset to resume from once this batch is applied. Connectors that store
	// offsets in the target (OffsetStore) write it in the same transaction as the rows.
	NextOffset int64
	// Fence is what the writer holds of the partition (see Fence); connectors that can check it
	// in the same transaction as the write refuse the batch with ErrFenced when it no longer holds.
	Fence Fence
}

// Fence identifies the worker's hold on a partition, so that a worker that has lost the partition
// to another member of the group (a "zombie", still applying a slow round) cannot write over what
// the new owner wrote since.
//
// The runtime sets it on every batch of its consumer group; replays and tests leave it zero
// (Held false), and connectors then write unconditionally.
type Fence struct {
	Held bool
	// Offset is the next offset an OffsetStore must still hold for the partition for this batch to
	// be written, -1 when it must hold none yet: the value it held when this worker was assigned
	// the partition, moved to each batch's NextOffset as batches are applied. A store holding
	// anything else was written by another worker: the batch is refused, as a whole.
	Offset int64
	// Epoch is the consumer-group generation in which this worker was assigned the partition.
	// Targets that keep no offsets but can check a token in the same transaction as the write
	// (Redis) keep the highest epoch that wrote each partition and refuse a lower one.
	Epoch int32
}

// Connector applies batches to one target system.
//
// Apply returns nil when every record is durably applied. It returns a *PartialError when the
// target applied some records and rejected others (per-record results, as SaaS APIs and webhooks
// answer). Any other error fails the whole batch: wrap it with Retryable when a retry can succeed
// (connection lost, timeout, 5xx, 429), and the runtime retries the batch for as long as it takes;
// otherwise the runtime bisects the batch to find the records at fault. A record found that way,
// or named in a PartialError, is tried again on its own under the sink's retry policy
// (config.Retry) before it is dead-lettered, so a per-record failure that may pass (a lock, a
// per-record 5xx in a batch answer) belongs in a PartialError too, never in a Retryable error
// for the whole batch, which would hold the partition without bound. Apply must be idempotent:
// after a crash a batch may be applied again.
type Connector interface {
	Apply(ctx context.Context, b *Batch) error
	Close() error
}

// LongApplier is implemented by connectors whose single Apply call may legitimately take long: a
// Salesforce bulk job, a paced API, a slow webhook. MaxApply is the longest one call may take
// before the connector gives up on it. The sink's rebalance timeout is made long enough for it,
// so that a rebalance does not remove a worker that is merely slow.
type LongApplier interface {
	MaxApply() time.Duration
}

// RowLoader is implemented by connectors that can load rows created in the source straight from
// the encoded messages (codec.Decoder.ScanCreated), without building a Record per row: the fast
// path of backfills and insert-heavy streams. The runtime takes it for a batch only when the
// sink's mapping is a projection of the after image (mapping.Projection), the sink has no version
// column, and every record of the batch created a row with a key of its own; any other batch,
// and any batch whose Load fails, is applied as Records, with the usual retries and
// dead-lettering.
//
// Values reach the buffer as decoded, not as mapped: dates, times and timestamps in their wire
// forms (see change.Kind). A connector accepts only columns whose wire form it writes exactly as
// it writes the mapped value.
type RowLoader interface {
	// RowBuffer returns an empty buffer for rows of table t whose column i becomes the target
	// field fields[i] ("" for columns the mapping leaves out), or an error saying why such rows
	// cannot be loaded directly now.
	RowBuffer(t *change.Table, fields []string) (RowBuffer, error)
}

// RowBuffer collects the rows of one batch for a RowLoader. Its codec.RowWriter methods receive
// one row's columns; EndRow ends the row.
type RowBuffer interface {
	codec.RowWriter
	// EndRow ends the current row. It returns false when the row cannot be loaded directly
	// (a null key field): the runtime then applies the batch as Records.
	EndRow() bool
	// Load writes the rows, and b.NextOffset when the connector is an OffsetStore, in one
	// transaction. b has no Records. An error leaves the target as it was.
	Load(ctx context.Context, b *Batch) error
}

// OffsetStore is implemented by connectors that store the next offset per partition in the
// target, in the same transaction as the rows (SQL targets), or right after them, never ahead
// (Redis, whose writes are idempotent). The runtime seeks to these offsets when it is assigned a
// partition, which makes the effect in the target exactly-once (SQL) and follows a target that
// lost data: a target that holds no offset for a partition the group has applied is read from the
// partition's start. Offsets returns ErrOffsetsNotKept when the target has what the sink wrote
// but never kept its offsets. A batch a connector reports in a PartialError stores no offset.
type OffsetStore interface {
	// Offsets returns the stored next offset of each partition of the given topics for sink.
	Offsets(ctx context.Context, sink string, topics []string) (map[string]map[int32]int64, error)
}

// OffsetResetter is implemented by OffsetStore connectors that can move the stored offsets, so
// that `backflow replay --reset` moves the target's position along with the group's. The runtime
// also stores through it, under partition -1 - p, the fingerprint of the Kafka topic ID that
// partition p's offset counts in (to know a topic created again): a store keeps negative
// partitions like any other and returns them from Offsets.
type OffsetResetter interface {
	ResetOffsets(ctx context.Context, sink string, next map[string]map[int32]int64) error
}

// GroupShared is implemented by connectors that pace themselves to an API budget (HubSpot,
// Shopify, Salesforce). The budget is the sink's in total, however many workers run it: on every
// rebalance each member is told its share, the fraction of the sink's partitions it holds
// (GroupShare), and scales its budget to it. A share of 0 means the member holds no partitions
// and sends nothing; connectors still keep a budget of at least one request.
type GroupShared interface {
	SetGroupShare(fraction float64)
}

// Params is what a connector factory receives.
type Params struct {
	Sink string         // the sink's name
	With map[string]any // the sink's `with` block
	Key  []string       // the target's identity fields
	// SoftDeleteColumn is set when on_delete is soft_delete.
	SoftDeleteColumn string
	// VersionColumn is the sink's version_column: every upsert carries the source LSN of its
	// change in this field, and connectors that can (postgres) never replace a row with an older
	// version, so replays beside the live sink cannot move a key backwards.
	VersionColumn string
	Log           *zap.Logger
	// Kafka is the pipeline's Kafka connection (seed brokers, TLS, SASL), for connectors that
	// write to Kafka themselves; nil when the pipeline names no brokers.
	Kafka []kgo.Opt
}

// Logger returns the connector's logger with fields added: Log, which already names the sink and
// the connector, or a no-op logger when Log is nil.
func (p Params) Logger(fields ...zap.Field) *zap.Logger {
	if p.Log == nil {
		return zap.NewNop()
	}
	return p.Log.With(fields...)
}

// Factory builds a connector from its parameters, validating them up front.
type Factory func(ctx context.Context, p Params) (Connector, error)

// Check is a connector's read-only look at its target, for `backflow validate --connect`: it
// connects with the sink's settings and reports every problem that would stop the sink (a missing
// table or column, a privilege or an API scope the credentials lack, refused credentials), all
// at once, writing nothing. fields are the target fields the sink's mapping writes, key included
// (nil when the mapping is the after image, whose fields only the source knows).
type Check func(ctx context.Context, p Params, fields []string) error

// Opener is a configured connector: its settings are checked, nothing is connected yet.
type Opener interface {
	// Open connects to the target and returns the connector.
	Open(ctx context.Context) (Connector, error)
}

// OpenFunc is a function that is an Opener.
type OpenFunc func(ctx context.Context) (Connector, error)

// Open calls f.
func (f OpenFunc) Open(ctx context.Context) (Connector, error) { return f(ctx) }

// Descriptor is a target connector as the registry lists it: the spec of its settings, from which
// come their parsing, validation, documentation and JSON Schema, and Configure.
type Descriptor struct {
	Spec connspec.Spec
	// Configure checks a sink's parameters and prepares the connector without any I/O, so that
	// `backflow validate` can run it. Its error is a connspec.Problems listing every mistake.
	Configure func(p Params) (Opener, error)
	// Check, when set, is the connector's read-only check of its target (validate --connect).
	Check Check
}

// Configured is a Descriptor's Configure in its usual shape: parse checks the parameters without
// any I/O; open connects the parsed settings when the sink starts.
func Configured[C any](parse func(Params) (C, error), open func(ctx context.Context, c C, p Params) (Connector, error)) func(Params) (Opener, error) {
	return func(p Params) (Opener, error) {
		c, err := parse(p)
		if err != nil {
			return nil, err
		}
		return OpenFunc(func(ctx context.Context) (Connector, error) { return open(ctx, c, p) }), nil
	}
}

// Factory returns the Factory that configures the connector and then opens it.
func (d Descriptor) Factory() Factory {
	return func(ctx context.Context, p Params) (Connector, error) {
		o, err := d.Configure(p)
		if err != nil {
			return nil, err
		}
		return o.Open(ctx)
	}
}
