package registry_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http/httptest"
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
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/registry"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

const (
	prefix      = "wh"
	schemaTopic = "wh._schemas"
	itemsTopic  = "wh.public.items"
)

var items = &change.Table{Schema: "public", Name: "items", Columns: []change.Column{
	{Name: "id", Kind: change.KindInt64, Key: true},
	{Name: "name", Kind: change.KindString},
	{Name: "qty", Kind: change.KindInt32},
	{Name: "active", Kind: change.KindBool},
}}

// itemEvents are the changes the tests write: inserts, an update and a delete.
func itemEvents() []*change.Event {
	src := change.Source{Connector: "postgresql", Name: prefix, DB: "warehouse", Schema: "public", Table: "items", Snapshot: "false"}
	row := func(id int64, name string, qty int32) change.Row {
		return change.Row{"id": id, "name": name, "qty": qty, "active": qty > 0}
	}
	return []*change.Event{
		{Op: change.OpCreate, Table: items, After: row(1, "bolt", 10), Source: src, TsMs: 1},
		{Op: change.OpCreate, Table: items, After: row(2, "nut", 0), Source: src, TsMs: 2},
		{Op: change.OpCreate, Table: items, After: row(3, "gear ⚙", 7), Source: src, TsMs: 3},
		{Op: change.OpUpdate, Table: items, Before: change.Row{"id": int64(1)}, After: row(1, "bolt", 9), Source: src, TsMs: 4},
		{Op: change.OpDelete, Table: items, Before: change.Row{"id": int64(2)}, Source: src, TsMs: 5},
	}
}

// writeItems writes itemEvents to kfake as capture does with kafka.format avro-confluent: the
// schemas to the compacted schema topic, the records with capture's producer options (zstd).
func writeItems(ctx context.Context, t *testing.T, brokers []string) {
	t.Helper()
	cl, err := kgo.NewClient(append(kafka.ProducerOpts(), kgo.SeedBrokers(brokers...))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, schemaTopic); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 3, -1, nil, itemsTopic); err != nil {
		t.Fatal(err)
	}
	enc, err := codec.NewEncoder(codec.Format(codec.FormatAvroConfluent), codec.TopicPrefix(prefix),
		codec.SchemaPublisher(func(ctx context.Context, fp uint64, schema []byte) error {
			return cl.ProduceSync(ctx, &kgo.Record{Topic: schemaTopic, Key: codec.FingerprintKey(fp), Value: schema}).FirstErr()
		}))
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range itemEvents() {
		k, v, err := enc.Encode(ctx, itemsTopic, ev)
		if err != nil {
			t.Fatal(err)
		}
		if v[0] != 0 {
			t.Fatalf("value starts with %#x, want the Confluent magic byte 0", v[0])
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: itemsTopic, Key: k, Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// nodeDir returns a directory holding the node script and its locked dependencies, installed
// with npm ci once per package-lock.json in the user's cache (the test's temp dir when there is
// none), so that runs after the first need no network.
func nodeDir(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (.ci/run installs nodejs and npm): the Confluent client check needs it", tool)
		}
	}
	lock, err := os.ReadFile("testdata/node/package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(lock)
	base, err := os.UserCacheDir()
	if err != nil {
		base = t.TempDir()
	}
	dir := filepath.Join(base, "backflow-test", "registry-node-"+hex.EncodeToString(sum[:6]))
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		npmCI(t, dir)
	}
	copyFile(t, "testdata/node/consume.js", filepath.Join(dir, "consume.js"))
	return dir
}

// npmCI installs the locked dependencies into a fresh directory and moves it to dir, so that an
// interrupted install never leaves a half-filled dir behind.
func npmCI(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	for _, f := range []string{"package.json", "package-lock.json"} {
		copyFile(t, filepath.Join("testdata/node", f), filepath.Join(tmp, f))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", tmp, err, out)
	}
	if err := os.Rename(tmp, dir); err != nil && !os.IsExist(err) {
		if _, statErr := os.Stat(filepath.Join(dir, "node_modules")); statErr != nil {
			t.Fatalf("move %s to %s: %v", tmp, dir, err)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// nodeMessage is one line of consume.js: a record decoded by the Confluent client.
type nodeMessage struct {
	Key   map[string]any `json:"key"`
	Value struct {
		Op     string         `json:"op"`
		After  map[string]any `json:"after"`
		Before map[string]any `json:"before"`
		Source map[string]any `json:"source"`
	} `json:"value"`
}

// TestConfluentClientDecodes has kafkajs with @kafkajs/confluent-schema-registry, which know only
// Kafka and the registry protocol, read an avro-confluent topic through the registry API.
func TestConfluentClientDecodes(t *testing.T) {
	dir := nodeDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	k := testenv.NewKafka(t)
	writeItems(ctx, t, k.Brokers())
	srv := httptest.NewServer(registry.New([]kgo.Opt{kgo.SeedBrokers(k.Brokers()...)}, []string{schemaTopic}).Handler())
	defer srv.Close()

	events := itemEvents()
	cmd := exec.CommandContext(ctx, "node", "consume.js", k.Brokers()[0], srv.URL, itemsTopic, fmt.Sprint(len(events)))
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node consume.js: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), out)
	}
	got := map[string]nodeMessage{} // "<op> <id>" -> message (each is unique in itemEvents)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var m nodeMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got[fmt.Sprintf("%s %v", m.Value.Op, m.Key["id"])] = m
	}
	if len(got) != len(events) {
		t.Fatalf("node decoded %d distinct records, want %d:\n%s", len(got), len(events), out)
	}
	for _, ev := range events {
		id := ev.Key()["id"]
		m, ok := got[fmt.Sprintf("%s %v", ev.Op, id)]
		if !ok {
			t.Errorf("op %s id %v: not decoded by node", ev.Op, id)
			continue
		}
		if m.Value.Source["table"] != "items" || m.Value.Source["name"] != prefix {
			t.Errorf("op %s id %v: source = %v", ev.Op, id, m.Value.Source)
		}
		if ev.After == nil {
			if m.Value.After != nil {
				t.Errorf("op %s id %v: after = %v, want null", ev.Op, id, m.Value.After)
			}
			continue
		}
		want, _ := json.Marshal(ev.After)
		have, _ := json.Marshal(m.Value.After)
		if !jsonEqual(t, want, have) {
			t.Errorf("op %s id %v: after = %s, want %s", ev.Op, id, have, want)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("node output:\n%s", strings.TrimSpace(string(out)))
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}
