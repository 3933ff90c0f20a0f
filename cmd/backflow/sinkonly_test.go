package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

// foreignTopic is written by "another deployment" with topic prefix "other": its Avro schemas
// are in other._schemas, not in the sink-only pipeline's own wh._schemas.
const foreignTopic = "other.public.items"

// sinkOnlyEnv is a broker holding foreignTopic, a target database and a sink-only pipeline file
// whose sink copies foreignTopic into the target under the sink prefix "envA.".
type sinkOnlyEnv struct {
	bin, config, text string
	kf                *testenv.Kafka
	dst               *testenv.Postgres
}

func newSinkOnlyEnv(t *testing.T) *sinkOnlyEnv {
	e := &sinkOnlyEnv{bin: buildBinary(t), kf: testenv.NewKafka(t), dst: testenv.NewPostgres(t)}
	if err := e.dst.Exec(context.Background(), `CREATE TABLE public.items_copy (id int PRIMARY KEY, v int NOT NULL, note text)`); err != nil {
		t.Fatal(err)
	}
	e.text = fmt.Sprintf(`kafka:
  brokers: [%s]
  topic_prefix: wh
  sink_prefix: envA.
  topics: {partitions: 1}
  session_timeout: 6s
log: {format: json, level: warn}
sinks:
  - name: items-copy
    topics: [%s]
    schema_topics: [other._schemas]
    connector: postgres
    with: {url: "%s", table: public.items_copy}
    key: [id]
    map:
      id: after.id
      v: after.v * 10
      note: after.note
    batch: {max_records: 100, max_wait: 20ms}
`, strings.Join(e.kf.Brokers(), ", "), foreignTopic, e.dst.URL("postgres"))
	e.config = writeConfig(t, e.text)
	return e
}

// produceForeign writes what another deployment's capture would: ids 1 to 5, then a delete of
// 2 with its tombstone, then one record no schema decodes.
func (e *sinkOnlyEnv) produceForeign(t *testing.T) {
	ctx := context.Background()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.kf.Brokers()...)}, kafka.ProducerOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topics := config.Topics{Partitions: 1, ReplicationFactor: 1, CleanupPolicy: "compact"}
	if err := kafka.EnsureTopics(ctx, kadm.NewClient(cl), []string{foreignTopic, "other._schemas"}, topics, nil); err != nil {
		t.Fatal(err)
	}
	enc, err := codec.NewEncoder(codec.TopicPrefix("other"), codec.SchemaPublisher(func(ctx context.Context, fp uint64, schema []byte) error {
		return cl.ProduceSync(ctx, &kgo.Record{Topic: "other._schemas", Key: codec.FingerprintKey(fp), Value: schema}).FirstErr()
	}))
	if err != nil {
		t.Fatal(err)
	}
	tbl := &change.Table{Schema: "public", Name: "items", Columns: []change.Column{
		{Name: "id", Kind: change.KindInt32, Key: true}, {Name: "v", Kind: change.KindInt32}, {Name: "note", Kind: change.KindString}}}
	var recs []*kgo.Record
	add := func(ev *change.Event, tombstone bool) {
		ev.Table = tbl
		key, val, err := enc.Encode(ctx, foreignTopic, ev)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: foreignTopic, Key: key, Value: val})
		if tombstone {
			recs = append(recs, &kgo.Record{Topic: foreignTopic, Key: key})
		}
	}
	for id := int32(1); id <= 5; id++ {
		add(&change.Event{Op: change.OpCreate, After: change.Row{"id": id, "v": id, "note": fmt.Sprintf("n%d", id)}}, false)
	}
	add(&change.Event{Op: change.OpDelete, Before: change.Row{"id": int32(2)}}, true)
	recs = append(recs, &kgo.Record{Topic: foreignTopic, Key: []byte("k"), Value: []byte("not an event")})
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// run runs the binary with the pipeline file and returns stdout, stderr and the exit code.
func (e *sinkOnlyEnv) run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(e.bin, append(args, "-c", e.config)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	go func() { <-ctx.Done(); _ = cmd.Process.Kill() }()
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return stdout.String(), stderr.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), 0
}

