package capture

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// emitter encodes events and hands them to Kafka, registering every record with the tracker so
// that the slot is confirmed only behind acknowledged records.
type emitter struct {
	client  *kgo.Client
	admin   *kadm.Client
	enc     *codec.Encoder
	tr      *tracker
	loss    *kafka.OffsetWatch // told every acknowledged record's offset
	prefix  string
	topics  config.Topics
	mu      sync.Mutex // guards ensured, tableTopics and parts: dead letters ensure their topic from Kafka's goroutines
	ensured map[string]bool
	// tableTopics are the tables' topics ensured in this run, which checkTopics watches.
	tableTopics map[string]bool
	parts       map[string]int32 // partitions of the topics, for truncates when the broker cannot say
	book        *partitionBook   // checks each topic ensured for partitions added while capture was not running
	// wake and onWait keep the replication connection alive while the tracker is full.
	wake    <-chan time.Time
	onWait  func() error
	count   uint64
	metrics *observe.Metrics
	log     *zap.Logger

	topicNames sync.Map // *change.Table -> its topic
	// changes holds each table and op's metrics recorder, the last one used aside (a snapshot's
	// chunk and a transaction's changes are mostly of one kind). Only the emitting goroutine
	// reads them; the records' promises use the recorder given to them.
	changes     map[changeKind]*observe.CaptureChanges
	lastKind    changeKind
	lastChanges *observe.CaptureChanges
	// sendCtx is the context records are produced with, detached from the last caller's ctx
	// (which is nearly always the same): records outlive a shutdown's cancellation.
	sendCtx, sendCtxOf context.Context
	promiseFn          func(*kgo.Record, error) // e.promise, once
	// limits holds each topic's max.message.bytes; the producer's batches follow it.
	limits *topicLimits
	// oversize sends, one at a time, the records larger than their topic's limit before
	// compression, so that the broker judges them compressed; opened on first use.
	oversize     func() (*kgo.Client, error)
	oversizeOnce sync.Once
	oversizeCl   *kgo.Client
	oversizeErr  error
	// dlq is capture's dead-letter topic.
	dlq string
	// alone is the span this run sends one record at a time (after the previous run had a
	// record refused for good in a batch); refused notes such a span for the next run.
	alone   aloneSpan
	refused func(aloneSpan)
	maxLSN  atomic.Int64 // highest stream LSN emitted, for refused
}

// topic returns the change topic of a table.
func (e *emitter) topic(t *change.Table) string {
	if name, ok := e.topicNames.Load(t); ok {
		return name.(string) // a table's name is built once per shape: this runs per record
	}
	name := e.topicOf(t.Schema, t.Name)
	e.topicNames.Store(t, name)
	return name
}

// topicOf is the topic of table schema.name.
func (e *emitter) topicOf(schema, name string) string {
	return config.TopicName(e.prefix + "." + schema + "." + name)
}

// changeKind is a table and an op, for the metrics of acknowledged changes.
type changeKind struct {
	t  *change.Table
	op change.Op
}

// changeRecorder returns the metrics recorder of ev's table and op. Only the emitting goroutine
// calls it.
func (e *emitter) changeRecorder(ev *change.Event) *observe.CaptureChanges {
	if e.metrics == nil {
		return nil
	}
	k := changeKind{ev.Table, ev.Op}
	if k == e.lastKind {
		return e.lastChanges
	}
	if e.changes == nil {
		e.changes = map[changeKind]*observe.CaptureChanges{}
	}
	c, ok := e.changes[k]
	if !ok {
		c = e.metrics.CaptureChangesOf(ev.Table.QualifiedName(), string(ev.Op))
		e.changes[k] = c
	}
	e.lastKind, e.lastChanges = k, c
	return c
}

// countAcked counts n changes like ev that Kafka acknowledged by now, produced with
// callerCounts. Only the emitting goroutine calls it.
func (e *emitter) countAcked(ev *change.Event, n int, now time.Time) {
	e.changeRecorder(ev).AckedMany(now, n)
}

