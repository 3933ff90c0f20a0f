package sink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/mapping"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// Sink is one running sink: a member of the sink's consumer group applying its partitions to
// one target. Several processes running the same sink share the partitions.
type Sink struct {
	cfg     config.Sink
	kcfg    config.Kafka
	log     *zap.Logger
	conn    Connector
	mapping *mapping.Mapping
	topics  []string
	schemas *schemaSource
	dec     decoder
	keyDec  *codec.Decoder // the decoder itself, for keys (Preview); dec may be a test's wrapper
	dlq     *deadLetters
	limiter *rate.Limiter
	rate    groupRate // the rate_limit the limiter takes its share of
	kopts   []kgo.Opt
	stats   *Stats
	// offsetName names this consumer's offsets stored in the target (Batch.Sink): the sink's
	// name, or a replay's own name so a replay never moves the live sink's position.
	offsetName string
	collect    bool // collect failures instead of writing them to the dead-letter topic
	metrics    *observe.Metrics
	fieldsOnce sync.Once
	fieldOrder []string

	// coordinated is set when truncates whose copies are barriers are applied once every
	// partition reached them, never in place: by Run (through the barrier topic) and by replays
	// (OrderTruncates).
	coordinated bool

	loader      RowLoader    // the connector's fast path for created rows, if the sink can use it
	projections sync.Map     // *change.Table -> []string: mapping.Projection, nil when not one
	keysChecked keysChecked  // tables warnKeyMoves has looked at
	keySeed     maphash.Seed // for telling Kafka keys apart in prepareRows
	fences      *fences      // this worker's hold on its partitions (see fences)

	waits waits // partitions waiting on the target, the schema source or a mapping: not stalled
}

// decoder is what the sink uses of a *codec.Decoder (tests put their own in front of it).
type decoder interface {
	Decode(ctx context.Context, topic string, key, value []byte) (*change.Event, error)
	DecodeRow(ctx context.Context, topic string, key, value []byte, headers map[string]string) (*change.Event, error)
	DecodeKey(ctx context.Context, topic string, key []byte) (*change.Table, change.Row, error)
	ScanTable(ctx context.Context, value []byte) *change.Table
	ScanCreated(ctx context.Context, value []byte, t *change.Table, w codec.RowWriter) (codec.Created, bool)
}

// Opt configures a Sink.
type Opt func(*Sink)

// WithLogger sets the logger (default: no logging).
func WithLogger(l *zap.Logger) Opt { return func(s *Sink) { s.log = l } }

// WithOffsetName stores this consumer's offsets in the target under name instead of the sink's
// name (replays use their own name so the live sink's stored position never moves).
func WithOffsetName(name string) Opt { return func(s *Sink) { s.offsetName = name } }

// CollectFailures keeps records that cannot be applied in memory (Failures) instead of writing
// them to the dead-letter topic: a re-drive of the dead-letter topic reports what still fails
// without adding it again.
func CollectFailures() Opt { return func(s *Sink) { s.collect = true } }

// WithMetrics records the sink's metrics in m.
func WithMetrics(m *observe.Metrics) Opt { return func(s *Sink) { s.metrics = m } }

// WithKafkaOpts adds franz-go client options (tests use it to tune session timeouts).
func WithKafkaOpts(opts ...kgo.Opt) Opt { return func(s *Sink) { s.kopts = append(s.kopts, opts...) } }

// New builds the sink named cfg.Name of the pipeline: it compiles the mapping, builds the
// connector through factories and checks everything before any record is read.
func New(ctx context.Context, p *config.Pipeline, cfg config.Sink, factories map[string]Factory, opts ...Opt) (*Sink, error) {
	s, err := newUnconnected(p, cfg, opts...)
	if err != nil {
		return nil, err
	}
	if cfg.RateLimit != "" {
		perSec, err := config.ParseRate(cfg.RateLimit)
		if err != nil {
			return nil, fmt.Errorf("sink %s: rate_limit: %w", cfg.Name, err)
		}
		s.rate = groupRate{perSec: perSec, burst: max(cfg.Batch.MaxRecords, int(perSec))}
		s.limiter = rate.NewLimiter(rate.Limit(perSec), s.rate.burst)
	}
	factory, ok := factories[cfg.Connector]
	if !ok {
		return nil, fmt.Errorf("sink %s: connector %q is not available in this build", cfg.Name, cfg.Connector)
	}
	params, err := ConnectorParams(p, cfg, s.log.Named(cfg.Connector))
	if err != nil {
		return nil, err
	}
	if s.conn, err = factory(ctx, params); err != nil {
		return nil, fmt.Errorf("sink %s: %w", cfg.Name, err)
	}
	if rl, ok := s.conn.(RowLoader); ok && cfg.VersionColumn == "" {
		s.loader, s.keySeed = rl, maphash.MakeSeed()
	}
	return s, nil
}

