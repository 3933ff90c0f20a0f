// Package shopify is the sink connector for Shopify stock levels (connector: shopify): each
// record sets one inventory level, a SKU at a warehouse, through the Admin GraphQL API's
// inventorySetQuantities mutation, at most MaxQuantities (250) levels a call.
//
// # Settings (the sink's `with` block)
//
//   - shop: the shop's domain, my-store.myshopify.com; or base_url: http(s)://host[:port] of
//     an API-compatible endpoint (tests point it at package shopifytest's stub).
//   - token: an Admin API access token (sent as X-Shopify-Access-Token; never logged). Or
//     client_id and client_secret of a Dev Dashboard app installed in the shop: tokens then
//     come from the client credentials grant and are renewed before they expire (24 hours) and
//     on a 401. Scopes needed: write_inventory, read_products, read_locations.
//   - api_version: default DefaultAPIVersion; 2026-01 or later (or "unstable"), the versions
//     with the @idempotent directive, which 2026-04 makes mandatory for this mutation.
//   - quantity_name: available (default) or on_hand.
//   - ignore_compare_quantity: default true. Shopify's compare-and-swap check refuses to set a
//     level whose current quantity is not the one the caller says it expects
//     (changeFromQuantity, formerly compareQuantity/ignoreCompareQuantity). The warehouse is
//     the source of truth here, so by default every quantity is sent with changeFromQuantity
//     null, which opts out: Shopify's level becomes the warehouse's, whatever it was (sales
//     Shopify counted meanwhile are overwritten by the next warehouse change). With false,
//     compare_field names the record field holding the quantity Shopify should have before the
//     change (map it from before.*, e.g. before.qty - before.reserved); a level that moved
//     meanwhile is rejected with CHANGE_FROM_QUANTITY_STALE and dead-lettered, and a null
//     compare value (inserts) sets without the check.
//   - reason: default correction; one of Reasons.
//   - sku_field, location_field, quantity_field: the record fields holding the SKU (default
//     sku), the warehouse (default warehouse) and the quantity (default available).
//   - locations: optional map of warehouse to location GID (gid://shopify/Location/…); other
//     warehouses are looked up by location name.
//   - timeout: per HTTP request, default 30s.
//
// # Records
//
// An upsert sets its level to the quantity field (a whole number within ±1,000,000,000). A
// delete (on_delete: delete) sets its level to 0: the row is gone from the warehouse, so nothing
// there is for sale; the SKU and warehouse fields must be in the sink's key. on_delete: ignore
// leaves Shopify as it is; soft_delete is refused (there is no column to set). A truncate names no levels and is refused (dead-lettered). Records
// without a usable SKU, warehouse or quantity, and SKUs or warehouses Shopify does not know,
// fail on their own in a *sink.PartialError; the rest of the batch is applied.
//
// # Lookups
//
// SKUs become inventory item ids through productVariants searches (sku:"A" OR sku:"B" …, 50 SKUs
// a query) and warehouse names become location ids through the locations query; both are cached
// in memory for the life of the process. A SKU shared by variants with different inventory items
// is ambiguous and fails. When Shopify answers INVALID_INVENTORY_ITEM, INVALID_LOCATION or
// ITEM_NOT_STOCKED_AT_LOCATION for a level (a variant was re-created, say), its cache entry is
// dropped, looked up once more and the level sent again; if the lookup gives the same id the
// record is rejected with Shopify's error.
//
// # userErrors
//
// Shopify reports per-quantity problems as userErrors whose field path names the quantity
// (["input", "quantities", "3", "locationId"]). The documentation does not promise that the
// valid quantities of such a call are applied, so the connector assumes they are not: it rejects
// the quantities named (dead-letter reason "CODE: message (sku … at warehouse …)", e.g.
// NON_MUTABLE_INVENTORY_ITEM), and sends the others again in a new call, with a new key. Should
// Shopify have applied them, setting the same absolute quantities again changes nothing. A
// userError naming no quantity fails the batch: IDEMPOTENCY_CONCURRENT_REQUEST as retryable,
// others (say IDEMPOTENCY_KEY_PARAMETER_MISMATCH) as permanent, so the runtime bisects it.
//
// # Idempotency
//
// Every call carries @idempotent(key: …). The key is a hash of the sink, the quantity name and
// reason, and, for each quantity, the change it comes from and the exact values sent (see
// idempotencyKey). A change is identified by its source position, the commit LSN and
// transaction id (record.Event.Source), not by its Kafka offset: after a capture crash the same
// transaction is captured again and lands at new offsets, but keeps its LSN. So a batch retried
// by the runtime, read again after a sink restart, or re-captured, sends the same keys and
// Shopify applies it once, answering the first result again. Records without a source position
// fall back to topic, partition and offset. The values belong in the key because Shopify refuses
// one key with two sets of parameters (IDEMPOTENCY_KEY_PARAMETER_MISMATCH): a re-resolved id or
// another split of the batch yields another key, and since the quantities are absolute, applying
// them under a new key leaves the same state. Duplicates that arrive grouped differently (their
// call's key then differs) are caught by a per-process memory of the last change applied to
// each level: a change at or behind it is skipped. Within Shopify's retention of keys, a replay
// sent in exactly the same calls is answered from Shopify's store, not applied again.
//
// # Rate limits
//
// Shopify meters the Admin GraphQL API with a leaky bucket of cost points per app and shop. The
// connector reads extensions.cost.throttleStatus (maximumAvailable, currentlyAvailable,
// restoreRate) from every response and, before each request, waits until its model of the
// bucket covers the request's cost (the requestedQueryCost Shopify last reported for that kind
// of request; 10 points for the mutation until then), counting what concurrent requests have
// reserved. THROTTLED, whether an HTTP 200 with errors[].extensions.code THROTTLED or an HTTP
// 429 with Retry-After, is waited out and the request sent again, up to 8 times, after which
// the batch is returned as sink.RetryAfter: nothing is lost either way.
//
// # Failures
//
// 401 (after one token renewal with client credentials), 402, 403, 404, 423, 5xx, timeouts,
// lost connections and top-level GraphQL errors are retryable: they concern the shop, the app
// or the network, not the records, so the sink waits visibly instead of dead-lettering. Other
// 4xx and MAX_COST_EXCEEDED fail the batch as permanent.
package shopify

