package observe

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// collectEnv is a PostgreSQL with a logical slot, not read, whose capture lock a session holds
// (a capture in its initial snapshot), and a broker where sink "crm" reads topic "orders" (2
// partitions: 5 records in p0, 2 in p1), has committed offset 2 in p0 only, and has 3 dead
// letters.
type collectEnv struct {
	pg     *testenv.Postgres
	kf     *testenv.Kafka
	cfg    *config.Pipeline
	holder *pgx.Conn // holds the slot's capture lock
}

func newCollectEnv(t *testing.T) *collectEnv {
	t.Helper()
	ctx := context.Background()
	e := &collectEnv{pg: testenv.NewPostgres(t), kf: testenv.NewKafka(t)}
	if err := e.pg.Exec(ctx, `CREATE TABLE public.w (id int PRIMARY KEY); CREATE PUBLICATION backflow FOR TABLE public.w`); err != nil {
		t.Fatal(err)
	}
	if err := e.pg.Exec(ctx, `SELECT pg_create_logical_replication_slot('backflow', 'pgoutput')`); err != nil {
		t.Fatal(err)
	}
	holder, err := e.pg.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Close(context.Background()) })
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", CaptureLockKey("backflow")); err != nil {
		t.Fatal(err)
	}
	e.holder = holder
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kf.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for topic, parts := range map[string]int32{"orders": 2, "crm.dlq": 1} {
		if _, err := adm.CreateTopic(ctx, parts, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	var recs []*kgo.Record
	for i := range 7 {
		recs = append(recs, &kgo.Record{Topic: "orders", Partition: int32(i / 5), Value: []byte("x")})
	}
	for range 3 {
		recs = append(recs, &kgo.Record{Topic: "crm.dlq", Value: []byte("dead")})
	}
	cl2, err := kgo.NewClient(kgo.SeedBrokers(e.kf.Brokers()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	if err := cl2.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "orders", Partition: 0, At: 2, LeaderEpoch: -1})
	if _, err := adm.CommitOffsets(ctx, "crm", offs); err != nil {
		t.Fatal(err)
	}
	e.cfg = &config.Pipeline{
		Source: config.Source{Postgres: config.Postgres{URL: e.pg.URL("postgres"), Slot: "backflow", Publication: "backflow",
			Tables: []string{"public.w"}}},
		Kafka: config.Kafka{Brokers: e.kf.Brokers()},
		Sinks: []config.Sink{{Name: "crm", Topics: []string{"orders"}}},
	}
	return e
}

// TestCollectRecordsDeletedBeforeApplied: a stopped sink's group position before the first
// record Kafka still has (retention deleted records it had not applied) is a problem in status
// before the sink resumes, unless the topic is compacted alone (only compaction moves its start).
func TestCollectRecordsDeletedBeforeApplied(t *testing.T) {
	ctx := context.Background()
	e := newCollectEnv(t)
	adm := e.admin(t)
	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: "orders", Partition: 0, At: 4})
	if resp, err := adm.DeleteRecords(ctx, del); err != nil || resp.Error() != nil {
		t.Fatalf("delete records: %v %v", err, resp.Error())
	}
	st := e.collect(t)
	p0 := st.Sinks[0].Topics[0].Partitions[0]
	if p0.Start != 4 || p0.Committed != 2 || p0.Deleted != 2 {
		t.Errorf("partition 0 %+v: want start 4, committed 2, 2 deleted", p0)
	}
	want := "sink crm: Kafka deleted 2 record(s) its group had not applied yet (orders/0 offsets 2-3)"
	if !strings.Contains(strings.Join(st.Problems, "\n"), want) {
		t.Errorf("problems %q: want %q", st.Problems, want)
	}

	rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "cleanup.policy", Value: kadm.StringPtr("compact")}}, "orders")
	if err != nil || rs[0].Err != nil {
		t.Fatalf("set cleanup.policy: %v %+v", err, rs)
	}
	st = e.collect(t)
	if p0 := st.Sinks[0].Topics[0].Partitions[0]; p0.Deleted != 0 || strings.Contains(strings.Join(st.Problems, "\n"), "Kafka deleted") {
		t.Errorf("compacted topic: partition 0 %+v, problems %q: want nothing deleted", p0, st.Problems)
	}
}

