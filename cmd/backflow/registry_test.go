package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/backflow-dev/backflow/pkg/testenv"
)

// TestRegistryCommand runs `backflow registry` on a free port and asks it for the subjects and
// the latest value schema of a topic written as avro-confluent.
func TestRegistryCommand(t *testing.T) {
	bin := buildBinary(t)
	kf := testenv.NewKafka(t)
	produceConfluentItems(t, kf.Brokers(), "wh.public.items", 1)
	cfg := writeConfig(t, fmt.Sprintf(`kafka:
  brokers: [%s]
  topic_prefix: wh
log: {format: json, level: warn}
sinks:
  - name: items-out
    topics: [wh.public.items]
    connector: kafka
    with: {topic: items.out}
    key: [id]
`, strings.Join(kf.Brokers(), ", ")))
	base := startRegistry(t, bin, cfg)
	tests := []struct{ path, want string }{
		{"/subjects", `["wh.public.items-key","wh.public.items-value"]`},
		{"/subjects/wh.public.items-value/versions/latest", `"version":1`},
		{"/schemas/ids/7", `{"error_code":40403`},
	}
	for _, tt := range tests {
		resp, err := http.Get(base + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), tt.want) {
			t.Errorf("GET %s = %d %s, want %s", tt.path, resp.StatusCode, body, tt.want)
		}
	}
}

// startRegistry runs `backflow registry` on a free port and returns its base URL.
func startRegistry(t *testing.T, bin, cfg string) string {
	t.Helper()
	p := startProcess(t, bin, "registry", "-c", cfg, "--listen", "127.0.0.1:0")
	addr := regexp.MustCompile(`registry listening on (http://\S+)`)
	for deadline := time.Now().Add(30 * time.Second); ; {
		b, _ := os.ReadFile(p.log)
		if m := addr.FindSubmatch(b); m != nil {
			return string(m[1])
		}
		if time.Now().After(deadline) {
			t.Fatalf("no address line; log:\n%s", p.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCaptureAvroConfluent runs capture with kafka.format avro-confluent and decodes its topic as
// a Confluent client does: the schema id from the 5-byte header, the schema from `backflow
// registry` through franz-go's registry client, the body with hamba/avro.
func TestCaptureAvroConfluent(t *testing.T) {
	bin := buildBinary(t)
	pg := testenv.NewPostgres(t)
	kf := testenv.NewKafka(t)
	ctx := context.Background()
	if err := pg.Exec(ctx, `CREATE TABLE public.w (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO public.w SELECT g, g * 10 FROM generate_series(1, 50) g`); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, strings.Replace(pipelineYAML(pg.URL("postgres"), kf.Brokers(), ""), "  topic_prefix: wh\n", "  topic_prefix: wh\n  format: avro-confluent\n", 1))
	p := startProcess(t, bin, "capture", "-c", cfg)
	waitTopicRecords(t, kf.Brokers(), "wh.public.w", 50, p)
	base := startRegistry(t, bin, cfg)
	rc, err := sr.NewClient(sr.URLs(base))
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	recs, err := testenv.ConsumeAll(cctx, kf.Brokers(), "wh.public.w")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, r := range recs {
		var env struct {
			Op    string         `avro:"op"`
			After map[string]any `avro:"after"`
		}
		decodeConfluent(cctx, t, rc, r.Value, &env)
		after := unwrapUnion(env.After)
		id, _ := after["id"].(int)
		if env.Op != "r" || after["v"] != id*10 {
			t.Fatalf("offset %d: op %s after %v", r.Offset, env.Op, env.After)
		}
		seen[id] = true
	}
	if len(seen) != 50 {
		t.Fatalf("%d ids decoded, want 50", len(seen))
	}
}

// decodeConfluent decodes a Confluent-framed message with the schema the registry gives for its id.
func decodeConfluent(ctx context.Context, t *testing.T, rc *sr.Client, msg []byte, out any) {
	t.Helper()
	if len(msg) < 5 || msg[0] != 0 {
		t.Fatalf("not in the Confluent wire format: % x", msg[:min(len(msg), 5)])
	}
	s, err := rc.SchemaByID(ctx, int(binary.BigEndian.Uint32(msg[1:5])))
	if err != nil {
		t.Fatalf("schema id %d: %v", binary.BigEndian.Uint32(msg[1:5]), err)
	}
	parsed, err := avro.Parse(s.Schema)
	if err != nil {
		t.Fatal(err)
	}
	if err := avro.Unmarshal(parsed, msg[5:], out); err != nil {
		t.Fatalf("decode with schema id %d: %v", binary.BigEndian.Uint32(msg[1:5]), err)
	}
}
