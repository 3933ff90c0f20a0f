package sink

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
)

// Counts says what happened to a run of records.
type Counts struct {
	Records      int // records read (tombstones included)
	Applied      int // records the target applied (after coalescing)
	Filtered     int // records the filter or the delete policy skipped
	DeadLettered int // records sent to the dead-letter topic (or collected, see CollectFailures)
}

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	c.Records += o.Records
	c.Applied += o.Applied
	c.Filtered += o.Filtered
	c.DeadLettered += o.DeadLettered
}

// Process applies a run of records of one topic partition, in offset order, exactly as the live
// sink does: in batches of max_records, each decoded, mapped, filtered, coalesced and applied with
// retries and bisection, dead-lettering what cannot be applied. The next batch is prepared while
// the target applies the current one, so that the sink's work and the target's overlap. It
// returns once every record is applied, skipped or dead-lettered; it does not commit Kafka
// offsets (the caller does). Call Prepare first.
func (s *Sink) Process(ctx context.Context, recs []*kgo.Record) (Counts, error) {
	size := max(s.cfg.Batch.MaxRecords, 1)
	if len(recs) <= size {
		if len(recs) == 0 {
			return Counts{}, nil
		}
		return s.processPartition(ctx, recs)
	}
	g, gctx := errgroup.WithContext(ctx)
	ready := make(chan *prepared, 1)
	g.Go(func() error {
		defer close(ready)
		for len(recs) > 0 {
			n := min(len(recs), size)
			p, err := s.prepare(gctx, recs[:n])
			if err != nil {
				return err
			}
			select {
			case ready <- p:
			case <-gctx.Done():
				return gctx.Err()
			}
			recs = recs[n:]
		}
		return nil
	})
	var total Counts
	g.Go(func() error {
		for p := range ready {
			c, err := s.apply(gctx, p)
			if err != nil {
				return err
			}
			total.Add(c)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return Counts{}, err
	}
	return total, nil
}

// processPartition prepares and applies one batch of a partition's records.
func (s *Sink) processPartition(ctx context.Context, recs []*kgo.Record) (Counts, error) {
	p, err := s.prepare(ctx, recs)
	if err != nil {
		return Counts{}, err
	}
	return s.apply(ctx, p)
}

// prepared is a batch of a partition's records, decoded, mapped, filtered and coalesced, or
// scanned into a RowBuffer.
type prepared struct {
	recs     []*kgo.Record // as read
	mapped   []Record      // before coalescing
	batch    *Batch
	filtered int
	bad      []badRecord // for the dead-letter topic
	commits  []time.Time // when the records' changes were committed in the source
	rows     RowBuffer   // the records' rows, for the connector's RowLoader (batch has no Records)
	loaded   int         // rows in rows
}

// badRecord is a record that cannot be applied, and why.
type badRecord struct {
	rec    *kgo.Record
	reason string
}

// prepare turns one batch of a partition's records into a coalesced Batch, or into a RowBuffer
// when the batch can take the connector's fast path; it writes nothing.
func (s *Sink) prepare(ctx context.Context, recs []*kgo.Record) (*prepared, error) {
	if p := s.prepareRows(ctx, recs); p != nil {
		return p, nil
	}
	return s.prepareRecords(ctx, recs)
}

// prepareRecords decodes, maps, filters and coalesces a batch into Records.
func (s *Sink) prepareRecords(ctx context.Context, recs []*kgo.Record) (*prepared, error) {
	p := &prepared{recs: recs, mapped: make([]Record, 0, len(recs))}
	for _, kr := range recs {
		r, keep, reason, err := s.safeToRecord(ctx, kr)
		switch {
		case err != nil:
			return nil, err
		case reason != "":
			p.bad = append(p.bad, badRecord{kr, reason})
		case !keep:
			p.filtered++
		default:
			p.mapped = append(p.mapped, r)
		}
	}
	p.commits = commitTimes(p.mapped)
	p.batch = s.batchOf(recs)
	p.batch.Records = coalesce(p.mapped)
	return p, nil
}

// batchOf returns an empty Batch for a run of one partition's records.
func (s *Sink) batchOf(recs []*kgo.Record) *Batch {
	last := recs[len(recs)-1]
	return &Batch{Sink: s.offsetName, Topic: last.Topic, Partition: last.Partition, NextOffset: last.Offset + 1}
}

// apply dead-letters a prepared batch's bad records and applies the rest. It returns only once
// every record is applied, filtered or dead-lettered.
func (s *Sink) apply(ctx context.Context, p *prepared) (Counts, error) {
	if p.rows != nil {
		start := time.Now()
		done, err := s.load(ctx, p)
		switch {
		case err != nil:
			return Counts{}, err
		case done:
			return s.report(p, p.loaded, 0, start), nil
		}
		if p, err = s.prepareRecords(ctx, p.recs); err != nil {
			return Counts{}, err
		}
	}
	for _, b := range p.bad {
		if err := s.dlq.send(ctx, b.rec, b.reason); err != nil {
			return Counts{}, err
		}
	}
	batch, dlq := p.batch, len(p.bad)
	start := time.Now()
	rejected, err := s.applyBatch(ctx, batch)
	if err != nil {
		return Counts{}, err
	}
	return s.report(p, len(batch.Records)-rejected, dlq+rejected, start), nil
}

// report counts, measures and logs an applied batch.
func (s *Sink) report(p *prepared, applied, dlq int, start time.Time) Counts {
	s.stats.add(applied, p.filtered, dlq)
	s.metrics.Batch(s.cfg.Name, applied, p.filtered, dlq, time.Since(start), p.commits)
	s.log.Info("applied batch", zap.String("topic", p.batch.Topic), zap.Int32("partition", p.batch.Partition),
		zap.Int("records", len(p.recs)), zap.Int("applied", applied), zap.Int("filtered", p.filtered),
		zap.Int("dead_lettered", dlq), zap.Int64("next_offset", p.batch.NextOffset))
	return Counts{Records: len(p.recs), Applied: applied, Filtered: p.filtered, DeadLettered: dlq}
}

// commitTimes returns when each record's change was committed in the warehouse.
func commitTimes(records []Record) []time.Time {
	out := make([]time.Time, 0, len(records))
	for _, r := range records {
		if r.Event != nil && r.Event.Source.TsMs > 0 {
			out = append(out, time.UnixMilli(r.Event.Source.TsMs))
		}
	}
	return out
}

// safeToRecord is toRecord, with a panic while decoding or mapping the record made that record's
// reason for the dead-letter topic: one malformed message must not stop the sink (and, the
// offsets being uncommitted, stop it again after every restart).
func (s *Sink) safeToRecord(ctx context.Context, kr *kgo.Record) (r Record, keep bool, reason string, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, keep, reason, err = Record{}, false, panicReason(p), nil
		}
	}()
	return s.toRecord(ctx, kr)
}

