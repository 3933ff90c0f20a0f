package kafka

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

func newClient(t *testing.T, brokers []string, extra ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts, err := ClientOpts(config.Kafka{Brokers: brokers}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func TestEnsureTopics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := testenv.NewKafka(t)
	adm := kadm.NewClient(newClient(t, k.Brokers()))

	topics := []string{"wh.public.a", "wh.public.b", "wh.public.a"}
	cfg := config.Topics{Partitions: 4, ReplicationFactor: 1, CleanupPolicy: "compact"}
	extra := map[string]string{"retention.ms": "3600000"}
	if err := EnsureTopics(ctx, adm, topics, cfg, extra); err != nil {
		t.Fatal(err)
	}
	// Idempotent, and existing topics are left alone even with other settings.
	if err := EnsureTopics(ctx, adm, topics, config.Topics{Partitions: 9, CleanupPolicy: "delete"}, nil); err != nil {
		t.Fatalf("second EnsureTopics: %v", err)
	}
	details, err := adm.ListTopics(ctx, "wh.public.a", "wh.public.b")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"wh.public.a", "wh.public.b"} {
		if got := len(details[name].Partitions); got != 4 {
			t.Errorf("%s has %d partitions, want 4", name, got)
		}
	}
	assertTopicConfig(ctx, t, adm, "wh.public.a", map[string]string{"cleanup.policy": "compact", "retention.ms": "3600000"})
}

func TestEnsureTopicsDefaultsAndExtraWins(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := testenv.NewKafka(t)
	adm := kadm.NewClient(newClient(t, k.Brokers()))
	if err := EnsureTopics(ctx, adm, []string{"d"}, config.Topics{}, nil); err != nil {
		t.Fatal(err)
	}
	if err := EnsureTopics(ctx, adm, []string{"dlq"}, config.Topics{}, map[string]string{"cleanup.policy": "delete"}); err != nil {
		t.Fatal(err)
	}
	details, err := adm.ListTopics(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(details["d"].Partitions); got != int(DefaultPartitions) {
		t.Errorf("default partitions = %d, want %d", got, DefaultPartitions)
	}
	assertTopicConfig(ctx, t, adm, "d", map[string]string{"cleanup.policy": "compact"})
	assertTopicConfig(ctx, t, adm, "dlq", map[string]string{"cleanup.policy": "delete"})
}

func TestEnsureTopicsErrorNamesTopic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := testenv.NewKafka(t)
	adm := kadm.NewClient(newClient(t, k.Brokers()))
	if err := EnsureTopics(ctx, adm, []string{"wh.x"}, config.Topics{Partitions: 1}, nil); err != nil {
		t.Fatal(err)
	}
	// Kafka rejects a name that collides with an existing one once '.' and '_' are unified.
	err := EnsureTopics(ctx, adm, []string{"ok", "wh_x"}, config.Topics{Partitions: 1}, nil)
	if err == nil || !strings.Contains(err.Error(), `"wh_x"`) || strings.Contains(err.Error(), `"ok"`) {
		t.Fatalf("error %v does not name the bad topic", err)
	}
	t.Logf("expected error: %v", err)
}

func assertTopicConfig(ctx context.Context, t *testing.T, adm *kadm.Client, topic string, want map[string]string) {
	t.Helper()
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range rc.Configs {
		got[c.Key] = c.MaybeValue()
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s = %q, want %q", topic, k, got[k], v)
		}
	}
}

