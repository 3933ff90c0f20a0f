package sink

// Decode and map: one Kafka record into a Record, through the decoder (waiting out an
// unavailable schema source), the sink's delete and truncate policies, its filter and its
// mapping. A record that cannot be decoded or mapped gets a reason for the dead-letter topic.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
)

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
	if _, ok := s.barrierCopy(kr); ok && (s.coordinated || kr.Partition != 0) {
		// A truncate's copy: the live sink and replays apply it once every partition reached
		// it (see barriers); other callers (a dead-letter re-drive) at its place in partition
		// 0 only.
		return Record{}, false, "", nil
	}
	rows := s.cfg.Envelope == config.EnvelopeNone
	if kr.Value == nil && !rows {
		return Record{}, false, "", nil // tombstone: the delete event before it did the work
	}
	if kr.Value == nil && bytes.Equal(kr.Key, kafka.TruncateKey) {
		if _, copied := kafka.TruncateCopyOf(kr); !copied {
			// What the kafka connector wrote for a truncate before it wrote copies: one record
			// in one partition, which cannot be ordered against the rows of the others.
			return Record{}, false, "a truncate written by an older backflow's kafka connector cannot be applied from a topic of rows: " +
				"it is one record in one partition, unordered against the others; read the change topics it came from", nil
		}
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
	if rows && s.cfg.VersionColumn != "" && ev.Op != change.OpDelete && ev.Source.LSN == 0 {
		return Record{}, false, "version_column " + s.cfg.VersionColumn + " needs each row's source LSN, and this row has none: " +
			"add it to the rows (ExtractNewRecordState add.fields=lsn writes __lsn)", nil
	}
	s.warnKeyMoves(ev.Table)
	hold := func(ev *change.Event) (map[string]any, bool, error) { return s.holdMapping(ctx, kr, ev) }
	r, skip, ferr := s.mapEvent(Record{Event: ev, Topic: kr.Topic, Partition: kr.Partition, Offset: kr.Offset}, hold)
	switch {
	case ctx.Err() != nil:
		return Record{}, false, "", ctx.Err() // stopping while the record was held
	case ferr != nil:
		return Record{}, false, ferr.Error(), nil
	}
	return r, skip == "", "", nil
}

// warnKeyMoves warns, once per table, when a key field of the target reads a column outside the
// source table's key (a CRM keyed by an email column of a table keyed by id). An update that
// changes that column writes the row under its new key, and the row under the old key stays in
// the target: the update does not carry the old value to remove it by.
func (s *Sink) warnKeyMoves(t *change.Table) {
	if t == nil || !s.keysChecked.first(t) {
		return
	}
	field, col, ok := s.mapping.KeyFromNonKey(t)
	if !ok {
		return
	}
	var key []string
	for _, c := range t.KeyColumns() {
		key = append(key, c.Name)
	}
	s.log.Warn("a key field of the target reads a column outside the source table's key: an update that changes "+
		"the column writes the row under a new key and leaves the row under the old one in the target; key the target "+
		"by the source key's columns, or keep the column unchanging",
		zap.String("table", t.QualifiedName()), zap.String("key_field", field), zap.String("column", col), zap.Strings("source_key", key))
}

// keysChecked is the set of tables (schema and name: a table's shape changes its *change.Table)
// warnKeyMoves has looked at. It runs for every record: its lookup allocates nothing.
type keysChecked struct {
	mu   sync.Mutex
	seen map[[2]string]bool
}

// first reports whether t is seen for the first time, and notes it.
func (k *keysChecked) first(t *change.Table) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	name := [2]string{t.Schema, t.Name}
	if k.seen[name] {
		return false
	}
	if k.seen == nil {
		k.seen = map[[2]string]bool{}
	}
	k.seen[name] = true
	return true
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
		if !s.filteredOutRemoves(ev) {
			return Record{}, skipFilter, nil
		}
		if fields, err = s.mapping.Removal(ev); err != nil {
			return Record{}, "", err
		}
		r.Op = OpDelete
	}
	if reason := s.fill(&r, fields); reason != "" {
		return Record{}, "", errors.New(reason)
	}
	s.addVersion(&r)
	return r, "", nil
}

