package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

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
	p := startProcess(t, bin, "registry", "-c", cfg, "--listen", "127.0.0.1:0")
	addr := regexp.MustCompile(`registry listening on (http://\S+)`)
	var base string
	for deadline := time.Now().Add(30 * time.Second); base == ""; {
		b, _ := os.ReadFile(p.log)
		if m := addr.FindSubmatch(b); m != nil {
			base = string(m[1])
		} else if time.Now().After(deadline) {
			t.Fatalf("no address line; log:\n%s", p.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
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