func TestProducerPartitionsLikeJava(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := testenv.NewKafka(t)
	const parts = 7
	adm := kadm.NewClient(newClient(t, k.Brokers()))
	if err := EnsureTopics(ctx, adm, []string{"keyed"}, config.Topics{Partitions: parts}, nil); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, k.Brokers(), append(ProducerOpts(), kgo.DefaultProduceTopic("keyed"))...)
	var recs []*kgo.Record
	for i := range 200 {
		key := fmt.Sprintf("sku-%d|wh-%d", i, i%3)
		recs = append(recs, &kgo.Record{Key: []byte(key), Value: []byte(strings.Repeat(key, 10))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if want := javaPartition(r.Key, parts); r.Partition != want {
			t.Errorf("key %q went to partition %d, Kafka's Java client uses %d", r.Key, r.Partition, want)
		}
	}
	got, err := testenv.ConsumeAll(ctx, k.Brokers(), "keyed")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("consumed %d records, want %d", len(got), len(recs))
	}
	for _, r := range got {
		if string(r.Value) != strings.Repeat(string(r.Key), 10) || r.Partition != javaPartition(r.Key, parts) {
			t.Errorf("consumed key %q in partition %d with value %q", r.Key, r.Partition, r.Value)
		}
	}
}

func TestEmbeddedRestartKeepsRecordsAndOffsets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	log := zaptest.NewLogger(t)
	e, err := StartEmbedded(ctx, dataDir, 0, log)
	if err != nil {
		t.Fatal(err)
	}
	brokers := e.Brokers()
	adm := kadm.NewClient(newClient(t, brokers))
	if err := EnsureTopics(ctx, adm, []string{"events"}, config.Topics{Partitions: 3}, nil); err != nil {
		t.Fatal(err)
	}
	produceN(ctx, t, brokers, "events", 0, 50)
	committed := consumeAndCommit(ctx, t, brokers, "events", "g1", 30)
	e.Close()

	port := strings.TrimPrefix(brokers[0], "127.0.0.1:")
	var p int
	if _, err := fmt.Sscan(port, &p); err != nil {
		t.Fatal(err)
	}
	e, err = StartEmbedded(ctx, dataDir, p, log)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	got, err := testenv.ConsumeAll(ctx, e.Brokers(), "events")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 50 {
		t.Fatalf("after restart %d records, want 50", len(got))
	}
	assertCommitted(ctx, t, e.Brokers(), "g1", committed)
}

