package main

import (
	"context"
	"path/filepath"
	"testing"

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
	env := []string{"WAREHOUSE_URL=postgres://u:p@localhost/wh", "STOREFRONT_URL=postgres://u:p@localhost/shop",
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
		"ORDER_WEBHOOK_SECRET": "s", "STOREFRONT_URL": "postgres://u:p@localhost/shop", "FINANCE_DSN": "u:p@tcp(localhost:3306)/f"}
	for k, v := range env {
		t.Setenv(k, v)
	}
	offline := map[string]bool{"hubspot": true, "salesforce": true, "shopify": true, "http": true}
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
			conn, err := connectorFactories()[sc.Connector](context.Background(), sink.Params{Sink: sc.Name, With: sc.With, Key: sc.Key, Log: zap.NewNop()})
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