// panicReason spells a recovered panic for a dead letter or a log line: its value and the
// innermost frames of ours that raised it. Call it from the deferred function that recovered.
func panicReason(p any) string {
	var pcs [32]uintptr
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs[:])]) // from the panicking frames
	var at []string
	for len(at) < 3 {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "runtime.") && f.Function != "" {
			at = append(at, fmt.Sprintf("%s (%s:%d)", f.Function[strings.LastIndexByte(f.Function, '/')+1:], filepath.Base(f.File), f.Line))
		}
		if !more {
			break
		}
	}
	return fmt.Sprintf("panic: %v at %s", p, strings.Join(at, " < "))
}

// toRecord decodes and maps one Kafka record. keep is false for tombstones, filtered records and
// ignored deletes; a non-empty reason means the record cannot be applied and goes to the
// dead-letter topic. err is for failures that must stop the sink.
func (s *Sink) toRecord(ctx context.Context, kr *kgo.Record) (r Record, keep bool, reason string, err error) {
	if kr.Value == nil {
		return Record{}, false, "", nil // tombstone: the delete event before it did the work
	}
	if _, ok := s.barrierCopy(kr); ok && (s.coordinated || kr.Partition != 0) {
		// A truncate's copy: the live sink and replays apply it once every partition reached
		// it (see barriers); other callers (a dead-letter re-drive) at its place in partition
		// 0 only.
		return Record{}, false, "", nil
	}
	ev, err := s.decodeWithRetry(ctx, kr)
	switch {
	case ctx.Err() != nil:
		return Record{}, false, "", ctx.Err() // stopping: says nothing about the record
	case err != nil:
		return Record{}, false, "decode: " + err.Error(), nil
	}
	if ev == nil {
		return Record{}, false, "", nil
	}
	hold := func(ev *change.Event) (map[string]any, bool, error) { return s.holdMapping(ctx, kr, ev) }
	r, skip, ferr := s.mapEvent(Record{Event: ev, Topic: kr.Topic, Partition: kr.Partition, Offset: kr.Offset, raw: kr}, hold)
	switch {
	case ctx.Err() != nil:
		return Record{}, false, "", ctx.Err() // stopping while the record was held
	case ferr != nil:
		return Record{}, false, ferr.Error(), nil
	}
	return r, skip == "", "", nil
}

