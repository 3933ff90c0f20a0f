package observe

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
)

// DefaultCollectTimeout bounds each of Collect's two halves (PostgreSQL, Kafka).
const DefaultCollectTimeout = 10 * time.Second

// CollectOpt tunes Collect.
type CollectOpt func(*collectOpts)

type collectOpts struct {
	th      Thresholds
	timeout time.Duration
	lost    *LostScans
}

// WithLostScans makes Collect reuse what it read of a sink's dead-letter topic for lost ranges
// while the topic's offsets have not moved (see LostScans): for a status collected again and
// again, as the status page's is.
func WithLostScans(l *LostScans) CollectOpt { return func(o *collectOpts) { o.lost = l } }

// WithThresholds sets the limits the status is judged against (default DefaultThresholds).
func WithThresholds(th Thresholds) CollectOpt { return func(o *collectOpts) { o.th = th } }

// WithTimeout bounds how long Collect waits for PostgreSQL and for Kafka (default 10s each).
func WithTimeout(d time.Duration) CollectOpt { return func(o *collectOpts) { o.timeout = d } }

// Collect reads the pipeline's state: the replication slot from PostgreSQL, and each sink's
// group, lag and dead-letter depth from Kafka through kopts (which must name the brokers).
// An unreachable database or broker is a Problem of the returned Status, not an error; the
// error is for a Status that cannot be collected at all (a nil config).
func Collect(ctx context.Context, cfg *config.Pipeline, kopts []kgo.Opt, log *zap.Logger, opts ...CollectOpt) (*Status, error) {
	if cfg == nil {
		return nil, errors.New("collect status: no pipeline config")
	}
	o := collectOpts{th: DefaultThresholds(), timeout: DefaultCollectTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if log == nil {
		log = zap.NewNop()
	}
	st := &Status{Time: time.Now().UTC(), Kafka: KafkaStatus{Brokers: cfg.Kafka.Brokers}, SinkOnly: !cfg.HasSource()}
	dlqDepth := int64(-1)
	var wg sync.WaitGroup
	if !st.SinkOnly {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, o.timeout)
			defer cancel()
			st.Capture = collectSlot(pctx, cfg.Source.Postgres, namedTables(cfg))
		})
	}
	wg.Go(func() {
		kctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		sinks, err := collectSinks(kctx, cfg, kopts, o.lost)
		st.Sinks = sinks
		if err != nil {
			st.Kafka.Error = err.Error()
			return
		}
		if !st.SinkOnly {
			dlqDepth = captureDLQDepth(kctx, cfg.CaptureDLQTopic(), kopts)
		}
	})
	wg.Wait()
	if !st.SinkOnly { // set after both halves: the PostgreSQL half writes the rest of st.Capture
		st.Capture.DLQTopic, st.Capture.DLQDepth = cfg.CaptureDLQTopic(), dlqDepth
	}
	st.Evaluate(o.th)
	if !st.Healthy {
		log.Debug("pipeline unhealthy", zap.Strings("problems", st.Problems))
	}
	return st, nil
}

// namedTables are the captured tables the pipeline names one by one: source.postgres.tables
// without its schema.* patterns, and the tables sinks read (from) that a pattern captures. Each
// is expected to exist; a table a pattern matches and nothing names may be dropped at will.
func namedTables(cfg *config.Pipeline) []string {
	var named []string
	for _, t := range cfg.Source.Postgres.Tables {
		if !strings.HasSuffix(t, ".*") {
			named = append(named, t)
		}
	}
	for _, sc := range cfg.Sinks {
		for _, t := range sc.From {
			if cfg.Source.Postgres.Captures(t) && !slices.Contains(named, t) {
				named = append(named, t)
			}
		}
	}
	return named
}

