// Package sink is the sink runtime: it consumes change topics in a consumer group, batches and
// coalesces each partition's records, maps and filters them, applies them to a target through a
// Connector, retries what can be retried, sends what cannot be applied to the dead-letter topic,
// and commits offsets only after the target has the data.
//
// The runtime works in stages, one file each:
//
//   - process.go: a partition's records in batches, each prepared while the one before applies
//   - decode.go: decode and map a Kafka record into a Record
//   - coalesce.go: one state per key in a batch
//   - rows.go: the direct path, rows scanned straight into a connector's RowBuffer
//   - apply.go: apply a batch, retrying while the target is unavailable
//   - bisect.go: find the records at fault in a failed batch, retry each, dead-letter it
//   - dlq.go: the dead-letter topic
//   - rounds.go: rounds of polled records and the commits after them
//
// The contract with connectors lives in package connector; this file re-exports it (aliases and
// the same functions) so that connectors written against package sink compile unchanged. New
// code should name package connector.
package sink

import (
	"context"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/connector"
)

// Aliases of package connector's types (see there for their contracts).
type (
	Op             = connector.Op
	Record         = connector.Record
	Batch          = connector.Batch
	Fence          = connector.Fence
	Connector      = connector.Connector
	LongApplier    = connector.LongApplier
	RowLoader      = connector.RowLoader
	RowBuffer      = connector.RowBuffer
	OffsetStore    = connector.OffsetStore
	OffsetResetter = connector.OffsetResetter
	GroupShared    = connector.GroupShared
	Params         = connector.Params
	Factory        = connector.Factory
	Check          = connector.Check
	RecordError    = connector.RecordError
	PartialError   = connector.PartialError
	Opener         = connector.Opener
	OpenFunc       = connector.OpenFunc
	Descriptor     = connector.Descriptor
)

// The record operations, as in package connector.
const (
	OpUpsert   = connector.OpUpsert
	OpDelete   = connector.OpDelete
	OpTruncate = connector.OpTruncate
)

// ErrFenced is connector.ErrFenced.
var ErrFenced = connector.ErrFenced

// ErrOffsetsNotKept is connector.ErrOffsetsNotKept.
var ErrOffsetsNotKept = connector.ErrOffsetsNotKept

// Re-exports of package connector's error contract.
var (
	Retryable   = connector.Retryable
	RetryAfter  = connector.RetryAfter
	IsRetryable = connector.IsRetryable
	RetryDelay  = connector.RetryDelay
)

// Re-exports of package connector's value helpers.
var (
	Infinity  = connector.Infinity
	JSONTimes = connector.JSONTimes
)

// Configured is connector.Configured.
func Configured[C any](parse func(Params) (C, error), open func(ctx context.Context, c C, p Params) (Connector, error)) func(Params) (Opener, error) {
	return connector.Configured(parse, open)
}

// ParamsOf returns the parameters sink cfg gives its connector, without the logger and the Kafka
// connection, which the caller adds.
func ParamsOf(cfg config.Sink) Params {
	p := Params{Sink: cfg.Name, With: cfg.With, Key: cfg.Key, VersionColumn: cfg.VersionColumn}
	if cfg.OnDelete == config.OnDeleteSoftDelete {
		p.SoftDeleteColumn, _ = cfg.With["soft_delete_column"].(string)
	}
	return p
}