// detached returns ctx without its cancellation, reusing the last one made for the same ctx.
// Only the emitting goroutine calls it.
func (e *emitter) detached(ctx context.Context) context.Context {
	if ctx != e.sendCtxOf {
		e.sendCtx, e.sendCtxOf = context.WithoutCancel(ctx), ctx
	}
	return e.sendCtx
}

// ensureTopic creates a table's topic the first time the table is seen.
func (e *emitter) ensureTopic(ctx context.Context, t *change.Table) error {
	name := e.topic(t)
	if err := e.ensureTopicName(ctx, name, e.topics.CleanupPolicy); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tableTopics == nil {
		e.tableTopics = map[string]bool{}
	}
	e.tableTopics[name] = true
	return nil
}

// emit publishes one event, followed by a tombstone when it is a delete so that compacted
// topics keep exactly the live rows. An event whose key has a NULL column goes to the dead-letter
// topic instead: it cannot be keyed, and failing on it would stop capture at it forever.
func (e *emitter) emit(ctx context.Context, ev *change.Event) error {
	rec, err := e.encode(ctx, ev)
	if err != nil {
		return err
	}
	return e.emitEncoded(ctx, rec)
}

// encodedEvent is an event with its record's key and value (none when its key has a NULL column).
// slot, when set, is where the record is built (snapshot chunks allocate theirs together).
type encodedEvent struct {
	ev         *change.Event
	topic      string
	key, value []byte
	nullCol    string
	slot       *recordSlot
	// ts is the record's timestamp, zero for the time of producing it: a large transaction's
	// records, produced in a burst, share one clock read per batch.
	ts time.Time
	// undecodable says why a snapshot's row could not be decoded or encoded, raw is the row as
	// PostgreSQL wrote it: a dead letter goes in its place.
	undecodable string
	raw         []byte
	// callerCounts leaves the change's count to the caller (a snapshot counts a chunk once
	// Kafka has all of it): no clock read and no metrics per acknowledgement.
	callerCounts bool
}

// recordSlot is a record and what its acknowledgement needs, allocated together.
type recordSlot struct {
	rec kgo.Record
	fl  inFlight
}

// inFlight is what a record's acknowledgement needs. It is also the record's context (the
// produce context detached from cancellation, these fields beside it): one promise serves every
// record, with no closure allocated per record.
type inFlight struct {
	context.Context
	seq              uint64
	ev               *change.Event
	changes          *observe.CaptureChanges
	alone, tombstone bool
}

// encode encodes ev for emitEncoded, or notes the NULL key column that makes it a dead letter.
func (e *emitter) encode(ctx context.Context, ev *change.Event) (encodedEvent, error) {
	rec := encodedEvent{ev: ev, topic: e.topic(ev.Table)}
	if col, ok := nullKey(ev); ok {
		rec.nullCol = col
		return rec, nil
	}
	var err error
	if rec.key, rec.value, err = e.enc.Encode(ctx, rec.topic, ev); err != nil {
		return rec, fmt.Errorf("encode %s event of %s: %w", ev.Op, ev.Table.QualifiedName(), err)
	}
	return rec, nil
}

// emitEncoded is emit of an event encode encoded.
func (e *emitter) emitEncoded(ctx context.Context, rec encodedEvent) error {
	ev := rec.ev
	if rec.undecodable != "" {
		return e.deadLetterNow(ctx, deadLetter{ev: ev, value: rec.raw, reason: reasonUndecodable, detail: rec.undecodable})
	}
	if rec.nullCol != "" {
		return e.deadLetterNow(ctx, deadLetter{
			ev: ev, reason: reasonNullKey,
			detail: fmt.Sprintf("key column %q of %s is NULL: the row cannot be keyed (check source.postgres.keys and the table's replica identity)", rec.nullCol, ev.Table.QualifiedName()),
		})
	}
	alone := e.alone.covers(ev)
	if ev.Source.Snapshot == "false" && ev.Source.LSN > e.maxLSN.Load() {
		e.maxLSN.Store(ev.Source.LSN)
	}
	slot := rec.slot
	if slot == nil {
		slot = new(recordSlot)
	}
	slot.rec = kgo.Record{Topic: rec.topic, Key: rec.key, Value: rec.value, Timestamp: rec.ts}
	if err := e.produceIn(ctx, &slot.rec, &slot.fl, ev, false, alone, rec.callerCounts); err != nil {
		return err
	}
	e.count++
	if ev.Op == change.OpDelete {
		return e.produce(ctx, rec.topic, rec.key, nil, ev, true, alone)
	}
	return nil
}