// collectSlot reads the slot's row of pg_replication_slots, and what is wrong with the captured
// tables (named: see namedTables).
func collectSlot(ctx context.Context, pg config.Postgres, named []string) CaptureStatus {
	cs := CaptureStatus{Slot: pg.Slot}
	if err := readSlot(ctx, pg, named, &cs); err != nil {
		cs.Error = scrubSecret(err.Error(), pg.URL)
	}
	return cs
}

const slotQuery = `SELECT active, coalesce(confirmed_flush_lsn::text, ''),
	coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::int8,
	coalesce(wal_status, '')
	FROM pg_replication_slots WHERE slot_name = $1`

func readSlot(ctx context.Context, pg config.Postgres, named []string, cs *CaptureStatus) error {
	pc, err := pgx.ParseConfig(pg.URL)
	if err != nil {
		return fmt.Errorf("source.postgres.url: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", config.RedactURL(pg.URL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := readInstance(ctx, conn, pg.Slot, cs); err != nil {
		return err
	}
	err = conn.QueryRow(ctx, slotQuery, pg.Slot).Scan(&cs.Active, &cs.ConfirmedFlushLSN, &cs.LagBytes, &cs.WALStatus)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("query pg_replication_slots: %w", err)
	}
	cs.Exists = true
	return readTables(ctx, conn, pg, named, cs)
}

// readTables lists the named tables that do not exist, and those that exist but are not in the
// publication: neither is captured. A partitioned table counts as published when it or any of
// its partitions is (the publication lists the leaves unless it publishes through the root).
func readTables(ctx context.Context, conn *pgx.Conn, pg config.Postgres, named []string, cs *CaptureStatus) error {
	cs.Publication = pg.Publication
	rows, err := conn.Query(ctx, `SELECT t, rel IS NULL, rel IS NOT NULL AND NOT EXISTS (
			SELECT 1 FROM pg_publication_tables p
			WHERE p.pubname = $2
				AND to_regclass(quote_ident(p.schemaname) || '.' || quote_ident(p.tablename)) IN (SELECT rel UNION ALL SELECT relid FROM pg_partition_tree(rel)))
		FROM unnest($1::text[]) t,
			LATERAL (SELECT to_regclass(quote_ident(split_part(t, '.', 1)) || '.' || quote_ident(split_part(t, '.', 2))) AS rel) r`,
		named, pg.Publication)
	if err != nil {
		return fmt.Errorf("look up the configured tables: %w", err)
	}
	var table string
	var missing, unpublished bool
	_, err = pgx.ForEachRow(rows, []any{&table, &missing, &unpublished}, func() error {
		if missing {
			cs.MissingTables = append(cs.MissingTables, table)
		}
		if unpublished {
			cs.UnpublishedTables = append(cs.UnpublishedTables, table)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("look up the configured tables: %w", err)
	}
	if err := readUnloggedTables(ctx, conn, pg, cs); err != nil {
		return err
	}
	if err := readPublishedOperations(ctx, conn, pg, cs); err != nil {
		return err
	}
	return readUnkeyedTables(ctx, conn, pg, cs)
}

// readPublishedOperations lists the operations the publication does not publish (its publish
// option): none of those changes reaches the targets.
func readPublishedOperations(ctx context.Context, conn *pgx.Conn, pg config.Postgres, cs *CaptureStatus) error {
	ops, err := UnpublishedOperations(ctx, conn, pg.Publication)
	cs.UnpublishedOperations = ops
	return err
}

// UnpublishedOperations returns the operations (of PublicationOperations, in its order) that
// publication does not publish (its publish option): PostgreSQL sends no change of those, of any
// table. A publication that does not exist gives none (capture creates it at start, and its loss
// is the lost slot's case).
func UnpublishedOperations(ctx context.Context, conn *pgx.Conn, publication string) ([]string, error) {
	var flags [4]bool
	err := conn.QueryRow(ctx, `SELECT pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = $1`,
		publication).Scan(&flags[0], &flags[1], &flags[2], &flags[3])
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read the operations publication %q publishes: %w", publication, err)
	}
	var out []string
	for i, op := range PublicationOperations {
		if !flags[i] {
			out = append(out, op)
		}
	}
	return out, nil
}

// readUnloggedTables lists the unlogged tables the configured entries (patterns too) name, and
// the partitioned ones with unlogged partitions, as "table" or "table (partitions p, q)":
// PostgreSQL logs none of their changes, so none reaches the topic (a bulk load's SET UNLOGGED).
func readUnloggedTables(ctx context.Context, conn *pgx.Conn, pg config.Postgres, cs *CaptureStatus) error {
	rows, err := conn.Query(ctx, `WITH RECURSIVE tree(root, relid) AS (
			SELECT c.oid, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relkind IN ('r', 'p') AND EXISTS (SELECT 1 FROM unnest($1::text[]) e
				WHERE split_part(e, '.', 1) = n.nspname AND split_part(e, '.', 2) IN ('*', c.relname))
			UNION ALL
			SELECT t.root, i.inhrelid FROM tree t JOIN pg_inherits i ON i.inhparent = t.relid
				JOIN pg_class p ON p.oid = i.inhrelid AND p.relispartition)
		SELECT rn.nspname || '.' || r.relname, coalesce(string_agg(n.nspname || '.' || c.relname, ', '
				ORDER BY n.nspname, c.relname) FILTER (WHERE t.relid <> t.root), '')
		FROM tree t JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
			JOIN pg_class r ON r.oid = t.root JOIN pg_namespace rn ON rn.oid = r.relnamespace
		WHERE c.relpersistence = 'u' GROUP BY 1 ORDER BY 1`, pg.Tables)
	if err != nil {
		return fmt.Errorf("look up the persistence of the configured tables: %w", err)
	}
	var table, part string
	_, err = pgx.ForEachRow(rows, []any{&table, &part}, func() error {
		if part != "" {
			table += " (partitions " + part + ")"
		}
		cs.UnloggedTables = append(cs.UnloggedTables, table)
		return nil
	})
	if err != nil {
		return fmt.Errorf("look up the persistence of the configured tables: %w", err)
	}
	return nil
}

// readUnkeyedTables lists the tables the configured entries (patterns too) name that have
// neither a primary key, nor a replica identity index, nor a key in source.postgres.keys:
// capture leaves their changes out.
func readUnkeyedTables(ctx context.Context, conn *pgx.Conn, pg config.Postgres, cs *CaptureStatus) error {
	keyed := make([]string, 0, len(pg.Keys))
	for t, cols := range pg.Keys {
		if len(cols) > 0 {
			keyed = append(keyed, t)
		}
	}
	rows, err := conn.Query(ctx, `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p')
			AND EXISTS (SELECT 1 FROM unnest($1::text[]) e
				WHERE split_part(e, '.', 1) = n.nspname AND split_part(e, '.', 2) IN ('*', c.relname))
			AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid
				AND (i.indisprimary OR (i.indisreplident AND c.relreplident = 'i')))
			AND n.nspname || '.' || c.relname <> ALL($2::text[])
		ORDER BY 1`, pg.Tables, keyed)
	if err != nil {
		return fmt.Errorf("look up the keys of the configured tables: %w", err)
	}
	cs.UnkeyedTables, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("look up the keys of the configured tables: %w", err)
	}
	return nil
}

// scrubSecret removes the URL's password from msg, should a driver ever quote it.
func scrubSecret(msg, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return msg
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return msg
}

// collectSinks describes every sink's group and computes its lag and dead-letter depth. The
// error means the brokers could not be reached at all.
func collectSinks(ctx context.Context, cfg *config.Pipeline, kopts []kgo.Opt, lost *LostScans) ([]SinkStatus, error) {
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	groups := make([]string, len(cfg.Sinks))
	for i, s := range cfg.Sinks {
		groups[i] = cfg.Kafka.SinkGroup(s.Name)
	}
	described, err := adm.DescribeGroups(ctx, groups...)
	if err != nil && len(described) == 0 {
		return nil, fmt.Errorf("describe consumer groups: %w", err)
	}
	out := make([]SinkStatus, len(cfg.Sinks))
	for i, sc := range cfg.Sinks {
		out[i] = collectSink(ctx, adm, kopts, lost, cfg, sc, described)
	}
	return out, nil
}

func collectSink(ctx context.Context, adm *kadm.Client, kopts []kgo.Opt, lost *LostScans, cfg *config.Pipeline, sc config.Sink,
	described kadm.DescribedGroups) SinkStatus {
	ss := SinkStatus{Name: sc.Name, Group: cfg.Kafka.SinkGroup(sc.Name), DLQTopic: cfg.Kafka.SinkDLQTopic(sc.Name), Members: []string{}}
	if g, ok := described[ss.Group]; ok {
		ss.State = g.State
		for _, m := range g.Members {
			ss.Members = append(ss.Members, memberName(m))
		}
		if g.Err != nil {
			ss.Error = fmt.Sprintf("describe group: %v", g.Err)
			return ss
		}
	}
	committed, err := adm.FetchOffsets(ctx, ss.Group)
	if err != nil {
		ss.Error = fmt.Sprintf("fetch committed offsets: %v", err)
		return ss
	}
	topics := sinkTopics(cfg, sc)
	// Unknown policies: a deleted record is counted as such, no delete is at risk.
	cleanups, _ := kafka.Cleanups(ctx, adm, topics...)
	horizons, _ := kafka.DeleteHorizons(ctx, adm, time.Now(), cleanups)
	for _, topic := range topics {
		tl := topicLag(ctx, adm, kopts, topic, committed, cleanups[topic].CompactOnly, horizons[topic])
		ss.Lag += tl.Lag
		ss.Topics = append(ss.Topics, tl)
	}
	starts, ends, err := bounds(ctx, adm, ss.DLQTopic)
	if err != nil {
		return ss // no dead-letter topic yet: depth 0
	}
	for p, end := range ends {
		ss.DLQDepth += end - starts[p]
	}
	if ss.Lost, err = lost.read(ctx, kopts, ss.DLQTopic, starts, ends); err != nil {
		ss.Error = fmt.Sprintf("read dead-letter topic %s for records lost before they were applied: %v", ss.DLQTopic, err)
	}
	return ss
}

func memberName(m kadm.DescribedGroupMember) string {
	return fmt.Sprintf("%s@%s", m.ClientID, strings.TrimPrefix(m.ClientHost, "/"))
}

// sinkTopics returns the topics a sink reads: its explicit topics, or those of its tables.
func sinkTopics(cfg *config.Pipeline, sc config.Sink) []string {
	if len(sc.Topics) > 0 {
		return sc.Topics
	}
	out := make([]string, len(sc.From))
	for i, t := range sc.From {
		out[i] = cfg.TopicFor(t)
	}
	return out
}

// topicLag is end − committed for each partition; where nothing is committed the sink starts
// at the beginning, so the lag is end − start. A commit before the start counts the records
// Kafka deleted in between, unless the topic is compactOnly; one before records older than the
// topic's delete.retention.ms (kafka.DeleteRisks, from the partitions' delete horizons), the
// records whose deletes compaction may remove first.
func topicLag(ctx context.Context, adm *kadm.Client, kopts []kgo.Opt, topic string, committed kadm.OffsetResponses, compactOnly bool,
	horizons map[int32]int64) TopicLag {
	tl := TopicLag{Topic: topic, Partitions: []PartitionLag{}}
	starts, ends, err := bounds(ctx, adm, topic)
	if err != nil {
		tl.Error = err.Error()
		return tl
	}
	behind := map[int32]int64{}
	for p, end := range ends {
		pl := PartitionLag{Partition: p, Committed: -1, Start: starts[p], End: end, Lag: end - starts[p]}
		if c, ok := committed.Lookup(topic, p); ok && c.Err == nil && c.At >= 0 {
			pl.Committed, pl.Lag = c.At, max(end-c.At, 0)
			if c.At < pl.Start && !compactOnly {
				pl.Deleted = pl.Start - c.At
			}
			// A position replay --reset set is one the sink read past before, or one of an
			// emptied target: its deletes are not at risk.
			if c.Metadata != kafka.ResetCommitMetadata {
				behind[p] = c.At
			}
		}
		tl.Partitions = append(tl.Partitions, pl)
	}
	markersOnly(ctx, kopts, topic, tl.Partitions)
	for _, pl := range tl.Partitions {
		tl.Lag += pl.Lag
	}
	// Unknown risks (the records read failed): none reported, as for unknown horizons.
	risks, _ := kafka.DeleteRisks(ctx, kopts, topic, behind, horizons)
	for i, pl := range tl.Partitions {
		if risks[pl.Partition] == kafka.DeletesAtRisk {
			tl.Partitions[i].DeletesAtRisk = horizons[pl.Partition] - pl.Committed
		}
	}
	sort.Slice(tl.Partitions, func(i, j int) bool { return tl.Partitions[i].Partition < tl.Partitions[j].Partition })
	return tl
}

// markersOnly moves to Markers the lag of each partition whose group offset is followed only by
// transaction markers and aborted records (kafka.OnlyMarkers): a sink commits the offset after
// the last record it applied, so on a topic written in Kafka transactions (Debezium or Kafka
// Connect with exactly-once delivery) its group stays short of the end by the markers for good.
// A partition that cannot be read keeps its lag.
func markersOnly(ctx context.Context, kopts []kgo.Opt, topic string, parts []PartitionLag) {
	from, to := map[int32]int64{}, map[int32]int64{}
	for _, pl := range parts {
		if pl.Committed >= pl.Start && pl.Lag > 0 {
			from[pl.Partition], to[pl.Partition] = pl.Committed, pl.End
		}
	}
	if len(from) == 0 {
		return
	}
	// A partition held by a transaction still open yields nothing until it ends: it keeps its
	// lag rather than hold the status of the topics after it.
	ctx, cancel := context.WithTimeout(ctx, markerWait)
	defer cancel()
	only, _ := kafka.OnlyMarkers(ctx, kopts, topic, from, to)
	for i, pl := range parts {
		if only[pl.Partition] {
			parts[i].Markers, parts[i].Lag = pl.Lag, 0
		}
	}
}

// markerWait bounds markersOnly's read of a topic.
const markerWait = time.Second

// topicDepth counts the records in topic (end − start over its partitions); 0 when it does not exist.
func topicDepth(ctx context.Context, adm *kadm.Client, topic string) int64 {
	starts, ends, err := bounds(ctx, adm, topic)
	if err != nil {
		return 0
	}
	var n int64
	for p, end := range ends {
		n += end - starts[p]
	}
	return n
}

// bounds lists a topic's start and end offsets by partition.
func bounds(ctx context.Context, adm *kadm.Client, topic string) (starts, ends map[int32]int64, err error) {
	if starts, err = listed(ctx, adm.ListStartOffsets, topic); err != nil {
		return nil, nil, err
	}
	if ends, err = listed(ctx, adm.ListEndOffsets, topic); err != nil {
		return nil, nil, err
	}
	return starts, ends, nil
}

func listed(ctx context.Context, list func(context.Context, ...string) (kadm.ListedOffsets, error), topic string) (map[int32]int64, error) {
	lo, err := list(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	if err := lo.Error(); err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	lo.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	if len(out) == 0 {
		return nil, fmt.Errorf("topic %s does not exist yet", topic)
	}
	return out, nil
}