// TestCollectDeletesAtRisk: a group stopped before records older than its compacted topic's
// delete.retention.ms, among which compaction removed some, is a problem (deletes may be gone
// before the sink reads them); not when compaction removed none, nor when replay --reset set
// that position.
func TestCollectDeletesAtRisk(t *testing.T) {
	ctx := context.Background()
	e := newCollectEnv(t)
	adm := e.admin(t)
	rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "cleanup.policy", Value: kadm.StringPtr("compact")},
		{Op: kadm.SetConfig, Name: "delete.retention.ms", Value: kadm.StringPtr("1")},
	}, "orders")
	if err != nil || rs[0].Err != nil {
		t.Fatalf("set topic config: %v %+v", err, rs)
	}
	time.Sleep(5 * time.Millisecond) // every record is older than delete.retention.ms
	if p0 := e.collect(t).Sinks[0].Topics[0].Partitions[0]; p0.DeletesAtRisk != 0 {
		t.Errorf("nothing compacted yet: partition 0 %+v, want no deletes at risk", p0)
	}

	// Offsets 5-7: k, k again, z, a batch each. Compaction removes the keyless 0-4 and the first k.
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kf.Brokers()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, key := range []string{"k", "k", "z"} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Partition: 0, Key: []byte(key), Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	e.kf.Cluster.Compact()
	time.Sleep(5 * time.Millisecond)
	st := e.collect(t)
	if p0 := st.Sinks[0].Topics[0].Partitions[0]; p0.DeletesAtRisk != 6 || p0.Deleted != 0 {
		t.Errorf("partition 0 %+v: want the 6 offsets from the commit at 2 at risk, none deleted", p0)
	}
	want := "sink crm: its group has not applied 6 record(s) older than their topic's delete.retention.ms (orders/0 offsets 2-7)"
	if !strings.Contains(strings.Join(st.Problems, "\n"), want) {
		t.Errorf("problems %q: want %q", st.Problems, want)
	}
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "orders", Partition: 0, At: 2, LeaderEpoch: -1, Metadata: kafka.ResetCommitMetadata})
	if _, err := adm.CommitOffsets(ctx, "crm", offs); err != nil {
		t.Fatal(err)
	}
	st = e.collect(t)
	if p0 := st.Sinks[0].Topics[0].Partitions[0]; p0.DeletesAtRisk != 0 || strings.Contains(strings.Join(st.Problems, "\n"), "delete.retention.ms") {
		t.Errorf("a position replay --reset set: partition 0 %+v, problems %q: want no deletes at risk", p0, st.Problems)
	}
}