func TestEmbeddedFilesArePrivate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	e, err := StartEmbedded(ctx, dataDir, 0, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(newClient(t, e.Brokers()))
	if err := EnsureTopics(ctx, adm, []string{"events"}, config.Topics{Partitions: 2}, nil); err != nil {
		t.Fatal(err)
	}
	produceN(ctx, t, e.Brokers(), "events", 0, 20)
	e.Close()
	modes := func() map[string]fs.FileMode {
		m := map[string]fs.FileMode{}
		err := filepath.WalkDir(e.Dir(), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			m[path] = info.Mode()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	check := func(when string) {
		t.Helper()
		files := 0
		for path, mode := range modes() {
			want := fs.FileMode(0o600)
			if mode.IsDir() {
				want = 0o700
			} else {
				files++
			}
			if mode.Perm() != want {
				t.Errorf("%s: %s has mode %o, want %o", when, path, mode.Perm(), want)
			}
		}
		if files == 0 {
			t.Fatalf("%s: no files under %s", when, e.Dir())
		}
	}
	check("after the first run")

	// State an older version left readable to all is made private at the next start.
	for path, mode := range modes() {
		loose := fs.FileMode(0o644)
		if mode.IsDir() {
			loose = 0o755
		}
		if err := os.Chmod(path, loose); err != nil {
			t.Fatal(err)
		}
	}
	if e, err = StartEmbedded(ctx, dataDir, 0, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	check("at start")
	produceN(ctx, t, e.Brokers(), "events", 20, 20)
	e.Close()
	check("after a restart")
}

func produceN(ctx context.Context, t *testing.T, brokers []string, topic string, from, n int) {
	t.Helper()
	cl := newClient(t, brokers, append(ProducerOpts(), kgo.DefaultProduceTopic(topic))...)
	var recs []*kgo.Record
	for i := from; i < from+n; i++ {
		recs = append(recs, kgo.StringRecord(fmt.Sprint(i)))
		recs[len(recs)-1].Key = []byte(fmt.Sprint(i))
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// consumeAndCommit consumes at least n records in group and commits them; it returns the
// committed offsets.
func consumeAndCommit(ctx context.Context, t *testing.T, brokers []string, topic, group string, n int) map[int32]int64 {
	t.Helper()
	opts, err := ClientOpts(config.Kafka{Brokers: brokers}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topic), kgo.ConsumerGroup(group),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	next := map[int32]int64{}
	var seen int
	for seen < n {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			seen++
			next[r.Partition] = r.Offset + 1
		})
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return next
}

func assertCommitted(ctx context.Context, t *testing.T, brokers []string, group string, want map[int32]int64) {
	t.Helper()
	offs, err := kadm.NewClient(newClient(t, brokers)).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if err := offs.Error(); err != nil {
		t.Fatal(err)
	}
	for p, w := range want {
		o, ok := offs.Lookup("events", p)
		if !ok || o.At != w {
			t.Errorf("group %s partition %d: committed %d (found %v), want %d", group, p, o.At, ok, w)
		}
	}
	if len(want) == 0 {
		t.Fatal("nothing was committed")
	}
}

func TestClientOptsErrors(t *testing.T) {
	cases := map[string]config.Kafka{
		"no brokers":     {},
		"missing CA":     {Brokers: []string{"x:1"}, TLS: &config.TLS{CAFile: "/nonexistent/ca.pem"}},
		"cert no key":    {Brokers: []string{"x:1"}, TLS: &config.TLS{CertFile: "c.pem"}},
		"bad mechanism":  {Brokers: []string{"x:1"}, SASL: &config.SASL{Mechanism: "GSSAPI", Username: "u"}},
		"empty username": {Brokers: []string{"x:1"}, SASL: &config.SASL{Mechanism: "PLAIN"}},
	}
	for name, cfg := range cases {
		if _, err := ClientOpts(cfg, nil); err == nil {
			t.Errorf("%s: no error", name)
		} else if name == "missing CA" && !strings.Contains(err.Error(), "/nonexistent/ca.pem") {
			t.Errorf("%s: error %v does not name the file", name, err)
		}
	}
}

// TestCompactOnly: only a topic whose cleanup.policy is compact alone is compact-only; a topic
// created without one has the broker's default (delete), and a missing topic is not.
func TestCompactOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := testenv.NewKafka(t)
	adm := kadm.NewClient(newClient(t, k.Brokers()))
	for topic, policy := range map[string]string{"c": "compact", "d": "delete", "cd": "compact,delete", "dc": "delete, compact"} {
		if err := EnsureTopics(ctx, adm, []string{topic}, config.Topics{Partitions: 1, CleanupPolicy: policy}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "plain"); err != nil {
		t.Fatal(err)
	}
	got, err := CompactOnly(ctx, adm, "c", "d", "cd", "dc", "plain")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"c": true, "d": false, "cd": false, "dc": false, "plain": false}
	if !maps.Equal(got, want) {
		t.Errorf("CompactOnly = %v, want %v", got, want)
	}
	got, err = CompactOnly(ctx, adm, "c", "missing")
	if err == nil || !strings.Contains(err.Error(), `"missing"`) || !got["c"] || got["missing"] {
		t.Errorf("with a missing topic: %v, %v; want c compact-only and an error naming the missing one", got, err)
	}
}

// agedTopics creates topics of two partitions with the given cleanup policies and a
// delete.retention.ms of an hour, on a broker of their own. produce writes one record in a batch
// of its own (compaction keeps a partition's last batch) with the timestamp at; value "" is a
// tombstone.
func agedTopics(ctx context.Context, t *testing.T, policies map[string]string) (*testenv.Kafka, *kadm.Client,
	func(topic string, p int32, key, value string, at time.Time)) {
	t.Helper()
	k := testenv.NewKafka(t)
	cl := newClient(t, k.Brokers(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	adm := kadm.NewClient(cl)
	for topic, policy := range policies {
		err := EnsureTopics(ctx, adm, []string{topic}, config.Topics{Partitions: 2, CleanupPolicy: policy}, map[string]string{"delete.retention.ms": "3600000"})
		if err != nil {
			t.Fatal(err)
		}
	}
	return k, adm, func(topic string, p int32, key, value string, at time.Time) {
		t.Helper()
		r := &kgo.Record{Topic: topic, Partition: p, Key: []byte(key), Timestamp: at}
		if value != "" {
			r.Value = []byte(value)
		}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeleteHorizons: on a compacted topic, the horizon is the first record younger than its
// delete.retention.ms (the end when every record is older); a topic that does not compact has
// none.
func TestDeleteHorizons(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, adm, produce := agedTopics(ctx, t, map[string]string{"c": "compact", "cd": "compact,delete", "d": "delete"})
	now := time.Now()
	// Partition 0: three records two hours old, then two ten minutes old; partition 1: only old ones.
	ages := map[int32][]time.Duration{0: {2 * time.Hour, 2 * time.Hour, 2 * time.Hour, 10 * time.Minute, 10 * time.Minute}, 1: {3 * time.Hour}}
	for _, topic := range []string{"c", "cd", "d"} {
		for p, as := range ages {
			for i, age := range as {
				produce(topic, p, fmt.Sprintf("k%d", i), "v", now.Add(-age))
			}
		}
	}
	cleanups, err := Cleanups(ctx, adm, "c", "cd", "d")
	if err != nil {
		t.Fatal(err)
	}
	if c := cleanups["cd"]; !c.Compacts || c.CompactOnly || c.DeleteRetention != time.Hour {
		t.Errorf("cleanup of compact,delete = %+v", c)
	}
	got, err := DeleteHorizons(ctx, adm, now, cleanups)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[int32]int64{"c": {0: 3, 1: 1}, "cd": {0: 3, 1: 1}}
	if len(got) != len(want) || !maps.Equal(got["c"], want["c"]) || !maps.Equal(got["cd"], want["cd"]) {
		t.Errorf("DeleteHorizons = %v, want %v", got, want)
	}
}

// TestDeleteRisks: a reader behind records older than delete.retention.ms, among which
// compaction removed some, has deletes at risk; one behind old records compaction left alone
// has none; one whose every record up to the horizon compaction removed cannot tell; one at or
// past the horizon has none.
func TestDeleteRisks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k, adm, produce := agedTopics(ctx, t, map[string]string{"c": "compact"})
	now := time.Now()
	type rec struct {
		key, value string // value "" is a tombstone
		age        time.Duration
	}
	parts := map[int32][]rec{
		// Old records, the first of which compaction removes (a later one of its key supersedes it).
		0: {{"a", "1", 3 * time.Hour}, {"a", "2", 3 * time.Hour}, {"b", "1", 3 * time.Hour}, {"c", "1", 10 * time.Minute}, {"d", "1", 10 * time.Minute}},
		// A key deleted two hours ago: compaction removes its record and its tombstone.
		1: {{"x", "1", 3 * time.Hour}, {"x", "", 2 * time.Hour}, {"y", "1", 10 * time.Minute}, {"z", "1", 10 * time.Minute}},
	}
	for p, rs := range parts {
		for _, r := range rs {
			produce("c", p, r.key, r.value, now.Add(-r.age))
		}
	}
	k.Cluster.Compact()
	cleanups, err := Cleanups(ctx, adm, "c")
	if err != nil {
		t.Fatal(err)
	}
	horizons, err := DeleteHorizons(ctx, adm, now, cleanups)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int32]int64{0: 3, 1: 2}; !maps.Equal(horizons["c"], want) {
		t.Fatalf("horizons %v, want %v", horizons["c"], want)
	}
	opts := []kgo.Opt{kgo.SeedBrokers(k.Brokers()...)}
	for _, tc := range []struct {
		name string
		p    int32
		pos  int64
		want DeleteRisk
	}{
		{"behind old records, one removed", 0, 0, DeletesAtRisk},
		{"behind old records, none removed", 0, 1, NoDeleteRisk},
		{"behind only removed records", 1, 0, DeleteRiskUnknown},
		{"at the horizon", 0, 3, NoDeleteRisk},
		{"past the horizon", 1, 3, NoDeleteRisk},
	} {
		got, err := DeleteRisks(ctx, opts, "c", map[int32]int64{tc.p: tc.pos}, horizons["c"])
		if err != nil {
			t.Fatal(err)
		}
		if got[tc.p] != tc.want {
			t.Errorf("%s: risk %v, want %v", tc.name, got[tc.p], tc.want)
		}
	}
}

func TestIsCompactOnly(t *testing.T) {
	for policy, want := range map[string]bool{
		"compact": true, " compact ": true, "compact,": true, "delete": false, "compact,delete": false,
		"delete,compact": false, "": false, "compacted": false,
	} {
		if got := isCompactOnly(policy); got != want {
			t.Errorf("isCompactOnly(%q) = %v, want %v", policy, got, want)
		}
	}
}

func TestCleanupOf(t *testing.T) {
	str := func(s string) *string { return &s }
	for _, tc := range []struct {
		name    string
		configs []kadm.Config
		want    Cleanup
		ok      bool
		err     string
	}{
		{"compact with retention", []kadm.Config{{Key: "cleanup.policy", Value: str("compact")}, {Key: "delete.retention.ms", Value: str("1000")}},
			Cleanup{CompactOnly: true, Compacts: true, DeleteRetention: time.Second}, true, ""},
		{"delete", []kadm.Config{{Key: "cleanup.policy", Value: str("delete")}}, Cleanup{}, true, ""},
		{"no policy", []kadm.Config{{Key: "delete.retention.ms", Value: str("1000")}}, Cleanup{DeleteRetention: time.Second}, false, ""},
		{"a bad retention", []kadm.Config{{Key: "cleanup.policy", Value: str("compact")}, {Key: "delete.retention.ms", Value: str("soon")}},
			Cleanup{CompactOnly: true, Compacts: true}, true, `delete.retention.ms "soon"`},
		{"a negative retention", []kadm.Config{{Key: "cleanup.policy", Value: str("compact")}, {Key: "delete.retention.ms", Value: str("-1")}},
			Cleanup{CompactOnly: true, Compacts: true}, true, `delete.retention.ms "-1"`},
	} {
		got, ok, err := cleanupOf(tc.configs)
		if got != tc.want || ok != tc.ok || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: cleanupOf = %+v, %v, %v; want %+v, %v, an error saying %q", tc.name, got, ok, err, tc.want, tc.ok, tc.err)
		}
	}
}

// FuzzIsCompactOnly: whatever a broker sends as cleanup.policy, a value read as compact-only
// names compact and not delete; a trailing comma or spaces change nothing; adding delete makes
// any value not compact-only, and adding compact to a compact-only one keeps it so.
func FuzzIsCompactOnly(f *testing.F) {
	for _, s := range []string{"compact", "delete", "compact,delete", " compact ,", "", ",", "compact,compact", "Compact"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, policy string) {
		got := isCompactOnly(policy)
		if got && (!strings.Contains(policy, "compact") || strings.Contains(policy, "delete")) {
			t.Errorf("isCompactOnly(%q) = true", policy)
		}
		if isCompactOnly(policy+", ") != got || isCompactOnly(" "+policy) != got {
			t.Errorf("isCompactOnly(%q) = %v changes with a trailing comma or a space", policy, got)
		}
		if isCompactOnly(policy + ",delete") {
			t.Errorf("isCompactOnly(%q) = true", policy+",delete")
		}
		if got && !isCompactOnly(policy+",compact") {
			t.Errorf("isCompactOnly(%q) = false, but %q is compact-only", policy+",compact", policy)
		}
		// cleanupOf reads the same value: compact-only compacts, and adding compact always does.
		c, ok, err := cleanupOf([]kadm.Config{{Key: "cleanup.policy", Value: &policy}})
		if !ok || err != nil || c.CompactOnly != got || (got && !c.Compacts) {
			t.Errorf("cleanupOf(%q) = %+v, %v, %v; isCompactOnly says %v", policy, c, ok, err, got)
		}
		more := policy + ",compact"
		if c, _, _ := cleanupOf([]kadm.Config{{Key: "cleanup.policy", Value: &more}}); !c.Compacts {
			t.Errorf("cleanupOf(%q) does not compact", more)
		}
	})
}