// ConnectorParams returns what the sink's connector is built from: its settings, key, delete and
// version columns, and the pipeline's Kafka connection.
func ConnectorParams(p *config.Pipeline, cfg config.Sink, log *zap.Logger) (Params, error) {
	params := ParamsOf(cfg)
	params.Log = log
	if len(p.Kafka.Brokers) > 0 {
		var err error
		if params.Kafka, err = kafka.ClientOpts(p.Kafka, nil); err != nil {
			return Params{}, fmt.Errorf("sink %s: %w", cfg.Name, err)
		}
	}
	return params, nil
}

// newUnconnected builds what a sink is without its target: options, mapping and topics.
func newUnconnected(p *config.Pipeline, cfg config.Sink, opts ...Opt) (*Sink, error) {
	s := &Sink{cfg: cfg, kcfg: p.Kafka, log: zap.NewNop(), stats: &Stats{}, offsetName: cfg.Name, fences: &fences{}}
	for _, o := range opts {
		o(s)
	}
	s.log = s.log.With(zap.String("sink", cfg.Name))
	var err error
	if s.mapping, err = mapping.Compile(mapping.Spec{Sink: cfg.Name, Path: sinkPath(p, cfg.Name), Fields: cfg.Map, Key: cfg.Key, Filter: cfg.Filter}); err != nil {
		return nil, err
	}
	s.topics = sinkTopics(p, cfg)
	return s, nil
}

func sinkPath(p *config.Pipeline, name string) string {
	for i, s := range p.Sinks {
		if s.Name == name {
			return fmt.Sprintf("sinks[%d]", i)
		}
	}
	return "sinks"
}

// sinkTopics returns the topics a sink reads: its explicit topics, or those of its tables.
func sinkTopics(p *config.Pipeline, cfg config.Sink) []string {
	if len(cfg.Topics) > 0 {
		return cfg.Topics
	}
	out := make([]string, len(cfg.From))
	for i, t := range cfg.From {
		out[i] = p.TopicFor(t)
	}
	return out
}

// Stats counts what a sink did; safe for concurrent use.
type Stats struct {
	mu                              sync.Mutex
	Applied, Filtered, DeadLettered int64
	Batches                         int64
	LastApplied                     time.Time
}

func (st *Stats) add(applied, filtered, dlq int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.Applied += int64(applied)
	st.Filtered += int64(filtered)
	st.DeadLettered += int64(dlq)
	st.Batches++
	st.LastApplied = time.Now()
}

// Snapshot returns a copy of the counters.
func (st *Stats) Snapshot() Stats {
	st.mu.Lock()
	defer st.mu.Unlock()
	return Stats{Applied: st.Applied, Filtered: st.Filtered, DeadLettered: st.DeadLettered, Batches: st.Batches, LastApplied: st.LastApplied}
}

// Stats returns the sink's counters.
func (s *Sink) Stats() *Stats { return s.stats }

// Close releases the connector and the dead-letter producer.
func (s *Sink) Close() error {
	if s.dlq != nil {
		s.dlq.close()
	}
	return s.conn.Close()
}

// Run consumes until ctx ends. Offsets are committed only after the target applied the records
// (and the dead-letter topic acknowledged the rejected ones); a failure returns an error and
// leaves the uncommitted records to be consumed again.
//
// A worker that finds itself fenced (ErrFenced: another worker wrote its partition) or whose
// applies a rebalance could not wait for leaves the group and joins it again, reading its
// partitions from what the target and the group hold, rather than writing on from a position
// that is no longer its own (see fences).
func (s *Sink) Run(ctx context.Context) error {
	if err := s.Prepare(ctx); err != nil {
		return err
	}
	pace := newRejoinPacer(rebalanceTimeout(cmp.Or(s.kcfg.SessionTimeout, 45*time.Second), s.conn))
	for {
		began := time.Now()
		err := s.session(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrFenced), errors.Is(err, errRebalanceDeadline), errors.Is(err, errLeftGroup),
			errors.Is(err, errOutOfRange), errors.Is(err, errTopicRecreated):
			s.metrics.Fenced(s.cfg.Name)
			s.log.Warn("left the consumer group to start again from what the target and the group hold", zap.Error(err))
			if pace.wait(ctx, began, err, s.log) != nil {
				return nil // stopping
			}
		default:
			return err
		}
	}
}

