package shopify

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/backflow-dev/backflow/pkg/sink"
)

var _ sink.Check = Check

// requiredScopes are the access scopes the connector uses: variants are found by SKU
// (read_products), locations by name (read_locations), and levels set (write_inventory).
var requiredScopes = []string{"read_products", "read_locations", "write_inventory"}

const scopesQuery = `query backflowCheck { currentAppInstallation { accessScopes { handle } } }`

// Check asks the shop for the app's access scopes with the sink's credentials, writing nothing,
// and reports refused credentials and every scope the connector needs that the app lacks.
func Check(ctx context.Context, p sink.Params, _ []string) error {
	c, err := New(ctx, p)
	if err != nil {
		return err
	}
	defer c.Close()
	var out struct {
		CurrentAppInstallation struct {
			AccessScopes []struct {
				Handle string `json:"handle"`
			} `json:"accessScopes"`
		} `json:"currentAppInstallation"`
	}
	req := &gqlRequest{op: "check access scopes", costKey: "check", estimate: 1, Query: scopesQuery, Vars: map[string]any{}}
	if err := c.(*connector).gql.do(ctx, req, &out); err != nil {
		return fmt.Errorf("shopify: read the app's access scopes: %w", err)
	}
	var have []string
	for _, s := range out.CurrentAppInstallation.AccessScopes {
		have = append(have, s.Handle)
	}
	var problems []error
	for _, want := range requiredScopes {
		// write_X implies read_X in Shopify's scopes.
		if !slices.Contains(have, want) && !(want[:5] == "read_" && slices.Contains(have, "write_"+want[5:])) {
			problems = append(problems, fmt.Errorf("shopify: the app lacks the %s access scope", want))
		}
	}
	return errors.Join(problems...)
}
