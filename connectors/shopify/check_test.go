package shopify

import (
	"context"
	"strings"
	"testing"

	"github.com/backflow-dev/backflow/connectors/shopify/shopifytest"
)

// TestCheck asks the stub for the app's access scopes: an app with them all passes, one without
// write_inventory is told so, and a refused token is reported.
func TestCheck(t *testing.T) {
	all := newEnv(t, shopifytest.Config{Token: shopifytest.DefaultToken, Scopes: []string{"write_products", "read_locations", "write_inventory"}}, 0)
	if err := Check(context.Background(), all.params(), nil); err != nil {
		t.Errorf("check with every scope: %v", err)
	}
	readOnly := newEnv(t, shopifytest.Config{Token: shopifytest.DefaultToken, Scopes: []string{"read_products", "read_locations", "read_inventory"}}, 0)
	if err := Check(context.Background(), readOnly.params(), nil); err == nil || !strings.Contains(err.Error(), "lacks the write_inventory access scope") {
		t.Errorf("check without write_inventory: %v", err)
	}
	if err := Check(context.Background(), all.params("token", "shpat_wrong"), nil); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("check with a refused token: %v", err)
	}
}