// emitTruncate publishes a truncate of ev's table on every partition of its topic, one copy each
// with id and the number of partitions in its headers (kafka.TruncateRecords), so that sinks
// apply it at its place in every partition. Each copy is a tracked record like any other: the
// slot moves past the truncate only once all are acknowledged, and a restart writes them all
// again, with the same id.
func (e *emitter) emitTruncate(ctx context.Context, ev *change.Event, id string) error {
	topic := e.topic(ev.Table)
	_, val, err := e.enc.Encode(ctx, topic, ev)
	if err != nil {
		return fmt.Errorf("encode truncate of %s: %w", ev.Table.QualifiedName(), err)
	}
	n, err := e.partitions(ctx, topic)
	if err != nil {
		return fmt.Errorf("truncate of %s at %s: %w", ev.Table.QualifiedName(), id, err)
	}
	alone := e.alone.covers(ev)
	if ev.Source.LSN > e.maxLSN.Load() {
		e.maxLSN.Store(ev.Source.LSN)
	}
	for _, rec := range kafka.TruncateRecords(context.WithoutCancel(ctx), topic, id, val, n) {
		if err := e.produceRecord(ctx, rec, ev, false, alone); err != nil {
			return err
		}
	}
	e.count++
	return nil
}

// partitions returns how many partitions a topic has: read again at each truncate (partitions
// may have been added since the topic was ensured), the count learned by ensureTopicName when
// the broker cannot say.
func (e *emitter) partitions(ctx context.Context, topic string) (int32, error) {
	n, err := kafka.TopicPartitions(ctx, e.admin, topic)
	if err == nil {
		e.mu.Lock()
		e.parts[topic] = n
		e.mu.Unlock()
		return n, nil
	}
	e.mu.Lock()
	known, ok := e.parts[topic]
	e.mu.Unlock()
	if ok {
		e.log.Warn("cannot read the topic's partitions; writing the truncate to those it had", zap.String("topic", topic),
			zap.Int32("partitions", known), zap.Error(err))
		return known, nil
	}
	return 0, err
}

// reserve is the tracker's reserve that, while the tracker is full, keeps the producer from
// lingering: no record joins its batches before Kafka acknowledges some of those in flight, so a
// linger would only hold up the acknowledgements the wait is for.
func (e *emitter) reserve(ctx context.Context) (uint64, error) {
	if !e.tr.full() {
		return e.tr.reserve(ctx, e.wake, e.onWait)
	}
	var seq uint64
	err := e.unlingered(func() (err error) {
		seq, err = e.tr.reserve(ctx, e.wake, e.onWait)
		return err
	})
	return seq, err
}

// waitAll waits until Kafka has acknowledged every record in flight, which then do not linger.
func (e *emitter) waitAll(ctx context.Context) error {
	return e.unlingered(func() error { return e.tr.wait(ctx, e.wake, e.onWait) })
}

// drain is waitAll without onWait, for callers that must not touch the replication connection
// (a snapshot's, which keeps it idle while its exported snapshot is read).
func (e *emitter) drain(ctx context.Context) error {
	return e.unlingered(func() error { return e.tr.drain(ctx) })
}

// unlingered runs wait while the producer sends its batches as soon as it can: franz-go starts
// no linger while a Flush is under way, not even for records still waiting for their topic's
// partitions or the producer's ID (which a single Flush that returns at once, as sendNow's,
// misses).
func (e *emitter) unlingered(wait func() error) error {
	ctx, stop := context.WithCancel(context.Background())
	flushed := make(chan struct{})
	go func() {
		_ = e.client.Flush(ctx) // its error is the cancellation below: the tracker has the answers
		close(flushed)
	}()
	err := wait()
	stop()
	<-flushed
	return err
}