// Why mapEvent skips an event (the Preview prints them).
const (
	skipTruncate = "on_truncate: ignore"
	skipDelete   = "on_delete: ignore"
	skipFilter   = "filter"
)

// mapEvent runs the sink's on_delete, on_truncate, filter and mapping (through apply: the
// running sink holds a record that lacks a mapped column, a preview does not) on the decoded
// event of r. skip says why an event is not written (empty when it is); err is a failure of the
// record (the mapping failed, a key field is null), which sends it to the dead-letter topic.
func (s *Sink) mapEvent(r Record, apply func(*change.Event) (map[string]any, bool, error)) (out Record, skip string, err error) {
	ev := r.Event
	switch ev.Op {
	case change.OpTruncate:
		r.Op = OpTruncate
		if s.cfg.OnTruncate == config.OnTruncateIgnore {
			return Record{}, skipTruncate, nil
		}
		return r, "", nil
	case change.OpDelete:
		if s.cfg.OnDelete == config.OnDeleteIgnore {
			return Record{}, skipDelete, nil
		}
		r.Op = OpDelete
	default:
		r.Op = OpUpsert
	}
	fields, keep, err := apply(ev)
	if err != nil {
		return Record{}, "", err
	}
	if !keep {
		return Record{}, skipFilter, nil
	}
	if reason := s.fill(&r, fields); reason != "" {
		return Record{}, "", errors.New(reason)
	}
	s.addVersion(&r)
	return r, "", nil
}

// fill sets the record's key and fields from the mapped values, turning a delete into an upsert
// of the soft-delete column when the sink asks for it.
func (s *Sink) fill(r *Record, fields map[string]any) string {
	r.Key = make(map[string]any, len(s.cfg.Key))
	for _, k := range s.cfg.Key {
		v, ok := fields[k]
		if !ok || v == nil {
			return fmt.Sprintf("map: key field %q is null or missing", k)
		}
		r.Key[k] = v
	}
	r.KeyOrder = s.cfg.Key
	if r.Op == OpDelete {
		if s.cfg.OnDelete != config.OnDeleteSoftDelete {
			return ""
		}
		col, _ := s.cfg.With["soft_delete_column"].(string)
		r.Op, r.Fields = OpUpsert, map[string]any{col: true}
		for k, v := range r.Key {
			r.Fields[k] = v
		}
		r.FieldOrder = append(append([]string{}, r.KeyOrder...), col)
		return ""
	}
	r.Fields = fields
	if all := s.allFields(); all != nil && len(fields) == len(all) {
		r.FieldOrder = all // every mapped field present: the shared order, no per-record sort
	} else {
		r.FieldOrder = s.mapping.Order(fields)
	}
	return ""
}

// decodeWithRetry decodes a record, retrying with backoff while the schema source is unavailable
// (codec.ErrUnavailable): an outage of the registry or of the schema topic says nothing about the
// record, and dead-lettering it would let later changes of its key overtake it. The partition
// waits, as it does for a target that is down. It returns only errors about the record itself,
// or ctx's.
func (s *Sink) decodeWithRetry(ctx context.Context, kr *kgo.Record) (*change.Event, error) {
	ev, err := s.decode(ctx, kr)
	if err == nil || !errors.Is(err, codec.ErrUnavailable) {
		return ev, err
	}
	attempt := 1
	defer s.waits.begin(kr.Topic, kr.Partition)() // waiting on the schema source: not a stall
	return backoff.Retry(ctx, func() (*change.Event, error) {
		attempt++
		ev, err := s.decode(ctx, kr)
		if err != nil && !errors.Is(err, codec.ErrUnavailable) {
			return nil, backoff.Permanent(err)
		}
		return ev, err
	}, backoff.WithBackOff(transientBackOff()), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, d time.Duration) {
		s.metrics.Retry(s.cfg.Name)
		s.log.Warn("schema source unavailable; retrying the record", zap.String("topic", kr.Topic),
			zap.Int32("partition", kr.Partition), zap.Int64("offset", kr.Offset), zap.Int("attempt", attempt),
			zap.Duration("in", d), zap.Error(err))
	}))
}

// decode decodes a record, reading newer schemas once when the writer schema is not known yet.
// A schema still unknown after the schema topic was read to its end is the record's fault; one
// unknown because the topic could not be read is codec.ErrUnavailable.
func (s *Sink) decode(ctx context.Context, kr *kgo.Record) (*change.Event, error) {
	ev, err := s.dec.Decode(ctx, kr.Topic, kr.Key, kr.Value)
	if errors.Is(err, codec.ErrUnknownSchema) && !errors.Is(err, codec.ErrUnavailable) {
		if rerr := s.schemas.refresh(ctx); rerr != nil {
			return nil, fmt.Errorf("%w: %w, and reading the schema topic to find it failed: %w", codec.ErrUnavailable, err, rerr)
		}
		ev, err = s.dec.Decode(ctx, kr.Topic, kr.Key, kr.Value)
	}
	return ev, err
}