// TestCollectMarkersAreNotLag: on a topic written in Kafka transactions (Debezium with
// exactly-once delivery), a group that applied every committed record stays short of the end by
// the commit and abort markers and the aborted records after it. Those are not lag; records of a
// committed transaction after the group's offset are.
func TestCollectMarkersAreNotLag(t *testing.T) {
	ctx := context.Background()
	e := newCollectEnv(t)
	adm := e.admin(t)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "eos"); err != nil {
		t.Fatal(err)
	}
	rec := func(p int32) []*kgo.Record { return []*kgo.Record{{Topic: "eos", Partition: p, Value: []byte("x")}} }
	// Each partition: 0 committed record, 1 commit marker, 2 aborted record, 3 abort marker.
	txn, err := testenv.WriteTransactions(ctx, e.kf.Brokers(),
		testenv.Transaction{Records: append(rec(0), rec(1)...), End: "commit"},
		testenv.Transaction{Records: append(rec(0), rec(1)...), End: "abort"})
	if err != nil {
		t.Fatal(err)
	}
	txn.Close()
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "eos", Partition: 0, At: 1, LeaderEpoch: -1}) // after the committed record
	offs.Add(kadm.Offset{Topic: "eos", Partition: 1, At: 0, LeaderEpoch: -1}) // before it
	if _, err := adm.CommitOffsets(ctx, "crm", offs); err != nil {
		t.Fatal(err)
	}
	e.cfg.Sinks[0].Topics = []string{"eos"}
	k := e.collect(t).Sinks[0]
	parts := k.Topics[0].Partitions
	if len(parts) != 2 || parts[0].End != 4 || parts[1].End != 4 {
		t.Fatalf("partitions %+v: want 2 partitions ending at 4 (a record, a marker, an aborted record, a marker)", parts)
	}
	if p := parts[0]; p.Lag != 0 || p.Markers != 3 {
		t.Errorf("partition 0 %+v: want lag 0, 3 offsets of markers and aborted records", p)
	}
	if p := parts[1]; p.Lag != 4 || p.Markers != 0 {
		t.Errorf("partition 1 %+v: want lag 4 (a committed record after the group's offset)", p)
	}
	if k.Lag != 4 || k.Topics[0].Lag != 4 {
		t.Errorf("sink lag %d, topic lag %d: want 4", k.Lag, k.Topics[0].Lag)
	}

	// A transaction still open after the markers: its record cannot be applied until it ends.
	open, err := testenv.WriteTransactions(ctx, e.kf.Brokers(), testenv.Transaction{Records: rec(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if p := e.collect(t).Sinks[0].Topics[0].Partitions[0]; p.End != 5 || p.Lag != 4 || p.Markers != 0 {
		t.Errorf("partition 0 with a transaction open %+v: want end 5, lag 4", p)
	}
}

// admin returns an admin client of the environment's broker, closed when the test ends.
func (e *collectEnv) admin(t *testing.T) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kf.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func (e *collectEnv) collect(t *testing.T, opts ...CollectOpt) *Status {
	t.Helper()
	st, err := Collect(context.Background(), e.cfg, []kgo.Opt{kgo.SeedBrokers(e.cfg.Kafka.Brokers...)}, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestCollectStatus reads a slot and an idle sink group from real PostgreSQL and Kafka, then
// sees the database go away.
func TestCollectStatus(t *testing.T) {
	e := newCollectEnv(t)
	st := e.collect(t)
	c := st.Capture
	if !c.Exists || c.Active || c.ConfirmedFlushLSN == "" || c.LagBytes < 0 || c.WALStatus == "" || c.Error != "" {
		t.Errorf("capture %+v: want an existing inactive slot with its LSN and WAL status", c)
	}
	if len(st.Sinks) != 1 {
		t.Fatalf("sinks %+v", st.Sinks)
	}
	s := st.Sinks[0]
	// p0: 5 records, committed at 2 → 3; p1: 2 records, nothing committed → 2.
	if s.Group != "crm" || len(s.Members) != 0 || s.Lag != 5 || s.DLQTopic != "crm.dlq" || s.DLQDepth != 3 || s.Error != "" {
		t.Errorf("sink %+v: want group crm, no members, lag 5, 3 dead letters", s)
	}
	if len(s.Topics) != 1 || len(s.Topics[0].Partitions) != 2 || s.Topics[0].Partitions[0] != (PartitionLag{Partition: 0, Committed: 2, End: 5, Lag: 3}) ||
		s.Topics[0].Partitions[1] != (PartitionLag{Partition: 1, Committed: -1, End: 2, Lag: 2}) {
		t.Errorf("topics %+v", s.Topics)
	}
	if st.Healthy || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "no members") {
		t.Errorf("problems %q: want only the memberless group", st.Problems)
	}
	st = e.collect(t, WithThresholds(Thresholds{MaxLag: 4, MaxLagBytes: 0}))
	if len(st.Problems) != 2 || !strings.Contains(st.Problems[1], "lag 5 records is above --max-lag 4") {
		t.Errorf("problems %q: want the lag above 4 too", st.Problems)
	}

	// Nothing holds the capture lock any more: no capture runs, whatever the slot holds back.
	if err := e.holder.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The server releases the lock as the closed session's backend exits, a moment after the
	// client closed it: status may show it held until then.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if st = e.collect(t); st.Capture.Instance == "" || time.Now().After(deadline) {
			break
		}
	}
	if st.Capture.Instance != "" || len(st.Problems) != 2 || !strings.Contains(st.Problems[0], `no capture process holds or reads replication slot "backflow"`) {
		t.Errorf("capture gone: %+v %q", st.Capture, st.Problems)
	}

	e.cfg.Source.Postgres.Slot = "other"
	if st = e.collect(t); st.Capture.Exists || !strings.Contains(strings.Join(st.Problems, "\n"), `"other" does not exist`) {
		t.Errorf("missing slot: %+v %q", st.Capture, st.Problems)
	}
	if err := e.pg.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	st = e.collect(t, WithTimeout(5*time.Second))
	if st.Healthy || st.Capture.Error == "" || !strings.Contains(st.Problems[0], "database") {
		t.Errorf("database down: %+v %q", st.Capture, st.Problems)
	}
}

// TestCollectKafkaDown: an unreachable broker is one problem naming it, within the timeout.
func TestCollectKafkaDown(t *testing.T) {
	e := newCollectEnv(t)
	e.kf.Stop()
	start := time.Now()
	st := e.collect(t, WithTimeout(3*time.Second))
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("collect took %v with a 3s timeout", took)
	}
	if st.Kafka.Error == "" || st.Healthy || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], e.cfg.Kafka.Brokers[0]) {
		t.Errorf("kafka down: %+v %q", st.Kafka, st.Problems)
	}
	if !st.Capture.Exists {
		t.Errorf("the slot should still be read: %+v", st.Capture)
	}
}