// sendNow starts sending the batches lingering in the producer without waiting for them to be
// acknowledged: Flush stops every linger before it waits, and with a context that is already done
// it returns at once.
func (e *emitter) sendNow() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = e.client.Flush(ctx) // the context's error: acknowledgements are the tracker's business
}

// produce hands a record of ev (its tombstone when tombstone) to Kafka; ev is counted in the
// metrics once acknowledged. A record too large for its topic before compression, or one that
// must go alone, goes through the oversize producer with nothing else in flight: the broker's
// verdict is then about that record only, and records of one key stay in order across the two
// producers.
func (e *emitter) produce(ctx context.Context, topic string, key, value []byte, ev *change.Event, tombstone, alone bool) error {
	return e.produceRecord(ctx, &kgo.Record{Topic: topic, Key: key, Value: value}, ev, tombstone, alone)
}

// produceRecord is produce for a record built by the caller (a truncate's copy, with its
// partition and headers).
func (e *emitter) produceRecord(ctx context.Context, rec *kgo.Record, ev *change.Event, tombstone, alone bool) error {
	return e.produceIn(ctx, rec, new(inFlight), ev, tombstone, alone, false)
}

// produceIn is produceRecord with the record's inFlight allocated by the caller; callerCounts
// leaves the change's count to the caller (countAcked).
func (e *emitter) produceIn(ctx context.Context, rec *kgo.Record, fl *inFlight, ev *change.Event, tombstone, alone, callerCounts bool) error {
	alone = alone || recordSize(rec.Key, rec.Value) > e.limits.get(rec.Topic)
	cl := e.client
	if alone {
		var err error
		if cl, err = e.oversizeClient(); err != nil {
			return err
		}
		if err := e.waitAll(ctx); err != nil {
			return err
		}
	}
	seq, err := e.reserve(ctx)
	if err != nil {
		return err
	}
	// A change counts once: its tombstone and a truncate's copies but the first do not.
	var changes *observe.CaptureChanges
	if !tombstone && !callerCounts && (ev.Op != change.OpTruncate || rec.Partition == 0) {
		changes = e.changeRecorder(ev)
	}
	*fl = inFlight{Context: e.detached(ctx), seq: seq, ev: ev, changes: changes, alone: alone, tombstone: tombstone}
	// Records outlive a shutdown's cancellation: stopping flushes them and confirms what they cover.
	if rec.Context == nil {
		rec.Context = fl
		if e.promiseFn == nil {
			e.promiseFn = e.promise // a method value allocates: made once
		}
		cl.Produce(fl.Context, rec, e.promiseFn)
	} else { // a record with a context of its own (a truncate's copy)
		cl.Produce(fl.Context, rec, func(r *kgo.Record, err error) { e.acked(fl, r, err) })
	}
	if alone {
		return e.tr.wait(ctx, e.wake, e.onWait)
	}
	return nil
}

// promise is the promise of the records whose context is their inFlight.
func (e *emitter) promise(r *kgo.Record, err error) {
	e.acked(r.Context.(*inFlight), r, err)
}

// acked takes Kafka's answer for record r. It runs on franz-go's goroutine, once per record: it
// only records the answer, never blocks, and stays cheap (the produce latency is measured from
// the timestamp Produce gives the record, to the millisecond, rather than from a clock read of
// its own).
func (e *emitter) acked(fl *inFlight, r *kgo.Record, err error) {
	switch {
	case err == nil:
		e.loss.Ack(r.Topic, r.Partition, r.Offset)
		e.tr.ack(fl.seq, nil)
		if fl.changes != nil {
			now := time.Now()
			fl.changes.Acked(now, now.Sub(r.Timestamp))
		}
	case fl.alone && refusedForGood(err):
		// Off franz-go's goroutine: writing the dead letter produces and may wait.
		go e.deadLetterAfter(fl.seq, deadLetter{ev: fl.ev, key: r.Key, value: r.Value, tombstone: fl.tombstone,
			reason: kafkaReason(err), detail: fmt.Sprintf("Kafka refused the record for %s: %v", r.Topic, err)})
	default:
		if refusedForGood(err) && e.refused != nil {
			// In a batch, franz-go fails every record buffered for the partition with the
			// same error: which one is at fault is known only by sending them one by one.
			e.refused(aloneSpan{lsn: e.maxLSN.Load(), snapshot: e.tr.pending()})
		}
		e.tr.ack(fl.seq, err)
	}
}

