package main

import (
	"path/filepath"
	"testing"
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
		"ORDER_WEBHOOK_SECRET=s", "HUBSPOT_TOKEN=t", "SHOPIFY_TOKEN=t"}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, code := runBinary(t, bin, env, "validate", "-c", f)
			if code != 0 {
				t.Errorf("%s is not valid:\n%s", f, out)
			}
		})
	}
}