// waitRows waits until the target holds want ("id:v:note" by id).
func (e *sinkOnlyEnv) waitRows(t *testing.T, want string, p *process) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := strings.Join(rows(t, e.dst, `SELECT id || ':' || v || ':' || note FROM public.items_copy ORDER BY id`), " ")
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			log := ""
			if p != nil {
				log = p.tail()
			}
			t.Fatalf("target rows %q, want %q; log:\n%s", got, want, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSinkOnlyPipeline runs a pipeline file without a source against topics another deployment
// wrote: validate accepts it, capture names the missing source, the sink applies the topic
// (schemas from the other prefix's schema topic) under its prefixed group and dead-letter topic,
// status reports the sinks only, and a replay re-applies the topic.
func TestSinkOnlyPipeline(t *testing.T) {
	e := newSinkOnlyEnv(t)
	e.produceForeign(t)
	const want = "1:10:n1 3:30:n3 4:40:n4 5:50:n5"

	out, errOut, code := e.run(t, "validate")
	if code != 0 || !strings.Contains(out, "sink-only") {
		t.Fatalf("validate: exit %d\n%s%s", code, out, errOut)
	}
	for _, command := range []string{"capture", "run"} {
		_, errOut, code = e.run(t, command)
		if code != 2 || !strings.Contains(errOut, e.config) || !strings.Contains(errOut, "source.postgres: required by backflow "+command) {
			t.Errorf("%s: exit %d, want 2 naming the file and source.postgres:\n%s", command, code, errOut)
		}
	}

	p := startProcess(t, e.bin, "sink", "-c", e.config)
	e.waitRows(t, want, p)
	e.checkPrefixedNames(t, p)
	terminate(t, p)

	out, errOut, code = e.run(t, "status", "--json")
	var st struct {
		SinkOnly bool `json:"sink_only"`
		Sinks    []struct {
			Group    string
			DLQTopic string `json:"dlq_topic"`
			DLQDepth int64  `json:"dlq_depth"`
			Lag      int64
		}
		Problems []string
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || !st.SinkOnly || len(st.Sinks) != 1 {
		t.Fatalf("status --json: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	if s := st.Sinks[0]; s.Group != "envA.items-copy" || s.DLQTopic != "envA.items-copy.dlq" || s.DLQDepth != 1 || s.Lag != 0 {
		t.Errorf("status sink = %+v", s)
	}
	for _, pr := range st.Problems {
		if strings.Contains(pr, "slot") || strings.Contains(pr, "capture") {
			t.Errorf("sink-only status reports a capture problem: %s", pr)
		}
	}
	out, _, _ = e.run(t, "status")
	if strings.Contains(out, "SLOT") || !strings.Contains(out, "envA.items-copy") {
		t.Errorf("status shows a slot or lacks the group:\n%s", out)
	}

	if err := e.dst.Exec(context.Background(), `TRUNCATE public.items_copy`); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = e.run(t, "replay", "--sink", "items-copy", "--from", "earliest")
	if code != 0 || !strings.Contains(out, "replay done") {
		t.Fatalf("replay: exit %d\n%s%s", code, out, errOut)
	}
	e.waitRows(t, want, nil)
	e.checkReplayGroup(t)
}

// checkReplayGroup: the replay's group carries the sink prefix too.
func (e *sinkOnlyEnv) checkReplayGroup(t *testing.T) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kf.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	groups, err := kadm.NewClient(cl).ListGroups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var replays []string
	for _, g := range groups.Groups() {
		if strings.Contains(g, ".replay-") {
			replays = append(replays, g)
		}
	}
	if len(replays) != 1 || !strings.HasPrefix(replays[0], "envA.items-copy.replay-") {
		t.Errorf("replay groups %v, want one envA.items-copy.replay-…", replays)
	}
}

// checkPrefixedNames: the sink's group and dead-letter topic carry kafka.sink_prefix, and
// nothing is left under the bare sink name.
func (e *sinkOnlyEnv) checkPrefixedNames(t *testing.T, p *process) {
	t.Helper()
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kf.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(time.Minute)
	for {
		committed, err := adm.FetchOffsets(ctx, "envA.items-copy")
		if o, ok := committed.Lookup(foreignTopic, 0); err == nil && ok && o.At == 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("group envA.items-copy never committed offset 8 (%v, %v); log:\n%s", committed, err, p.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if bare, err := adm.FetchOffsets(ctx, "items-copy"); err == nil && len(bare) > 0 {
		t.Errorf("the bare group items-copy has offsets: %v", bare)
	}
	dlq, err := testenv.ConsumeAll(ctx, e.kf.Brokers(), "envA.items-copy.dlq")
	if err != nil || len(dlq) != 1 || string(dlq[0].Value) != "not an event" {
		t.Errorf("dead letters in envA.items-copy.dlq: %d, %v", len(dlq), err)
	}
}

// TestTailAndMapTest: tail prints the events of a topic as JSON lines (with -n and --key), and
// map test prints what a sink would write for an event file and for the topic's records,
// locating a mapping failure in the pipeline file.
func TestTailAndMapTest(t *testing.T) {
	e := newSinkOnlyEnv(t)
	e.produceForeign(t)

	out, errOut, code := e.run(t, "tail", "--topic", foreignTopic, "--from", "earliest", "-n", "3")
	lines := jsonLines(t, out)
	if code != 0 || len(lines) != 3 {
		t.Fatalf("tail -n 3: exit %d, %d lines\n%s%s", code, len(lines), out, errOut)
	}
	if l := lines[1]; l["op"] != "c" || l["topic"] != foreignTopic || l["offset"] != 1.0 ||
		l["after"].(map[string]any)["note"] != "n2" || l["key"].(map[string]any)["id"] != 2.0 {
		t.Errorf("tail line 2 = %v", l)
	}
	out, errOut, code = e.run(t, "tail", "--topic", foreignTopic, "--from", "earliest", "--key", "id=2", "-n", "3")
	lines = jsonLines(t, out)
	if code != 0 || len(lines) != 3 || lines[0]["op"] != "c" || lines[1]["op"] != "d" || lines[2]["tombstone"] != true {
		t.Fatalf("tail --key id=2: exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = e.run(t, "tail", "--topic", foreignTopic, "--from", "earliest", "--key", "4", "-n", "1")
	if lines = jsonLines(t, out); code != 0 || len(lines) != 1 || lines[0]["after"].(map[string]any)["id"] != 4.0 {
		t.Errorf("tail --key 4: exit %d\n%s", code, out)
	}

	events := filepath.Join(t.TempDir(), "events.json")
	body := `{"op": "c", "after": {"id": 7, "v": 2, "note": "x"}, "source": {"schema": "public", "table": "items"}, "key": {"id": 7}}
{"op": "u", "after": {"id": 8, "note": "no v"}, "source": {"schema": "public", "table": "items"}}
`
	if err := os.WriteFile(events, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = e.run(t, "map", "test", "--sink", "items-copy", "--event", events)
	lines = jsonLines(t, out)
	if code != 1 || len(lines) != 2 || lines[0]["op"] != "upsert" || fmt.Sprint(lines[0]["fields"]) != "map[id:7 note:x v:20]" {
		t.Fatalf("map test --event: exit %d\n%s%s", code, out, errOut)
	}
	wantAt := fmt.Sprintf("%s:%d: map.v (sink items-copy)", e.config, lineOf(e.text, "v: after.v * 10"))
	if !strings.Contains(errOut, wantAt) || !strings.Contains(fmt.Sprint(lines[1]["error"]), wantAt) {
		t.Errorf("map test does not locate the failure at %q:\n%s%s", wantAt, out, errOut)
	}

	out, errOut, code = e.run(t, "map", "test", "--sink", "items-copy", "--from-topic", "-n", "3")
	lines = jsonLines(t, out)
	if code != 0 || len(lines) != 3 || fmt.Sprint(lines[2]["fields"]) != "map[id:3 note:n3 v:30]" || lines[2]["offset"] != 2.0 {
		t.Errorf("map test --from-topic: exit %d\n%s%s", code, out, errOut)
	}
	if n := len(rows(t, e.dst, `SELECT id FROM public.items_copy`)); n != 0 {
		t.Errorf("map test wrote %d rows", n)
	}
}

func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

// lineOf is the 1-based line of the first line of text containing s.
func lineOf(text, s string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	return 0
}