// recordSize is what a record takes in a batch of its own before compression, with room for
// the record's framing.
func recordSize(key, value []byte) int {
	return len(key) + len(value) + kafka.BatchOverhead + 32
}

func (e *emitter) oversizeClient() (*kgo.Client, error) {
	e.oversizeOnce.Do(func() { e.oversizeCl, e.oversizeErr = e.oversize() })
	return e.oversizeCl, e.oversizeErr
}

// close closes the oversize producer, when one was opened, after it has delivered.
func (e *emitter) close() {
	if e.oversizeCl != nil {
		e.oversizeCl.Close()
	}
}

// ensureTopicName creates a named topic once, with the given cleanup policy, and learns the
// max.message.bytes it has: a topic that existed before may take less than configured.
func (e *emitter) ensureTopicName(ctx context.Context, name, cleanup string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ensured[name] {
		return nil
	}
	t := e.topics
	t.CleanupPolicy = cleanup
	if err := kafka.EnsureTopics(ctx, e.admin, []string{name}, t, nil); err != nil {
		return err
	}
	want := kafka.MaxMessageBytes(e.topics)
	got, err := kafka.TopicMaxMessageBytes(ctx, e.admin, name)
	switch {
	case err != nil:
		e.log.Warn("cannot read the topic's max.message.bytes; assuming the configured size", zap.String("topic", name),
			zap.Int("max_message_bytes", want), zap.Error(err))
	case got < want:
		e.log.Warn("topic takes smaller records than kafka.topics.max_message_bytes; larger rows go to the capture dead-letter topic",
			zap.String("topic", name), zap.Int("topic_max_message_bytes", got), zap.Int("configured", want))
		e.limits.set(name, got)
	default:
		e.limits.set(name, got)
	}
	if d, err := kafka.DescribeTopic(ctx, e.admin, name); err == nil {
		n := int32(len(d.Partitions))
		e.parts[name] = n
		e.book.check(name, n, d.ID.String())
	} else {
		e.book.forgetID(name) // the topic ensured may be a new one: its ID is learned at the next check
	}
	e.ensured[name] = true
	return nil
}

// checkTopics fails when a table's topic ensured in this run was deleted since
// (partitionBook.current). Capture's own topics (dead letters, schemas) are written again when
// next needed, and hold nothing a table's refresh would bring back.
func (e *emitter) checkTopics(ctx context.Context) error {
	e.mu.Lock()
	topics := slices.Collect(maps.Keys(e.tableTopics))
	e.mu.Unlock()
	return e.book.current(ctx, e.admin, topics)
}

// topicLimits are the max.message.bytes of the topics capture writes; topics not described
// (yet) have the configured size. Every record produced reads them, and they change only when a
// topic is ensured: readers load the current map without a lock, writers replace it.
type topicLimits struct {
	mu    sync.Mutex // serializes writers
	def   int
	limit atomic.Pointer[map[string]int]
}

func newTopicLimits(def int) *topicLimits {
	l := &topicLimits{def: def}
	l.limit.Store(&map[string]int{})
	return l
}

func (l *topicLimits) get(topic string) int {
	if n, ok := (*l.limit.Load())[topic]; ok {
		return n
	}
	return l.def
}

func (l *topicLimits) set(topic string, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := maps.Clone(*l.limit.Load())
	m[topic] = n
	l.limit.Store(&m)
}

// batchLimit is the producer's batch size for a topic: its limit less the log entry's offset and
// length, which Kafka counts and franz-go does not.
func (l *topicLimits) batchLimit(topic string) int32 {
	return int32(max(l.get(topic)-12, 1<<10))
}
