package main

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// TestExamplesAreValid keeps examples/ true: every pipeline file there passes `backflow validate`.
func TestExamplesAreValid(t *testing.T) {
	bin := buildBinary(t)
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example pipelines found: %v", err)
	}
	files = append(files, "../../examples/quickstart/pipeline.yaml")
	env := []string{"WAREHOUSE_URL=postgres://u:p@localhost/wh", "STOREFRONT_URL=postgres://u:p@localhost/shop", "REPLICA_URL=postgres://u:p@localhost/replica",
		"FINANCE_DSN=u:p@tcp(localhost:3306)/finance", "ORDER_WEBHOOK_URL=https://hooks.example.com/orders",
		"ORDER_WEBHOOK_SECRET=s", "HUBSPOT_TOKEN=t", "SHOPIFY_TOKEN=t", "SF_CLIENT_ID=id", "SF_CLIENT_SECRET=s"}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, code := runBinary(t, bin, env, "validate", "-c", f)
			if code != 0 {
				t.Errorf("%s is not valid:\n%s", f, out)
			}
		})
	}
}

// TestExampleConnectorSettings builds the connectors of the examples whose factories do not need
// the network at startup, so their `with` blocks are checked by the connectors themselves.
func TestExampleConnectorSettings(t *testing.T) {
	env := map[string]string{"WAREHOUSE_URL": "postgres://u:p@localhost/wh", "HUBSPOT_TOKEN": "pat-x", "SHOPIFY_TOKEN": "shpat_x",
		"SF_CLIENT_ID": "id", "SF_CLIENT_SECRET": "s", "ORDER_WEBHOOK_URL": "https://hooks.example.com/o",
		"ORDER_WEBHOOK_SECRET": "s", "STOREFRONT_URL": "postgres://u:p@localhost/shop", "REPLICA_URL": "postgres://u:p@localhost/replica", "FINANCE_DSN": "u:p@tcp(localhost:3306)/f"}
	for k, v := range env {
		t.Setenv(k, v)
	}
	offline := map[string]bool{"hubspot": true, "salesforce": true, "shopify": true, "http": true, "kafka": true}
	files, _ := filepath.Glob("../../examples/*.yaml")
	checked := 0
	for _, f := range files {
		cfg, err := config.Load(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, sc := range cfg.Sinks {
			if !offline[sc.Connector] {
				continue
			}
			conn, err := connectorFactories()[sc.Connector](context.Background(), sink.Params{Sink: sc.Name, With: sc.With, Key: sc.Key, Log: zap.NewNop(),
				Kafka: []kgo.Opt{kgo.SeedBrokers("localhost:9092")}})
			if err != nil {
				t.Errorf("%s: sink %s: %v", filepath.Base(f), sc.Name, err)
				continue
			}
			_ = conn.Close()
			checked++
		}
	}
	if checked < 4 {
		t.Errorf("only %d example sinks checked", checked)
	}
}

// TestExamplesBindTheListenerToLoopback keeps the examples' status listener (metrics, status
// page) off the network: copied as they are, they must not expose it on every interface.
func TestExamplesBindTheListenerToLoopback(t *testing.T) {
	t.Setenv("WAREHOUSE_URL", "postgres://u:p@localhost/wh")
	for _, k := range []string{"STOREFRONT_URL", "REPLICA_URL", "FINANCE_DSN", "ORDER_WEBHOOK_URL", "ORDER_WEBHOOK_SECRET",
		"HUBSPOT_TOKEN", "SHOPIFY_TOKEN", "SF_CLIENT_ID", "SF_CLIENT_SECRET"} {
		t.Setenv(k, "x")
	}
	files, _ := filepath.Glob("../../examples/*.yaml")
	for _, f := range append(files, "../../examples/quickstart/pipeline.yaml") {
		cfg, err := config.Load(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		host, _, err := net.SplitHostPort(cfg.HTTP.Listen)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			t.Errorf("%s: http.listen %q; want a loopback address such as 127.0.0.1:9464", f, cfg.HTTP.Listen)
		}
	}
}
