package shopify

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// skusPerLookup is how many SKUs one productVariants search asks for.
const skusPerLookup = 50

const skuQuery = `query BackflowInventoryItems($first: Int!, $after: String, $query: String!) {
  productVariants(first: $first, after: $after, query: $query) {
    nodes { sku inventoryItem { id } }
    pageInfo { hasNextPage endCursor }
  }
}`

const locationQuery = `query BackflowLocations($first: Int!, $after: String) {
  locations(first: $first, after: $after) {
    nodes { id name }
    pageInfo { hasNextPage endCursor }
  }
}`

type pageInfo struct {
	HasNextPage bool    `json:"hasNextPage"`
	EndCursor   *string `json:"endCursor"`
}

type variantPage struct {
	ProductVariants struct {
		Nodes []struct {
			SKU           string `json:"sku"`
			InventoryItem *struct {
				ID string `json:"id"`
			} `json:"inventoryItem"`
		} `json:"nodes"`
		PageInfo pageInfo `json:"pageInfo"`
	} `json:"productVariants"`
}

type locationPage struct {
	Locations struct {
		Nodes []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"nodes"`
		PageInfo pageInfo `json:"pageInfo"`
	} `json:"locations"`
}

// catalog maps warehouse terms to Shopify ids: SKU → inventory item (productVariants search)
// and warehouse → location (with.locations, else the location of that name). Both are cached in
// memory for the life of the connector; entries are dropped when Shopify says they are stale.
type catalog struct {
	gql        *client
	configured map[string]string // with.locations

	mu    sync.Mutex
	items map[string]string // SKU → inventory item GID
	locs  map[string]string // location name → GID
}

func newCatalog(gql *client, configured map[string]string) *catalog {
	return &catalog{gql: gql, configured: configured, items: map[string]string{}, locs: map[string]string{}}
}

// resolve sets the ids of levels. Levels whose SKU or warehouse Shopify does not know fail.
func (c *catalog) resolve(ctx context.Context, levels []*level) ([]*level, []sink.RecordError, error) {
	ambiguous, err := c.lookupSKUs(ctx, c.missingSKUs(levels))
	if err != nil {
		return nil, nil, err
	}
	if err := c.lookupLocations(ctx, c.missingLocations(levels)); err != nil {
		return nil, nil, err
	}
	var ok []*level
	var failed []sink.RecordError
	for _, lv := range levels {
		if reason := c.assign(lv, ambiguous); reason != "" {
			failed = append(failed, sink.RecordError{Index: lv.index, Reason: reason})
			continue
		}
		ok = append(ok, lv)
	}
	return ok, failed, nil
}

// assign sets lv's ids from the caches, or says why it cannot.
func (c *catalog) assign(lv *level, ambiguous map[string]int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := ambiguous[lv.sku]; n > 1 {
		return fmt.Sprintf("shopify: SKU %q matches %d product variants with different inventory items; make it unique in the shop", lv.sku, n)
	}
	item, ok := c.items[lv.sku]
	if !ok {
		return fmt.Sprintf("shopify: unknown SKU %q: no product variant in the shop has it", lv.sku)
	}
	loc, ok := c.configured[lv.warehouse]
	if !ok {
		loc, ok = c.locs[lv.warehouse]
	}
	if !ok {
		return fmt.Sprintf("shopify: unknown warehouse %q: no active Shopify location has this name and with.locations does not map it", lv.warehouse)
	}
	lv.itemID, lv.locID = item, loc
	return ""
}

func (c *catalog) missingSKUs(levels []*level) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	var skus []string
	for _, lv := range levels {
		if _, ok := c.items[lv.sku]; !ok && !seen[lv.sku] {
			seen[lv.sku] = true
			skus = append(skus, lv.sku)
		}
	}
	return skus
}

func (c *catalog) missingLocations(levels []*level) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, lv := range levels {
		_, configured := c.configured[lv.warehouse]
		if _, ok := c.locs[lv.warehouse]; !ok && !configured {
			return true
		}
	}
	return false
}

// lookupSKUs searches the SKUs in groups and caches those with exactly one inventory item; it
// returns how many inventory items each ambiguous SKU has.
func (c *catalog) lookupSKUs(ctx context.Context, skus []string) (map[string]int, error) {
	found := map[string]map[string]bool{}
	for start := 0; start < len(skus); start += skusPerLookup {
		group := skus[start:min(start+skusPerLookup, len(skus))]
		if err := c.searchSKUs(ctx, group, found); err != nil {
			return nil, err
		}
	}
	ambiguous := map[string]int{}
	c.mu.Lock()
	defer c.mu.Unlock()
	for sku, ids := range found {
		if len(ids) > 1 {
			delete(c.items, sku)
			ambiguous[sku] = len(ids)
			continue
		}
		for id := range ids {
			c.items[sku] = id
		}
	}
	return ambiguous, nil
}

// searchSKUs runs one productVariants search, following its pages, into found.
func (c *catalog) searchSKUs(ctx context.Context, group []string, found map[string]map[string]bool) error {
	want := map[string]bool{}
	terms := make([]string, len(group))
	for i, sku := range group {
		want[sku] = true
		terms[i] = "sku:" + quoteSearch(sku)
	}
	first := min(250, 2*len(group))
	vars := map[string]any{"first": first, "query": strings.Join(terms, " OR ")}
	for {
		var page variantPage
		req := &gqlRequest{op: "productVariants (SKU lookup)", costKey: fmt.Sprintf("productVariants/%d", first),
			estimate: float64(2 + 2*first), Query: skuQuery, Vars: vars}
		if err := c.gql.do(ctx, req, &page); err != nil {
			return err
		}
		for _, n := range page.ProductVariants.Nodes {
			if want[n.SKU] && n.InventoryItem != nil && n.InventoryItem.ID != "" {
				if found[n.SKU] == nil {
					found[n.SKU] = map[string]bool{}
				}
				found[n.SKU][n.InventoryItem.ID] = true
			}
		}
		pi := page.ProductVariants.PageInfo
		if !pi.HasNextPage || pi.EndCursor == nil {
			return nil
		}
		vars["after"] = *pi.EndCursor
	}
}

// quoteSearch quotes a value for Shopify's search syntax.
func quoteSearch(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// lookupLocations loads every active location's name and id when some warehouse is not known.
func (c *catalog) lookupLocations(ctx context.Context, needed bool) error {
	if !needed {
		return nil
	}
	locs := map[string]string{}
	vars := map[string]any{"first": 250}
	for {
		var page locationPage
		req := &gqlRequest{op: "locations (location lookup)", costKey: "locations/250", estimate: 252,
			Query: locationQuery, Vars: vars}
		if err := c.gql.do(ctx, req, &page); err != nil {
			return err
		}
		for _, n := range page.Locations.Nodes {
			locs[n.Name] = n.ID
		}
		pi := page.Locations.PageInfo
		if !pi.HasNextPage || pi.EndCursor == nil {
			break
		}
		vars["after"] = *pi.EndCursor
	}
	c.mu.Lock()
	c.locs = locs
	c.mu.Unlock()
	return nil
}

// forget drops the cache entry a userError says may be stale, unless another lookup replaced
// it meanwhile. A configured location is never dropped: only its owner can fix it.
func (c *catalog) forget(lv *level, code string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch code {
	case "INVALID_INVENTORY_ITEM", "ITEM_NOT_STOCKED_AT_LOCATION":
		if c.items[lv.sku] == lv.itemID {
			delete(c.items, lv.sku)
		}
	case "INVALID_LOCATION":
		if c.locs[lv.warehouse] == lv.locID {
			delete(c.locs, lv.warehouse)
		}
	}
}
