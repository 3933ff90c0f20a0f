// Package redis is the sink connector for Redis: each row becomes one Redis key, named by a key
// template over the sink's key fields, holding either a hash of the row's fields (mode hash, the
// default) or a JSON object (mode json).
//
// Semantics, per record of a batch:
//   - upsert: hash mode HSETs every present field (a nil value HDELs the field); fields absent
//     from the record (unchanged TOAST values) are not written, so the hash keeps them. json mode
//     merges the record's fields into the stored object (read under WATCH, written in the same
//     optimistic transaction), so absent fields keep their stored values too. With ttl, the key's
//     expiry is set again on every upsert.
//   - delete: DEL of the key. (With on_delete soft_delete the runtime turns deletes into upserts
//     of the soft-delete field.)
//   - truncate: the keys matching the template's glob (literals kept, placeholders as '*') are
//     found with SCAN, and those the template can render (owns: escaped values between the
//     literals) are removed with UNLINK, so keys of other templates sharing the prefix stay. A
//     template that starts with a placeholder has no prefix to bound the scan; truncates are
//     then refused and dead-lettered.
//
// with.key is a template such as "stock:{sku}:{warehouse}": every placeholder must be one of the
// sink's key fields and every key field must appear, so that distinct rows never share a key.
// In keys, '%' and the separators (':' and the template's other non-alphanumeric ASCII
// characters) inside values are escaped as %XX (see keyTemplate), so no two rows share a key.
// Values, in keys and hash fields alike: strings and []byte as they are, numbers in their
// shortest exact form, booleans "true"/"false", time.Time RFC 3339 UTC with microseconds, arrays
// and maps as JSON. json mode stores the same forms as JSON values, times included.
//
// The partition's next offset is stored once the batch is in, so that a Redis that lost data is
// written again (offsets.go).
//
// A batch's writes (between truncates) are sent as one MULTI/EXEC transaction in one round trip
// (json mode adds a WATCH and a pipelined read before it), so readers never see half a batch.
// Redis runs the other commands of a transaction when one fails (WRONGTYPE, say): such records
// are reported in a *sink.PartialError and the rest of the batch stands (a ttl's PEXPIRE may
// still have run on the rejected key). Connection errors,
// timeouts and replies such as LOADING, READONLY, CLUSTERDOWN, TRYAGAIN, OOM or NOAUTH fail the
// whole batch as retryable. Apply is idempotent: applying a batch again gives the same state.
package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// watchAttempts bounds the optimistic retries of a json-mode batch whose keys changed under it.
const watchAttempts = 3

var _ sink.Factory = New

// connector applies batches to one Redis database.
type connector struct {
	sinkName string // for fence keys (see fence)
	client   *goredis.Client
	cfg      *config
	log      *zap.Logger
}

// New configures and opens a redis connector from the sink's parameters (settings: see
// Descriptor). It does not connect: the first Apply does, so an unreachable server shows up as a
// retryable Apply error.
func New(ctx context.Context, p sink.Params) (sink.Connector, error) {
	return Descriptor().Factory()(ctx, p)
}

// newConnector builds the client of a configured sink.
func newConnector(cfg *config, p sink.Params) *connector {
	cfg.opts.ContextTimeoutEnabled = true
	log := p.Logger(zap.String("redis", cfg.redacted), zap.Int("db", cfg.opts.DB))
	if cfg.key.prefix() == "" {
		log.Warn("key template starts with a placeholder: truncates will be refused", zap.String("key", cfg.key.text))
	}
	log.Info("redis sink configured", zap.String("key", cfg.key.text), zap.String("mode", cfg.mode), zap.Duration("ttl", cfg.ttl))
	return &connector{sinkName: p.Sink, client: goredis.NewClient(cfg.opts), cfg: cfg, log: log}
}

// Close releases the connection pool.
func (c *connector) Close() error {
	if err := c.client.Close(); err != nil {
		return fmt.Errorf("redis: close: %w", err)
	}
	return nil
}

// Apply writes the batch: the runs of records between truncates each in one transaction, and
// each truncate in its place; then, when every record went in, the batch's next offset (see
// offsets.go).
func (c *connector) Apply(ctx context.Context, b *sink.Batch) error {
	f := c.fenceOf(b)
	sinkName := b.Sink
	if sinkName == "" {
		sinkName = c.sinkName
	}
	var failed []sink.RecordError
	start := 0
	for i, r := range b.Records {
		if r.Op != sink.OpTruncate {
			continue
		}
		if err := c.applyRun(ctx, f, b.Records, start, i, &failed); err != nil {
			return err
		}
		if f != nil { // checked, not atomically: a truncate is a scan of many transactions
			if err := f.check(ctx, c.client); err != nil {
				return err
			}
		}
		if err := c.truncate(ctx); err != nil {
			if sink.IsRetryable(err) {
				return err
			}
			failed = append(failed, sink.RecordError{Index: i, Reason: err.Error()})
		}
		start = i + 1
	}
	if err := c.applyRun(ctx, f, b.Records, start, len(b.Records), &failed); err != nil {
		return err
	}
	if len(failed) > 0 {
		// The runtime applies the rejected records again one by one; each stores its offset.
		return &sink.PartialError{Failed: failed}
	}
	return c.storeOffset(ctx, f, b, sinkName)
}

// applyRun writes records[from:to], none of them a truncate, adding rejected records to failed.
func (c *connector) applyRun(ctx context.Context, f *fence, records []sink.Record, from, to int, failed *[]sink.RecordError) error {
	plans := make([]plan, 0, to-from)
	for i := from; i < to; i++ {
		p, err := c.planRecord(&records[i], i)
		if err != nil {
			*failed = append(*failed, sink.RecordError{Index: i, Reason: err.Error()})
			continue
		}
		plans = append(plans, p)
	}
	if len(plans) == 0 {
		return nil
	}
	if c.cfg.mode == ModeJSON {
		return c.execJSON(ctx, f, plans, failed)
	}
	return c.execHash(ctx, f, plans, failed)
}

// wrapBatch wraps a batch-wide failure, marking it retryable when it is transient.
func wrapBatch(what string, err error) error {
	err = fmt.Errorf("redis: %s: %w", what, err)
	if isTransient(err) {
		return sink.Retryable(err)
	}
	return err
}

var errNoPrefix = errors.New("redis: truncate refused: the key template starts with a placeholder, so its pattern would match every key of the database")

// truncate removes every key the template can produce, and only those.
func (c *connector) truncate(ctx context.Context) error {
	if c.cfg.key.prefix() == "" {
		return errNoPrefix
	}
	pattern := c.cfg.key.pattern()
	var cursor uint64
	for {
		keys, next, err := c.client.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return wrapBatch("truncate: scan "+pattern, err)
		}
		keys = slices.DeleteFunc(keys, func(k string) bool { return !c.cfg.key.owns(k) })
		if len(keys) > 0 {
			if err := c.client.Unlink(ctx, keys...).Err(); err != nil {
				return wrapBatch("truncate: unlink", err)
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// jsonDoc is a stored json-mode object, its member values kept as the exact JSON text.
type jsonDoc = map[string]json.RawMessage
