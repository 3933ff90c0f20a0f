package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/sink"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestSinkReadsUnwrappedRows runs a sink with envelope: none over a topic as Debezium writes it
// through ExtractNewRecordState (add.fields=op, delete.handling.mode=rewrite,
// drop.tombstones=false), in JsonConverter's forms with and without schemas: inserts, an update
// with its schema, a delete rewritten with __deleted, a delete as a tombstone only, a row
// without __op. The target ends with exactly the rows left, the metadata fields are no columns
// of it, and a change envelope on the topic goes to the dead-letter topic with its reason.
func TestSinkReadsUnwrappedRows(t *testing.T) {
	const topic = "dbserver1.inventory.articles"
	bin, kf, dst := buildBinary(t), testenv.NewKafka(t), testenv.NewPostgres(t)
	ctx := context.Background()
	if err := dst.Exec(ctx, `CREATE TABLE public.articles (id int PRIMARY KEY, title text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, fmt.Sprintf(`kafka:
  brokers: [%s]
  topics: {partitions: 1}
  session_timeout: 6s
log: {format: json, level: warn}
sinks:
  - name: articles
    topics: [%s]
    envelope: none
    connector: postgres
    with: {url: "%s", table: public.articles}
    key: [id]
    batch: {max_records: 100, max_wait: 20ms}
`, strings.Join(kf.Brokers(), ", "), topic, dst.URL("postgres")))

	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(kf.Brokers()...)}, kafka.ProducerOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafka.EnsureTopics(ctx, kadm.NewClient(cl), []string{topic}, config.Topics{Partitions: 1, ReplicationFactor: 1, CleanupPolicy: "delete"}, nil); err != nil {
		t.Fatal(err)
	}
	const schema = `{"type":"struct","name":"dbserver1.inventory.articles.Value","fields":[` +
		`{"field":"id","type":"int32"},{"field":"title","type":"string"},{"field":"__op","type":"string","optional":true},` +
		`{"field":"__deleted","type":"string","optional":true}]}`
	key := func(id int) []byte { return fmt.Appendf(nil, `{"id":%d}`, id) }
	var recs []*kgo.Record
	add := func(id int, value string) {
		r := &kgo.Record{Topic: topic, Key: key(id)}
		if value != "" {
			r.Value = []byte(value)
		}
		recs = append(recs, r)
	}
	for id := 1; id <= 4; id++ {
		add(id, fmt.Sprintf(`{"id":%d,"title":"t%d","__op":"c","__deleted":"false"}`, id, id))
	}
	add(2, `{"schema":`+schema+`,"payload":{"id":2,"title":"t2 new","__op":"u","__deleted":"false"}}`)
	add(3, `{"id":3,"title":"t3","__op":"d","__deleted":"true"}`)
	add(3, "") // the tombstone after the rewritten delete
	add(4, "") // a delete kept as its tombstone only
	add(5, `{"id":5,"title":"t5"}`)
	add(6, `{"op":"c","after":{"id":6,"title":"t6"},"source":{"schema":"inventory","table":"articles"}}`)
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	p := startProcess(t, bin, "sink", "-c", cfg)
	const want = "1:t1 2:t2 new 5:t5"
	deadline := time.Now().Add(time.Minute)
	for {
		got := strings.Join(rows(t, dst, `SELECT id || ':' || title FROM public.articles ORDER BY id`), " ")
		if got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("target rows %q, want %q; log:\n%s", got, want, p.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
	dead := readDLQ(t, kf.Brokers(), "articles")
	if len(dead) != 1 || string(dead[0].Key) != `{"id":6}` || !strings.Contains(headerValue(dead[0], sink.HeaderReason), "envelope: debezium") {
		var got []string
		for _, r := range dead {
			got = append(got, string(r.Key)+" "+headerValue(r, sink.HeaderReason))
		}
		t.Fatalf("dead letters %q, want the envelope of id 6 with a reason naming envelope: debezium", got)
	}
	terminate(t, p)
	checkTailRows(t, bin, cfg, topic)
	out, err := exec.Command(bin, "status", "--json", "-c", cfg).Output()
	var st struct{ Sinks []struct{ Lag int64 } }
	if jerr := json.Unmarshal(out, &st); jerr != nil || len(st.Sinks) != 1 || st.Sinks[0].Lag != 0 {
		t.Fatalf("status --json (%v): %s: want one sink without lag", err, out)
	}
}

// checkTailRows: tail reads the topic as the sink does, as rows: the tombstone of id 4 prints as
// its delete, the row without __op as an update, and no metadata field shows.
func checkTailRows(t *testing.T, bin, cfg, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "tail", "--topic", topic, "--from", "earliest", "-n", "9", "-c", cfg).Output()
	if err != nil {
		t.Fatalf("tail: %v\n%s", err, out)
	}
	lines := jsonLines(t, string(out))
	if len(lines) != 9 {
		t.Fatalf("tail printed %d events, want the 9 rows and tombstones:\n%s", len(lines), out)
	}
	var got []string
	for _, l := range lines {
		row, _ := l["after"].(map[string]any)
		if row == nil {
			row, _ = l["before"].(map[string]any)
		}
		got = append(got, fmt.Sprintf("%v:%v:%d", l["op"], row["id"], len(row)))
	}
	// op:id:fields (a tombstone's row is its key)
	want := "c:1:2 c:2:2 c:3:2 c:4:2 u:2:2 d:3:2 d:3:1 d:4:1 u:5:2"
	if strings.Join(got, " ") != want {
		t.Fatalf("tail events %q, want %q:\n%s", strings.Join(got, " "), want, out)
	}
}

// TestKafkaConnectorChainKeepsTruncates chains two sinks, each with two members: one writes a table's changes as rows
// to a topic of 4 partitions through the kafka connector, the other applies that topic with
// envelope: none to PostgreSQL. Reloads of the table (BEGIN; TRUNCATE; INSERT …; COMMIT) reach
// the second target at their place in every partition: it ends equal to the table, with no row
// from before the last reload and none of the reloaded rows lost to a late truncate.
func TestKafkaConnectorChainKeepsTruncates(t *testing.T) {
	ctx := context.Background()
	bin := buildBinary(t)
	src, dst, kf := testenv.NewPostgres(t), testenv.NewPostgres(t), testenv.NewKafka(t)
	must(t, src.Exec(ctx, `CREATE TABLE public.m (id int PRIMARY KEY, v text NOT NULL);
		INSERT INTO public.m SELECT g, 'old' || g FROM generate_series(1, 200) g`))
	must(t, dst.Exec(ctx, `CREATE TABLE public.m_copy (id int PRIMARY KEY, v text)`))
	cl, err := kgo.NewClient(kgo.SeedBrokers(kf.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafka.EnsureTopics(ctx, kadm.NewClient(cl), []string{"m.flat"}, config.Topics{Partitions: 4, ReplicationFactor: 1, CleanupPolicy: "delete"}, nil); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, fmt.Sprintf(`source:
  postgres:
    url: %s
    tables: [public.m]
    status_interval: 200ms
kafka:
  brokers: [%s]
  topic_prefix: wh
  topics: {partitions: 3}
  session_timeout: 6s
log: {format: json, level: info}
sinks:
  - name: m-flat
    from: [public.m]
    connector: kafka
    with: {topic: m.flat}
    key: [id]
    batch: {max_records: 10, max_wait: 5ms}
  - name: m-rows
    topics: [m.flat]
    envelope: none
    connector: postgres
    with: {url: "%s", table: public.m_copy}
    key: [id]
    batch: {max_records: 10, max_wait: 5ms}
`, src.URL("postgres"), strings.Join(kf.Brokers(), ", "), dst.URL("postgres")))
	p := startProcess(t, bin, "run", "-c", cfg)
	worker := startProcess(t, bin, "sink", "-c", cfg) // a second member of each sink's group
	converge := func(what string) {
		t.Helper()
		const q = `SELECT id || ':' || v FROM %s ORDER BY id`
		deadline := time.Now().Add(2 * time.Minute)
		for {
			want := strings.Join(rows(t, src, fmt.Sprintf(q, "public.m")), " ")
			got := strings.Join(rows(t, dst, fmt.Sprintf(q, "public.m_copy")), " ")
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the target differs from the table after 2 minutes:\n got %.300s\nwant %.300s\n%s\nworker:\n%s", what, got, want, p.tail(), worker.tail())
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	converge("initial snapshot")
	for round := 1; round <= 6; round++ {
		must(t, src.Exec(ctx, fmt.Sprintf(`BEGIN; TRUNCATE public.m;
			INSERT INTO public.m SELECT g, 'reload%d-' || g FROM generate_series(%d, %d) g; COMMIT`, round, round*20, 300+round*20)))
		for i := range 5 {
			must(t, src.Exec(ctx, fmt.Sprintf(`UPDATE public.m SET v = v || '+u' WHERE id %% 11 = %d`, (round+i)%11)))
		}
		time.Sleep(time.Duration(round*50) * time.Millisecond)
	}
	converge("six reloads")
	dead := readDLQ(t, kf.Brokers(), "m-rows")
	if len(dead) != 0 {
		t.Fatalf("%d dead letters on m-rows, first: %s", len(dead), headerValue(dead[0], sink.HeaderReason))
	}
	terminate(t, worker)
	terminate(t, p)
}