// rejoinPacer paces rejoins after rebalances that could not wait for this worker's applies:
// each rejoin is itself a rebalance, which waits for the worker that took over the partitions
// meanwhile. Two workers with an apply longer than the rebalance timeout between them would
// otherwise cut each other's applies for good. The first cut rejoins at once; each cut after it
// in a row waits longer (from the rebalance timeout, doubling, with jitter), so that the other
// worker finishes.
type rejoinPacer struct {
	bo   *backoff.ExponentialBackOff
	cuts int // sessions in a row cut by a rebalance deadline
}

// newRejoinPacer starts its waits at first (the group's rebalance timeout).
func newRejoinPacer(first time.Duration) *rejoinPacer {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.Multiplier, bo.MaxInterval = first, 2, max(first, 2*time.Minute)
	bo.Reset()
	return &rejoinPacer{bo: bo}
}

// next returns how long to wait before the next session, after one that began then and ended
// with err (0: at once); a session that lasted past the longest wait, or ended otherwise, starts
// the pacing over.
func (p *rejoinPacer) next(began time.Time, err error) time.Duration {
	if !errors.Is(err, errRebalanceDeadline) || time.Since(began) > p.bo.MaxInterval {
		p.bo.Reset()
		p.cuts = 0
	}
	if !errors.Is(err, errRebalanceDeadline) {
		return 0
	}
	if p.cuts++; p.cuts == 1 {
		return 0
	}
	return p.bo.NextBackOff()
}