// filteredOutRemoves says whether ev, which the filter rejected, removes its row from the
// target: an update does (on_filter_out: delete) when the filter selects rows (reads only the
// row: mapping.FilterSelectsRows), since its row may be there from when it passed; through
// on_delete, so ignore leaves the row and soft_delete marks it. So does a re-snapshot's read
// (source.snapshot "incremental"): capture re-reads a table after a rename swap, a lost slot or
// on request, when the target holds the rows as they were, and a row that no longer passes must
// not stay. An insert or an initial snapshot's read has no earlier version in the stream, and a
// filter of changes (reading before, op or source) says nothing about the row: those are
// skipped.
func (s *Sink) filteredOutRemoves(ev *change.Event) bool {
	replaces := ev.Op == change.OpUpdate || (ev.Op == change.OpRead && ev.Source.Snapshot == change.SnapshotIncremental)
	return replaces && s.mapping.FilterSelectsRows() &&
		s.cfg.OnFilterOut != config.OnFilterOutIgnore && s.cfg.OnDelete != config.OnDeleteIgnore
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
	defer s.waits.begin(kr.Topic, kr.Partition, "schema source unavailable: "+err.Error())() // not a stall
	return backoff.Retry(ctx, func() (*change.Event, error) {
		attempt++
		ev, err := s.decode(ctx, kr)
		if err != nil && !errors.Is(err, codec.ErrUnavailable) {
			return nil, backoff.Permanent(err)
		}
		return ev, err
	}, backoff.WithBackOff(transientBackOff()), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, d time.Duration) {
		s.metrics.Retry(s.cfg.Name)
		s.waits.note(TopicPartition{kr.Topic, kr.Partition}, "schema source unavailable: "+err.Error(), false)
		s.log.Warn("schema source unavailable; retrying the record", zap.String("topic", kr.Topic),
			zap.Int32("partition", kr.Partition), zap.Int64("offset", kr.Offset), zap.Int("attempt", attempt),
			zap.Duration("in", d), zap.Error(err))
	}))
}

// decode decodes a record, reading newer schemas once when the writer schema is not known yet.
// A schema still unknown after the schema topic was read to its end is the record's fault; one
// unknown because the topic could not be read is codec.ErrUnavailable.
// Topics of bare rows (envelope: none) are read as rows.
func (s *Sink) decode(ctx context.Context, kr *kgo.Record) (*change.Event, error) {
	decode := s.dec.Decode
	if s.cfg.Envelope == config.EnvelopeNone {
		if _, ok := kafka.TruncateCopyOf(kr); ok {
			return truncateOfRows(kr.Topic), nil
		}
		meta := rowHeaders(kr.Headers)
		decode = func(ctx context.Context, topic string, key, value []byte) (*change.Event, error) {
			return s.dec.DecodeRow(ctx, topic, key, value, meta)
		}
	}
	ev, err := decode(ctx, kr.Topic, kr.Key, kr.Value)
	if errors.Is(err, codec.ErrUnknownSchema) && !errors.Is(err, codec.ErrUnavailable) {
		if rerr := s.schemas.refresh(ctx); rerr != nil {
			return nil, fmt.Errorf("%w: %w, and reading the schema topic to find it failed: %w", codec.ErrUnavailable, err, rerr)
		}
		ev, err = decode(ctx, kr.Topic, kr.Key, kr.Value)
	}
	return ev, err
}

// rowHeaders are the headers that may carry a row's metadata (Debezium's ExtractNewRecordState
// with add.headers: "__op", "__lsn", …), nil when there are none.
func rowHeaders(hs []kgo.RecordHeader) map[string]string {
	var meta map[string]string
	for _, h := range hs {
		if strings.HasPrefix(h.Key, "__") {
			if meta == nil {
				meta = make(map[string]string, 2)
			}
			meta[h.Key] = string(h.Value)
		}
	}
	return meta
}

// truncateOfRows is the truncate a copy on a topic of rows stands for (the kafka connector
// writes them as capture does, see kafka.TruncateRecords): it carries no table, and the
// connector truncates the target it was given.
func truncateOfRows(topic string) *change.Event {
	return &change.Event{Op: change.OpTruncate, Table: &change.Table{}, Source: change.Source{Name: topic}}
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