import (
	"context"
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/sink"
)

var _ sink.Factory = New

// connector sets inventory levels in one shop.
type connector struct {
	cfg  *config
	hc   *http.Client
	gql  *client
	cat  *catalog
	seen *memory
	sink string
	log  *zap.Logger
}

// New configures and opens a Shopify connector from the sink's parameters (settings: see
// Descriptor). It does not call Shopify: the first Apply does, so an unreachable shop or a bad
// token shows up as a retryable Apply error.
func New(ctx context.Context, p sink.Params) (sink.Connector, error) {
	return Descriptor().Factory()(ctx, p)
}

// newConnector builds the connector of a configured sink.
func newConnector(cfg *config, p sink.Params) *connector {
	log := p.Logger(zap.String("shop", cfg.baseURL))
	hc := &http.Client{Timeout: cfg.timeout}
	var auth tokenSource = staticToken(cfg.token)
	if cfg.clientID != "" {
		auth = newClientCredentials(hc, cfg.baseURL, cfg.clientID, cfg.clientSecret)
	}
	gql := newClient(hc, cfg.baseURL, cfg.apiVersion, auth)
	if len(p.Key) > 0 && (!slices.Contains(p.Key, cfg.skuField) || !slices.Contains(p.Key, cfg.locField)) {
		log.Warn("the sink's key lacks the SKU or warehouse field: deletes will be dead-lettered",
			zap.Strings("key", p.Key), zap.String("sku_field", cfg.skuField), zap.String("location_field", cfg.locField))
	}
	log.Info("shopify sink configured", zap.String("api_version", cfg.apiVersion),
		zap.String("quantity_name", cfg.name), zap.Bool("ignore_compare_quantity", cfg.ignoreCompare),
		zap.String("reason", cfg.reason), zap.Bool("client_credentials", cfg.clientID != ""),
		zap.Int("configured_locations", len(cfg.locations)))
	return &connector{cfg: cfg, hc: hc, gql: gql, cat: newCatalog(gql, cfg.locations), seen: newMemory(),
		sink: p.Sink, log: log}
}

var _ sink.GroupShared = (*connector)(nil)

// SetGroupShare paces this worker to its share of the cost bucket, which is the app's in the
// shop, shared by every worker of the sink.
func (c *connector) SetGroupShare(fraction float64) { c.gql.pacer.setShare(fraction) }

// Close releases idle connections.
func (c *connector) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// Apply sets the batch's levels, MaxQuantities a call, in record order. Records that cannot be
// applied are returned in a *sink.PartialError; the others are applied.
func (c *connector) Apply(ctx context.Context, b *sink.Batch) error {
	levels, failed := c.plan(b)
	levels, unresolved, err := c.cat.resolve(ctx, levels)
	if err != nil {
		return err
	}
	failed = append(failed, unresolved...)
	for start := 0; start < len(levels); start += MaxQuantities {
		rejected, err := c.setChunk(ctx, levels[start:min(start+MaxQuantities, len(levels))])
		if err != nil {
			return err
		}
		failed = append(failed, rejected...)
	}
	if len(failed) == 0 {
		return nil
	}
	slices.SortFunc(failed, func(a, b sink.RecordError) int { return a.Index - b.Index })
	return &sink.PartialError{Failed: failed}
}

var _ sink.LongApplier = (*connector)(nil)

// MaxApply is the longest one Apply may take: the lookups and the mutation of a batch, each
// given with.timeout.
func (c *connector) MaxApply() time.Duration { return 3 * c.cfg.timeout }