// TestCollectUnpublishedTables: a configured table that exists but is not in the publication
// (replaced by a CREATE TABLE AS capture could not add) is a problem naming it; a partitioned
// table whose partitions the publication lists is not.
func TestCollectUnpublishedTables(t *testing.T) {
	e := newCollectEnv(t)
	err := e.pg.Exec(context.Background(), `CREATE TABLE public.u AS SELECT 1 AS id;
		CREATE TABLE public.p (id int PRIMARY KEY) PARTITION BY RANGE (id);
		CREATE TABLE public.p1 PARTITION OF public.p FOR VALUES FROM (0) TO (100);
		ALTER PUBLICATION backflow ADD TABLE public.p`)
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.Source.Postgres.Tables = []string{"public.w", "public.u", "public.p", "public.gone"}
	st, err := Collect(context.Background(), e.cfg, []kgo.Opt{kgo.SeedBrokers(e.kf.Brokers()...)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Capture.UnpublishedTables, []string{"public.u"}) {
		t.Fatalf("unpublished tables %q, want [public.u]", st.Capture.UnpublishedTables)
	}
	// public.u is keyless too: named once, for that.
	problems := strings.Join(st.Problems, "\n")
	if st.Healthy || !strings.Contains(problems, "table public.u has no primary key") || strings.Contains(problems, "not in publication") {
		t.Fatalf("healthy %v, problems %q: want the keyless table named once", st.Healthy, st.Problems)
	}
	err = e.pg.Exec(context.Background(), `ALTER TABLE public.u ADD PRIMARY KEY (id)`)
	if err != nil {
		t.Fatal(err)
	}
	st, err = Collect(context.Background(), e.cfg, []kgo.Opt{kgo.SeedBrokers(e.kf.Brokers()...)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Healthy || !strings.Contains(strings.Join(st.Problems, "\n"), "table public.u is not in publication backflow") {
		t.Fatalf("healthy %v, problems %q: want the unpublished table named", st.Healthy, st.Problems)
	}
}

// TestCollectUnkeyedTables: a table without a key that an entry names, a schema.* pattern
// included, is a problem naming it; one keyed in source.postgres.keys, or by its replica
// identity index, is not.
func TestCollectUnkeyedTables(t *testing.T) {
	e := newCollectEnv(t)
	err := e.pg.Exec(context.Background(), `CREATE SCHEMA app;
		CREATE TABLE app.ok (id int PRIMARY KEY); CREATE TABLE app.tmp AS SELECT 1 AS id;
		CREATE TABLE app.keyed AS SELECT 1 AS id; CREATE TABLE public.elsewhere AS SELECT 1 AS id;
		CREATE TABLE app.ident (id int NOT NULL); CREATE UNIQUE INDEX ident_id ON app.ident (id);
		ALTER TABLE app.ident REPLICA IDENTITY USING INDEX ident_id`)
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.Source.Postgres.Tables = []string{"public.w", "app.*"}
	e.cfg.Source.Postgres.Keys = map[string][]string{"app.keyed": {"id"}}
	st, err := Collect(context.Background(), e.cfg, []kgo.Opt{kgo.SeedBrokers(e.kf.Brokers()...)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Capture.UnkeyedTables, []string{"app.tmp"}) {
		t.Fatalf("unkeyed tables %q, want [app.tmp]", st.Capture.UnkeyedTables)
	}
	if st.Healthy || !strings.Contains(strings.Join(st.Problems, "\n"), "table app.tmp has no primary key") {
		t.Fatalf("healthy %v, problems %q: want the keyless table named", st.Healthy, st.Problems)
	}
}

// TestCollectMissingTables: a configured table that does not exist (renamed away, dropped) is a
// problem naming it, as is one a sink reads that a pattern captures; tables matched by a pattern
// that nothing names are not looked up.
func TestCollectMissingTables(t *testing.T) {
	e := newCollectEnv(t)
	e.cfg.Source.Postgres.Tables = []string{"public.w", "public.gone", "analytics.*"}
	e.cfg.Sinks = append(e.cfg.Sinks, config.Sink{Name: "shop", From: []string{"analytics.orders", "public.gone", "other.t"}})
	kopts := []kgo.Opt{kgo.SeedBrokers(e.kf.Brokers()...)}
	st, err := Collect(context.Background(), e.cfg, kopts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Capture.MissingTables, []string{"public.gone", "analytics.orders"}) {
		t.Fatalf("missing tables %q, want [public.gone analytics.orders]", st.Capture.MissingTables)
	}
	if st.Healthy || !strings.Contains(strings.Join(st.Problems, "\n"), "table public.gone no longer exists") {
		t.Fatalf("healthy %v, problems %q: want the missing table named", st.Healthy, st.Problems)
	}
}

// TestCollectUnloggedTables: an UNLOGGED table an entry names, a schema.* pattern included, and a
// partitioned table with UNLOGGED partitions are problems naming them; logged ones are not.
func TestCollectUnloggedTables(t *testing.T) {
	e := newCollectEnv(t)
	err := e.pg.Exec(context.Background(), `CREATE SCHEMA app;
		CREATE TABLE app.ok (id int PRIMARY KEY); CREATE UNLOGGED TABLE app.staging (id int PRIMARY KEY);
		CREATE UNLOGGED TABLE public.elsewhere (id int PRIMARY KEY);
		CREATE TABLE public.p (id int PRIMARY KEY) PARTITION BY RANGE (id);
		CREATE UNLOGGED TABLE public.p1 PARTITION OF public.p FOR VALUES FROM (0) TO (100);
		CREATE UNLOGGED TABLE public.p2 PARTITION OF public.p FOR VALUES FROM (100) TO (200);
		CREATE TABLE public.p3 PARTITION OF public.p FOR VALUES FROM (200) TO (300)`)
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.Source.Postgres.Tables = []string{"public.w", "public.p", "app.*"}
	st := e.collect(t)
	want := []string{"app.staging", "public.p (partitions public.p1, public.p2)"}
	if !slices.Equal(st.Capture.UnloggedTables, want) {
		t.Fatalf("unlogged tables %q, want %q", st.Capture.UnloggedTables, want)
	}
	problems := strings.Join(st.Problems, "\n")
	for _, p := range []string{"table app.staging is UNLOGGED", "table public.p has UNLOGGED partitions public.p1, public.p2"} {
		if st.Healthy || !strings.Contains(problems, p) {
			t.Fatalf("healthy %v, problems %q: want %q", st.Healthy, st.Problems, p)
		}
	}
	if err := e.pg.Exec(context.Background(), `ALTER TABLE app.staging SET LOGGED; ALTER TABLE public.p1 SET LOGGED; ALTER TABLE public.p2 SET LOGGED`); err != nil {
		t.Fatal(err)
	}
	if st := e.collect(t); len(st.Capture.UnloggedTables) > 0 || strings.Contains(strings.Join(st.Problems, "\n"), "UNLOGGED") {
		t.Fatalf("unlogged tables %q, problems %q: want none once logged", st.Capture.UnloggedTables, st.Problems)
	}
}

// TestCollectUnpublishedOperations: a publication that does not publish some operations (its
// publish option) is a problem naming them; one publishing all is not.
func TestCollectUnpublishedOperations(t *testing.T) {
	e := newCollectEnv(t)
	if err := e.pg.Exec(context.Background(), `ALTER PUBLICATION backflow SET (publish = 'insert, update')`); err != nil {
		t.Fatal(err)
	}
	st := e.collect(t)
	if !slices.Equal(st.Capture.UnpublishedOperations, []string{"delete", "truncate"}) {
		t.Fatalf("unpublished operations %q, want [delete truncate]", st.Capture.UnpublishedOperations)
	}
	if st.Healthy || !strings.Contains(strings.Join(st.Problems, "\n"), "publication backflow does not publish delete, truncate") {
		t.Fatalf("healthy %v, problems %q: want the unpublished operations named", st.Healthy, st.Problems)
	}
	if err := e.pg.Exec(context.Background(), `ALTER PUBLICATION backflow SET (publish = 'insert, update, delete, truncate')`); err != nil {
		t.Fatal(err)
	}
	if st := e.collect(t); len(st.Capture.UnpublishedOperations) > 0 || strings.Contains(strings.Join(st.Problems, "\n"), "does not publish") {
		t.Fatalf("unpublished operations %q, problems %q: want none", st.Capture.UnpublishedOperations, st.Problems)
	}
}