// coalesce keeps each key's last state, in the order keys first appear, so a batch touches a row
// once (PostgreSQL rejects ON CONFLICT DO UPDATE touching a row twice in one statement). A delete
// stays a delete; an upsert lacking unchanged-TOAST fields inherits them from an earlier upsert
// of the same batch. A truncate ends a segment: nothing is coalesced across it. A batch without
// repeated keys (a backfill, most streams) is returned as it is.
func coalesce(in []Record) []Record {
	seen := make(map[recordKey]int, len(in))
	dup := false
	for _, r := range in {
		if r.Op == OpTruncate {
			clear(seen)
			continue
		}
		k := keyOf(r)
		if _, dup = seen[k]; dup {
			break
		}
		seen[k] = 0
	}
	if !dup {
		return in
	}
	clear(seen)
	out := make([]Record, 0, len(in))
	for _, r := range in {
		if r.Op == OpTruncate {
			out = append(out, r)
			clear(seen)
			continue
		}
		k := keyOf(r)
		i, ok := seen[k]
		if !ok {
			seen[k] = len(out)
			out = append(out, r)
			continue
		}
		if r.Op == OpUpsert && out[i].Op == OpUpsert {
			r = inherit(r, out[i])
		}
		out[i] = r
	}
	return out
}

// recordKey identifies a record's key within a batch. Keys of up to four strings, integers and
// booleans are compared as they are, without allocating; others by their spelling (keyString).
type recordKey struct {
	kinds [4]byte // 's' string, 'i' integer or boolean
	strs  [4]string
	ints  [4]int64
	str   string
}

func keyOf(r Record) recordKey {
	var k recordKey
	if len(r.KeyOrder) > len(k.kinds) {
		return recordKey{str: keyString(r)}
	}
	for i, name := range r.KeyOrder {
		switch v := r.Key[name].(type) {
		case string:
			k.kinds[i], k.strs[i] = 's', v
		case int64:
			k.kinds[i], k.ints[i] = 'i', v
		case int32: // the same key whether a column is int or bigint
			k.kinds[i], k.ints[i] = 'i', int64(v)
		case int:
			k.kinds[i], k.ints[i] = 'i', int64(v)
		case bool:
			k.kinds[i] = 'b'
			if v {
				k.ints[i] = 1
			}
		default:
			return recordKey{str: keyString(r)}
		}
	}
	return k
}

// inherit fills the fields r lacks from prev: a field absent because its TOAST value did not
// change has prev's value.
func inherit(r, prev Record) Record {
	if len(r.Fields) >= len(prev.Fields) {
		return r
	}
	merged := make(map[string]any, len(prev.Fields))
	for k, v := range prev.Fields {
		merged[k] = v
	}
	for k, v := range r.Fields {
		merged[k] = v
	}
	r.Fields, r.FieldOrder = merged, prev.FieldOrder
	return r
}

// keyString identifies a record's key within a batch; the common key types skip fmt, which is
// measurable on the hot path.
func keyString(r Record) string {
	var b strings.Builder
	for _, k := range r.KeyOrder {
		switch v := r.Key[k].(type) {
		case string:
			b.WriteString(v)
		case int32:
			b.WriteString(strconv.FormatInt(int64(v), 10))
		case int64:
			b.WriteString(strconv.FormatInt(v, 10))
		default:
			fmt.Fprintf(&b, "%T:%v", v, v)
		}
		b.WriteByte(0)
	}
	return b.String()
}

// allFields is the order of a record that has every mapped field (nil for the identity mapping).
func (s *Sink) allFields() []string {
	s.fieldsOnce.Do(func() { s.fieldOrder = s.mapping.Fields() })
	return s.fieldOrder
}

// addVersion puts the change's source LSN into the sink's version column of an upsert.
func (s *Sink) addVersion(r *Record) {
	vc := s.cfg.VersionColumn
	if vc == "" || r.Op != OpUpsert {
		return
	}
	fields := make(map[string]any, len(r.Fields)+1)
	for k, v := range r.Fields {
		fields[k] = v
	}
	fields[vc] = r.Event.Source.LSN
	r.Fields, r.FieldOrder = fields, append(slices.Clip(r.FieldOrder), vc)
}