// wait waits as next says; it returns ctx's error when stopping.
func (p *rejoinPacer) wait(ctx context.Context, began time.Time, err error, log *zap.Logger) error {
	d := p.next(began, err)
	if d == 0 {
		return nil
	}
	log.Info("waiting before joining the group again: the last rebalances could not wait for this worker's applies",
		zap.Int("cut_in_a_row", p.cuts), zap.Duration("for", d))
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// session is one membership of the sink's consumer group: it consumes until ctx ends, applying
// fails, or the worker must rejoin (ErrFenced, errRebalanceDeadline).
func (s *Sink) session(ctx context.Context) error {
	base, err := kafka.ClientOpts(s.kcfg, s.log)
	if err != nil {
		return err
	}
	opts := slices.Clone(base)
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	session := cmp.Or(s.kcfg.SessionTimeout, 45*time.Second) // franz-go's default
	heartbeat := max(session/6, 100*time.Millisecond)
	rebalance := rebalanceTimeout(session, s.conn)
	watch := &rebalanceWatch{budget: rebalanceBudget(rebalance, heartbeat), cancel: cancel}
	var client atomic.Pointer[kgo.Client] // for the callbacks (storedClient: they may run before NewClient returns)
	behind, mine := &catchUp{}, &owned{}
	bar := &barriers{s: s, held: map[TopicPartition]*heldAt{}, inflight: map[TopicPartition]int{}}
	store, _ := s.conn.(OffsetStore)
	held := newHeldPartitions(s) // for the member's share of the sink's rate_limit
	// Called from adjustOffsets, with the partitions this member was just assigned: an
	// OnPartitionsAssigned callback would, under BlockRebalanceOnPoll, wait for the poll in hand
	// (up to idleWake on an idle stream), and with it the first fetch of the new partitions.
	assigned := func(ctx context.Context, cl *kgo.Client, parts map[string][]int32) {
		mine.add(parts)
		held.add(ctx, cl, parts)
	}
	// One callback of each kind: kgo keeps only the last one given.
	gone := func(ctx context.Context, cl *kgo.Client, lost map[string][]int32) {
		behind.drop(lost)
		s.fences.drop(lost)
		held.drop(ctx, cl, lost)
		mine.drop(lost)
		bar.drop(lost)
	}
	opts = append(opts,
		// A crashed worker holds its partitions no longer than the session timeout; a rebalance
		// waits for a live one as long as its connector says one apply may take.
		kgo.SessionTimeout(session), kgo.RebalanceTimeout(rebalance), kgo.HeartbeatInterval(heartbeat),
		kgo.ConsumerGroup(s.Group()),
		kgo.ConsumeTopics(s.topics...),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		// Rebalances wait until the records of a poll are applied and committed: a partition
		// never moves to another member with a batch half done.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsCallbackBlocked(func(context.Context, *kgo.Client) { watch.blocked() }),
		// A partition without a commit starts at its first record. One that falls out of its log
		// while consumed is not moved by the client, which would skip what retention deleted
		// without a word: the worker rejoins (errOutOfRange), and adjustOffsets reports it.
		kgo.ConsumeStartOffset(kgo.NewOffset().AtStart()),
		// A topic written in Kafka transactions (Debezium with exactly-once delivery, Kafka
		// Streams, Flink) also holds the records of aborted and open transactions: only
		// committed ones are applied. Capture writes no transactions, so this costs its topics
		// nothing (their last stable offset is their end).
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.FetchMaxWait(max(s.cfg.Batch.MaxWait, 10*time.Millisecond)), // brokers accept no less
		kgo.FetchMaxPartitionBytes(FetchPartitionBytes),
		// No commit on revocation: groupRounds commits exactly what was applied, and with
		// BlockRebalanceOnPoll a rebalance only happens between polls. On shutdown the client
		// revokes while a poll may be half applied; "uncommitted" offsets would then include
		// records never applied, and committing them would lose those records.
		kgo.AdjustFetchOffsetsFn(s.adjustOffsets(&client, store, behind, assigned)),
		kgo.OnPartitionsRevoked(gone),
		kgo.OnPartitionsLost(gone),
	)
	opts = append(opts, s.kopts...)
	if s.cfg.OnTruncate != config.OnTruncateIgnore {
		if bar.log, err = openBarrierLog(ctx, base, s.cfg.Name, s.kcfg.SinkBarrierTopic(s.cfg.Name), s.kcfg.Topics, s.log); err != nil {
			return err
		}
		defer bar.log.close()
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("sink %s: kafka client: %w", s.cfg.Name, err)
	}
	client.Store(cl)
	defer cl.Close()
	bar.cl, s.coordinated = cl, true
	s.log.Info("sink started", zap.Strings("topics", s.topics), zap.String("connector", s.cfg.Connector),
		zap.Duration("rebalance_timeout", rebalance))
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() { defer close(watched); s.watchStalls(wctx, cl, mine) }()
	defer func() { stopWatch(); <-watched }() // before the client closes
	src := &groupRounds{s: s, cl: cl, watch: watch, behind: behind, bar: bar, hwm: map[TopicPartition]int64{}}
	err = s.ApplyRounds(sctx, src)
	cl.AllowRebalance() // leaving the group waits for it; nothing uncommitted is committed
	if cause := context.Cause(sctx); errors.Is(cause, errRebalanceDeadline) && ctx.Err() == nil {
		return cause
	}
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// Prepare sets up what processing needs besides a consumer: the schema source, the decoder and
// the dead-letter producer. Run calls it; callers of Process call it once first.
func (s *Sink) Prepare(ctx context.Context) error {
	if s.dlq != nil {
		return nil // prepared by an earlier Run
	}
	base, err := kafka.ClientOpts(s.kcfg, s.log)
	if err != nil {
		return err
	}
	if err := s.prepareDecoder(base); err != nil {
		return err
	}
	s.dlq, err = newDeadLetters(ctx, base, s.cfg.Name, s.DLQTopic(), s.kcfg.Topics, s.collect)
	return err
}

// prepareDecoder sets up the schema source and the decoder, reaching Kafka through base.
func (s *Sink) prepareDecoder(base []kgo.Opt) error {
	var err error
	if s.schemas, err = newSchemaSource(base, s.kcfg, s.cfg); err != nil {
		return err
	}
	opts := []codec.DecoderOpt{codec.Schemas(s.schemas.store), codec.UnavailableValue(s.kcfg.Debezium.UnavailableValuePlaceholder)}
	if s.schemas.registry != nil {
		opts = append(opts, codec.DecoderRegistry(s.schemas.registry))
	}
	dec, err := codec.NewDecoder(opts...)
	if err != nil {
		return err
	}
	s.dec, s.keyDec = dec, dec
	return nil
}

// Failures returns the records collected under CollectFailures, with their reasons.
func (s *Sink) Failures() []Failure { return s.dlq.collected() }

// TakeFailures returns the records collected under CollectFailures since the last call and
// forgets them, so that a long re-drive reports failures as it goes without holding them all.
func (s *Sink) TakeFailures() []Failure { return s.dlq.take() }

// DecodeKey decodes a Kafka record key of topic into the source key columns and their values.
// It reads newer schemas once when the writer schema is not known yet, as decode does. Call
// Prepare first.
func (s *Sink) DecodeKey(ctx context.Context, topic string, key []byte) (change.Row, error) {
	_, row, err := s.dec.DecodeKey(ctx, topic, key)
	if errors.Is(err, codec.ErrUnknownSchema) && !errors.Is(err, codec.ErrUnavailable) {
		if rerr := s.schemas.refresh(ctx); rerr != nil {
			return nil, fmt.Errorf("%w, and reading the schema topic to find it failed: %w", err, rerr)
		}
		_, row, err = s.dec.DecodeKey(ctx, topic, key)
	}
	return row, err
}

// KafkaOpts returns the franz-go options to reach the pipeline's brokers (TLS and SASL included).
func (s *Sink) KafkaOpts() ([]kgo.Opt, error) { return kafka.ClientOpts(s.kcfg, s.log) }

// Concurrency is how many partitions the sink applies at once.
func (s *Sink) Concurrency() int { return max(s.cfg.Concurrency, 1) }

// BatchSize is the sink's batch.max_records.
func (s *Sink) BatchSize() int { return s.cfg.Batch.MaxRecords }

// Name returns the sink's name.
func (s *Sink) Name() string { return s.cfg.Name }

// Group returns the sink's consumer group: its name behind kafka.sink_prefix.
func (s *Sink) Group() string { return s.kcfg.SinkGroup(s.cfg.Name) }

// DLQTopic returns the sink's dead-letter topic.
func (s *Sink) DLQTopic() string { return s.kcfg.SinkDLQTopic(s.cfg.Name) }

// Topics returns the topics the sink reads.
func (s *Sink) Topics() []string { return append([]string(nil), s.topics...) }

// Connector returns the sink's target connector.
func (s *Sink) Connector() Connector { return s.conn }

// FetchPartitionBytes caps each partition's share of a fetch (kgo.FetchMaxPartitionBytes) for
// the sink's consumers and for replays. On a backlog the client hands out a fetch's records
// partition by partition, so with the default (1 MiB, some 30,000 compressed change records) a
// poll would hold one partition only and the sink could not apply partitions side by side. A
// smaller share also keeps less in buffered fetches. A record batch larger than this is still
// fetched whole.
const FetchPartitionBytes = 128 << 10

// pollSize is how many records one round takes: a batch for each partition applied at once, so
// that on a backlog several partitions are applied side by side (the client hands out buffered
// records partition by partition).
func (s *Sink) pollSize() int { return s.cfg.Batch.MaxRecords * s.cfg.Concurrency }

// fetchErr returns the first fetch error that is not the poll's own deadline.
func fetchErr(fs kgo.Fetches, ctx context.Context) error {
	var out error
	fs.EachError(func(t string, p int32, err error) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || out != nil {
			return
		}
		if errors.Is(err, kerr.UnknownTopicID) {
			// The topic was deleted and created again: the client never consumes it again.
			out = fmt.Errorf("fetch %s/%d: %w: %w", t, p, errTopicRecreated, err)
			return
		}
		if kerr.IsRetriable(err) || errors.Is(err, kerr.UnknownTopicOrPartition) {
			return // the client retries these itself (a topic capture has not created yet, a moving leader)
		}
		var loss *kgo.ErrDataLoss
		if errors.Is(err, kerr.OffsetOutOfRange) || errors.As(err, &loss) {
			out = fmt.Errorf("fetch %s/%d: %w: %w", t, p, errOutOfRange, err)
			return
		}
		// Transient broker errors are retried by the client; these are the ones it gives up on.
		out = fmt.Errorf("fetch %s/%d: %w", t, p, err)
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return out
}
